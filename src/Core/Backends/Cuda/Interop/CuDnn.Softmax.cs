using System.Runtime.InteropServices;

namespace MLNet.ConvNet.Backends.Cuda.Interop;

// Softmax (cudnn_ops.h, cuDNN 9; not deprecated). Signatures and enum values checked against cuDNN 9.6's cudnn_ops.h.
internal static unsafe partial class CuDnn
{
    // cudnnSoftmaxAlgorithm_t
    public const int SoftmaxFast = 0;
    public const int SoftmaxAccurate = 1;
    public const int SoftmaxLog = 2;

    // cudnnSoftmaxMode_t
    public const int SoftmaxModeInstance = 0;
    public const int SoftmaxModeChannel = 1;

    [LibraryImport(CudaLibraries.CuDnn)]
    public static partial int cudnnSoftmaxForward(nint handle, int algorithm, int mode, float* alpha, nint xDesc, ulong x,
        float* beta, nint yDesc, ulong y);

    [LibraryImport(CudaLibraries.CuDnn)]
    public static partial int cudnnSoftmaxBackward(nint handle, int algorithm, int mode, float* alpha, nint yDesc, ulong y,
        nint dyDesc, ulong dy, float* beta, nint dxDesc, ulong dx);
}
