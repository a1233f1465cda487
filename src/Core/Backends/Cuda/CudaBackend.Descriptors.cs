using MLNet.ConvNet.Backends.Cuda.Interop;

namespace MLNet.ConvNet.Backends.Cuda;

// cuDNN descriptors, made once per shape and kept for the life of the backend (a training run sees a handful of
// shapes, so the caches stay small; creating descriptors per call would cost more than many small kernels).
public sealed unsafe partial class CudaBackend
{
    private readonly Dictionary<Shape, nint> _tensorDescriptors = [];

    /// <summary>
    /// A packed NCHW-style float descriptor for <paramref name="shape"/> ([N, C, spatial...] or [N, F]). cuDNN wants at
    /// least 4 dimensions, so shapes of rank below 4 get trailing 1s ([N, F] becomes [N, F, 1, 1]; a 1-D convolution's
    /// [N, C, W] becomes [N, C, W, 1]), which leaves the memory layout unchanged. Call with the lock held.
    /// </summary>
    private nint TensorDescriptor(Shape shape)
    {
        if (_tensorDescriptors.TryGetValue(shape, out var d)) return d;
        int rank = Math.Max(4, shape.Rank);
        var dims = stackalloc int[rank];
        var strides = stackalloc int[rank];
        for (int i = 0; i < rank; i++) dims[i] = i < shape.Rank ? shape[i] : 1;
        strides[rank - 1] = 1;
        for (int i = rank - 2; i >= 0; i--) strides[i] = strides[i + 1] * dims[i + 1];
        CuDnn.Check(CuDnn.cudnnCreateTensorDescriptor(out d), "cudnnCreateTensorDescriptor");
        CuDnn.Check(CuDnn.cudnnSetTensorNdDescriptor(d, CuDnn.DataFloat, rank, dims, strides), $"cudnnSetTensorNdDescriptor({shape})");
        return _tensorDescriptors[shape] = d;
    }
}
