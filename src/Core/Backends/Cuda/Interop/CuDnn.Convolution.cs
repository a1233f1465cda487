using System.Runtime.InteropServices;

namespace MLNet.ConvNet.Backends.Cuda.Interop;

// Convolution: filter and convolution descriptors, algorithm search, the three convolution calls, and
// cudnnAddTensor for the bias. Checked against cuDNN 9.6's headers (cudnn_graph.h, cudnn_ops.h, cudnn_cnn.h);
// every function here is in the legacy API, deprecated in 9.x but still exported by libcudnn.so.9.
internal static unsafe partial class CuDnn
{
    // cudnnConvolutionMode_t (cudnn_graph.h)
    public const int Convolution = 0;          // CUDNN_CONVOLUTION: the filter is flipped
    public const int CrossCorrelation = 1;     // CUDNN_CROSS_CORRELATION: no flip

    // cudnnMathType_t (cudnn_graph.h)
    public const int DefaultMath = 0;          // CUDNN_DEFAULT_MATH: TF32 allowed for float on Ampere and later
    public const int TensorOpMath = 1;         // CUDNN_TENSOR_OP_MATH
    public const int TensorOpMathAllowConversion = 2; // CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION
    public const int FmaMath = 3;              // CUDNN_FMA_MATH: plain fp32 FMA, never tensor cores

    // cudnnDeterminism_t (cudnn_ops.h)
    public const int Deterministic = 1;        // CUDNN_DETERMINISTIC (CUDNN_NON_DETERMINISTIC = 0)

    /// <summary>
    /// cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionBwdDataAlgoPerf_t and cudnnConvolutionBwdFilterAlgoPerf_t
    /// (cudnn_cnn.h) share this layout: enum algo, cudnnStatus_t status, float time, size_t memory,
    /// cudnnDeterminism_t determinism, cudnnMathType_t mathType, int reserved[3]. Enums are C ints, so on 64-bit
    /// the offsets are 0, 4, 8, 16 (size_t aligned to 8), 24, 28, 32 and the size is 48.
    /// </summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct ConvolutionPerf
    {
        public int Algo;
        public int Status;
        public float Time;          // milliseconds
        public nuint Memory;        // workspace bytes
        public int Determinism;
        public int MathType;
        public fixed int Reserved[3];
    }

    // ---- filter descriptors (cudnn_ops.h) ----

    [LibraryImport(CudaLibraries.CuDnn)] public static partial int cudnnCreateFilterDescriptor(out nint descriptor);
    [LibraryImport(CudaLibraries.CuDnn)] public static partial int cudnnDestroyFilterDescriptor(nint descriptor);
    /// <summary>cudnnSetFilterNdDescriptor(filterDesc, cudnnDataType_t dataType, cudnnTensorFormat_t format, int nbDims, const int filterDimA[]).</summary>
    [LibraryImport(CudaLibraries.CuDnn)]
    public static partial int cudnnSetFilterNdDescriptor(nint descriptor, int dataType, int format, int rank, int* dims);

    // ---- convolution descriptors (cudnn_cnn.h) ----

    [LibraryImport(CudaLibraries.CuDnn)] public static partial int cudnnCreateConvolutionDescriptor(out nint descriptor);
    [LibraryImport(CudaLibraries.CuDnn)] public static partial int cudnnDestroyConvolutionDescriptor(nint descriptor);
    [LibraryImport(CudaLibraries.CuDnn)] public static partial int cudnnSetConvolutionMathType(nint descriptor, int mathType);
    [LibraryImport(CudaLibraries.CuDnn)] public static partial int cudnnSetConvolutionGroupCount(nint descriptor, int groupCount);
    /// <summary>
    /// cudnnSetConvolutionNdDescriptor(convDesc, int arrayLength (= nbDims - 2), const int padA[], const int filterStrideA[],
    /// const int dilationA[], cudnnConvolutionMode_t mode, cudnnDataType_t computeType).
    /// </summary>
    [LibraryImport(CudaLibraries.CuDnn)]
    public static partial int cudnnSetConvolutionNdDescriptor(nint descriptor, int spatialRank, int* padding, int* stride, int* dilation, int mode, int computeType);
    /// <summary>cudnnGetConvolutionNdForwardOutputDim(convDesc, inputTensorDesc, filterDesc, int nbDims, int tensorOuputDimA[]).</summary>
    [LibraryImport(CudaLibraries.CuDnn)]
    public static partial int cudnnGetConvolutionNdForwardOutputDim(nint convolution, nint input, nint filter, int rank, int* outputDims);

