using System.Runtime.InteropServices;

namespace MLNet.ConvNet.Backends.Cuda.Interop;

// Pooling (cudnn_ops.h, cuDNN 9; deprecated since 9.0 but still exported). Signatures and enum values checked
// against cuDNN 9.6's cudnn_ops.h (cudnnPoolingMode_t) and cudnn_graph.h (cudnnNanPropagation_t).
internal static unsafe partial class CuDnn
{
    // cudnnPoolingMode_t
    public const int PoolingMax = 0;
    public const int PoolingAverageCountIncludePadding = 1;
    public const int PoolingAverageCountExcludePadding = 2;
    public const int PoolingMaxDeterministic = 3;

    // cudnnNanPropagation_t
    public const int NotPropagateNan = 0;
    public const int PropagateNan = 1;

    [LibraryImport(CudaLibraries.CuDnn)] public static partial int cudnnCreatePoolingDescriptor(out nint descriptor);
    [LibraryImport(CudaLibraries.CuDnn)] public static partial int cudnnDestroyPoolingDescriptor(nint descriptor);

    [LibraryImport(CudaLibraries.CuDnn)]
    public static partial int cudnnSetPoolingNdDescriptor(nint descriptor, int mode, int maxpoolingNanOpt, int nbDims,
        int* windowDims, int* padding, int* strides);

    /// <summary>The output dimensions (nbDims = the tensor's rank, N and C included) that cuDNN computes for an input.</summary>
    [LibraryImport(CudaLibraries.CuDnn)]
    public static partial int cudnnGetPoolingNdForwardOutputDim(nint descriptor, nint inputDescriptor, int nbDims, int* outputDims);

    [LibraryImport(CudaLibraries.CuDnn)]
    public static partial int cudnnPoolingForward(nint handle, nint descriptor, float* alpha, nint xDesc, ulong x,
        float* beta, nint yDesc, ulong y);

    [LibraryImport(CudaLibraries.CuDnn)]
    public static partial int cudnnPoolingBackward(nint handle, nint descriptor, float* alpha, nint yDesc, ulong y,
        nint dyDesc, ulong dy, nint xDesc, ulong x, float* beta, nint dxDesc, ulong dx);
}
