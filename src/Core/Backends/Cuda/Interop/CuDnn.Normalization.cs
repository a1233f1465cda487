using System.Runtime.InteropServices;

namespace MLNet.ConvNet.Backends.Cuda.Interop;

// Cross-channel LRN and batch normalization (cudnn_ops.h, cuDNN 9). Signatures, enum values and the LRN/BN limits
// checked against cuDNN 9.6's cudnn_ops.h. The batch-norm calls are deprecated since 9.0 but still exported.
internal static unsafe partial class CuDnn
{
    // cudnnLRNMode_t
    public const int LrnCrossChannelDim1 = 0;

    // CUDNN_LRN_MIN_N, CUDNN_LRN_MAX_N, CUDNN_LRN_MIN_K, CUDNN_LRN_MIN_BETA
    public const int LrnMinN = 1;
    public const int LrnMaxN = 16;
    public const double LrnMinK = 1e-5;
    public const double LrnMinBeta = 0.01;

    // cudnnBatchNormMode_t
    public const int BatchNormPerActivation = 0;
    public const int BatchNormSpatial = 1;

    /// <summary>CUDNN_BN_MIN_EPSILON: 0.0 in cuDNN 9 (it was 1e-5 up to cuDNN 7.4).</summary>
    public const double BatchNormMinEpsilon = 0.0;

    [LibraryImport(CudaLibraries.CuDnn)] public static partial int cudnnCreateLRNDescriptor(out nint descriptor);
    [LibraryImport(CudaLibraries.CuDnn)] public static partial int cudnnDestroyLRNDescriptor(nint descriptor);

    /// <summary>The window is [c - floor((n-1)/2), c + n - 1 - floor((n-1)/2)] (the header's lookBehind / lookAhead).</summary>
    [LibraryImport(CudaLibraries.CuDnn)]
    public static partial int cudnnSetLRNDescriptor(nint descriptor, uint lrnN, double lrnAlpha, double lrnBeta, double lrnK);

    [LibraryImport(CudaLibraries.CuDnn)]
    public static partial int cudnnLRNCrossChannelForward(nint handle, nint descriptor, int lrnMode, float* alpha,
        nint xDesc, ulong x, float* beta, nint yDesc, ulong y);

    [LibraryImport(CudaLibraries.CuDnn)]
    public static partial int cudnnLRNCrossChannelBackward(nint handle, nint descriptor, int lrnMode, float* alpha,
        nint yDesc, ulong y, nint dyDesc, ulong dy, nint xDesc, ulong x, float* beta, nint dxDesc, ulong dx);

    [LibraryImport(CudaLibraries.CuDnn)]
    public static partial int cudnnBatchNormalizationForwardTraining(nint handle, int mode, float* alpha, float* beta,
        nint xDesc, ulong x, nint yDesc, ulong y, nint scaleBiasMeanVarDesc, ulong scale, ulong bias,
        double exponentialAverageFactor, ulong runningMean, ulong runningVariance, double epsilon,
        ulong saveMean, ulong saveInvVariance);

    [LibraryImport(CudaLibraries.CuDnn)]
    public static partial int cudnnBatchNormalizationForwardInference(nint handle, int mode, float* alpha, float* beta,
        nint xDesc, ulong x, nint yDesc, ulong y, nint scaleBiasMeanVarDesc, ulong scale, ulong bias,
        ulong estimatedMean, ulong estimatedVariance, double epsilon);

    [LibraryImport(CudaLibraries.CuDnn)]
    public static partial int cudnnBatchNormalizationBackward(nint handle, int mode, float* alphaDataDiff, float* betaDataDiff,
        float* alphaParamDiff, float* betaParamDiff, nint xDesc, ulong x, nint dyDesc, ulong dy, nint dxDesc, ulong dx,
        nint scaleBiasDiffDesc, ulong scale, ulong scaleDiff, ulong biasDiff, double epsilon,
        ulong savedMean, ulong savedInvVariance);
}
