using MLNet.ConvNet.Backends.Cuda.Interop;

namespace MLNet.ConvNet.Backends.Cuda;

// Softmax in cuDNN (cudnnSoftmaxForward / cudnnSoftmaxBackward).
//
// How our semantics map onto cuDNN's:
// - [N, K] is described as [N, K, 1, 1] (TensorDescriptor) and CUDNN_SOFTMAX_MODE_INSTANCE normalizes over C, H, W
//   of each sample, i.e. over the K values of a row.
// - Softmax: CUDNN_SOFTMAX_ACCURATE (subtracts the row maximum first, as the CPU does). Log-softmax:
//   CUDNN_SOFTMAX_LOG (x - max - log sum exp(x - max)).
// - The backward reads only y and dy, like the CPU: softmax dx = y (dy - sum(dy y)); log-softmax
//   dx = dy - exp(y) sum(dy). Both calls overwrite their output (alpha = 1, beta = 0).
// - cuDNN computes in float where the CPU sums in double: agreement to float rounding, not bits.
public sealed unsafe partial class CudaBackend
{
    public void SoftmaxForward(Tensor x, Tensor y, bool log)
    {
        using var _ = Enter();
        if (x.Length == 0) return;
        float one = 1f, zero = 0f;
        nint d = TensorDescriptor(x.Shape);
        CuDnn.Check(CuDnn.cudnnSoftmaxForward(_cudnn, log ? CuDnn.SoftmaxLog : CuDnn.SoftmaxAccurate, CuDnn.SoftmaxModeInstance,
            &one, d, Ptr(x), &zero, TensorDescriptor(y.Shape), Ptr(y)), "cudnnSoftmaxForward");
    }

    public void SoftmaxBackward(Tensor y, Tensor dy, Tensor dx, bool log)
    {
        using var _ = Enter();
        if (y.Length == 0) return;
        float one = 1f, zero = 0f;
        CuDnn.Check(CuDnn.cudnnSoftmaxBackward(_cudnn, log ? CuDnn.SoftmaxLog : CuDnn.SoftmaxAccurate, CuDnn.SoftmaxModeInstance,
            &one, TensorDescriptor(y.Shape), Ptr(y), TensorDescriptor(dy.Shape), Ptr(dy), &zero, TensorDescriptor(dx.Shape), Ptr(dx)),
            "cudnnSoftmaxBackward");
    }
}
