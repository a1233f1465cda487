namespace MLNet.ConvNet.Backends.Cuda;

// Members not written yet: each is being written in its own family file; delete its line here when it lands.
public sealed partial class CudaBackend
{
    private static NotSupportedException Pending(string member) => new($"CudaBackend.{member} is not written yet.");

    // element-wise, matrix product, per-channel, im2col (CudaBackend.Elementwise.cs, .MatMul.cs, .Im2Col.cs)
    // dropout, activations, loss, statistics, optimizers (CudaBackend.Activation.cs, .Loss.cs, .Optimizers.cs)
    // convolution in cuDNN (CudaBackend.Convolution.cs)
    // pooling, LRN, batch norm, softmax in cuDNN (CudaBackend.Pooling.cs, .Normalization.cs, .Softmax.cs)
}