    // ---- algorithm search on real buffers (cudnn_cnn.h) ----

    /// <summary>(handle, xDesc, x, wDesc, w, convDesc, yDesc, y, requestedAlgoCount, *returnedAlgoCount, perfResults, workSpace, workSpaceSizeInBytes).</summary>
    [LibraryImport(CudaLibraries.CuDnn)]
    public static partial int cudnnFindConvolutionForwardAlgorithmEx(nint handle, nint xDesc, ulong x, nint wDesc, ulong w, nint convolution,
        nint yDesc, ulong y, int requested, out int returned, ConvolutionPerf* results, ulong workspace, nuint workspaceBytes);

    /// <summary>(handle, wDesc, w, dyDesc, dy, convDesc, dxDesc, dx, requestedAlgoCount, *returnedAlgoCount, perfResults, workSpace, workSpaceSizeInBytes).</summary>
    [LibraryImport(CudaLibraries.CuDnn)]
    public static partial int cudnnFindConvolutionBackwardDataAlgorithmEx(nint handle, nint wDesc, ulong w, nint dyDesc, ulong dy, nint convolution,
        nint dxDesc, ulong dx, int requested, out int returned, ConvolutionPerf* results, ulong workspace, nuint workspaceBytes);

    /// <summary>(handle, xDesc, x, dyDesc, dy, convDesc, dwDesc, dw, requestedAlgoCount, *returnedAlgoCount, perfResults, workSpace, workSpaceSizeInBytes).</summary>
    [LibraryImport(CudaLibraries.CuDnn)]
    public static partial int cudnnFindConvolutionBackwardFilterAlgorithmEx(nint handle, nint xDesc, ulong x, nint dyDesc, ulong dy, nint convolution,
        nint dwDesc, ulong dw, int requested, out int returned, ConvolutionPerf* results, ulong workspace, nuint workspaceBytes);

    // ---- the convolutions: output = alpha * op(inputs) + beta * output; alpha and beta are host floats ----

    /// <summary>(handle, *alpha, xDesc, x, wDesc, w, convDesc, algo, workSpace, workSpaceSizeInBytes, *beta, yDesc, y).</summary>
    [LibraryImport(CudaLibraries.CuDnn)]
    public static partial int cudnnConvolutionForward(nint handle, float* alpha, nint xDesc, ulong x, nint wDesc, ulong w, nint convolution,
        int algo, ulong workspace, nuint workspaceBytes, float* beta, nint yDesc, ulong y);

    /// <summary>(handle, *alpha, wDesc, w, dyDesc, dy, convDesc, algo, workSpace, workSpaceSizeInBytes, *beta, dxDesc, dx).</summary>
    [LibraryImport(CudaLibraries.CuDnn)]
    public static partial int cudnnConvolutionBackwardData(nint handle, float* alpha, nint wDesc, ulong w, nint dyDesc, ulong dy, nint convolution,
        int algo, ulong workspace, nuint workspaceBytes, float* beta, nint dxDesc, ulong dx);

    /// <summary>(handle, *alpha, xDesc, x, dyDesc, dy, convDesc, algo, workSpace, workSpaceSizeInBytes, *beta, dwDesc, dw).</summary>
    [LibraryImport(CudaLibraries.CuDnn)]
    public static partial int cudnnConvolutionBackwardFilter(nint handle, float* alpha, nint xDesc, ulong x, nint dyDesc, ulong dy, nint convolution,
        int algo, ulong workspace, nuint workspaceBytes, float* beta, nint dwDesc, ulong dw);

    /// <summary>cudnnAddTensor(handle, *alpha, aDesc, A, *beta, cDesc, C): C = alpha * A + beta * C, A broadcast over its size-1 dimensions (cudnn_ops.h).</summary>
    [LibraryImport(CudaLibraries.CuDnn)]
    public static partial int cudnnAddTensor(nint handle, float* alpha, nint aDesc, ulong a, float* beta, nint cDesc, ulong c);
}
