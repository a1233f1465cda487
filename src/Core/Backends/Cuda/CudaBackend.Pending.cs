namespace MLNet.ConvNet.Backends.Cuda;

// Members not written yet: each is being written in its own family file; delete its line here when it lands.
public sealed partial class CudaBackend
{
    private static NotSupportedException Pending(string member) => new($"CudaBackend.{member} is not written yet.");

    // element-wise, matrix product, per-channel, im2col (CudaBackend.Elementwise.cs, .MatMul.cs, .Im2Col.cs)
    // dropout, activations, loss, statistics, optimizers (CudaBackend.Activation.cs, .Loss.cs, .Optimizers.cs)
    // convolution in cuDNN (CudaBackend.Convolution.cs)
    public void ConvolutionForward(Ops.ConvGeometry g, Tensor x, Tensor w, Tensor? bias, Tensor y) => throw Pending(nameof(ConvolutionForward));
    public void ConvolutionBackwardData(Ops.ConvGeometry g, Tensor w, Tensor dy, Tensor dx) => throw Pending(nameof(ConvolutionBackwardData));
    public void ConvolutionBackwardFilter(Ops.ConvGeometry g, Tensor x, Tensor dy, Tensor dw) => throw Pending(nameof(ConvolutionBackwardFilter));
    // pooling, LRN, batch norm, softmax in cuDNN (CudaBackend.Pooling.cs, .Normalization.cs, .Softmax.cs)
    public void PoolingForward(Ops.PoolGeometry g, Tensor x, Tensor y) => throw Pending(nameof(PoolingForward));
    public void PoolingBackward(Ops.PoolGeometry g, Tensor x, Tensor y, Tensor dy, Tensor dx) => throw Pending(nameof(PoolingBackward));
    public void LrnForward(Ops.LrnOptions options, Tensor x, Tensor y) => throw Pending(nameof(LrnForward));
    public void LrnBackward(Ops.LrnOptions options, Tensor x, Tensor y, Tensor dy, Tensor dx) => throw Pending(nameof(LrnBackward));
    public void BatchNormForwardTraining(Tensor x, Tensor gamma, Tensor beta, float epsilon, float momentum, Tensor runningMean, Tensor runningVariance, Tensor y, Tensor savedMean, Tensor savedInvStd) => throw Pending(nameof(BatchNormForwardTraining));
    public void BatchNormForwardInference(Tensor x, Tensor gamma, Tensor beta, Tensor mean, Tensor variance, float epsilon, Tensor y) => throw Pending(nameof(BatchNormForwardInference));
    public void BatchNormBackward(Tensor x, Tensor dy, Tensor gamma, Tensor savedMean, Tensor savedInvStd, Tensor dx, Tensor dgamma, Tensor dbeta) => throw Pending(nameof(BatchNormBackward));
    public void SoftmaxForward(Tensor x, Tensor y, bool log) => throw Pending(nameof(SoftmaxForward));
    public void SoftmaxBackward(Tensor y, Tensor dy, Tensor dx, bool log) => throw Pending(nameof(SoftmaxBackward));
}
