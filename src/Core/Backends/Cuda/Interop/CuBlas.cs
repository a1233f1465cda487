using System.Runtime.InteropServices;

namespace MLNet.ConvNet.Backends.Cuda.Interop;

/// <summary>cuBLAS (column-major BLAS on the GPU): the matrix products of dense layers.</summary>
internal static unsafe partial class CuBlas
{
    public const int OpN = 0, OpT = 1;
    /// <summary>cublasMath_t: default (true fp32) and TF32 tensor-op math.</summary>
    public const int DefaultMath = 0, Tf32TensorOpMath = 3;

    [LibraryImport(CudaLibraries.CuBlas)] public static partial int cublasCreate_v2(out nint handle);
    [LibraryImport(CudaLibraries.CuBlas)] public static partial int cublasDestroy_v2(nint handle);
    [LibraryImport(CudaLibraries.CuBlas)] public static partial int cublasSetStream_v2(nint handle, nint stream);
    [LibraryImport(CudaLibraries.CuBlas)] public static partial int cublasSetMathMode(nint handle, int mode);
    [LibraryImport(CudaLibraries.CuBlas)] public static partial int cublasGetVersion_v2(nint handle, out int version);
    [LibraryImport(CudaLibraries.CuBlas)]
    public static partial int cublasSgemm_v2(nint handle, int transa, int transb, int m, int n, int k,
        float* alpha, ulong a, int lda, ulong b, int ldb, float* beta, ulong c, int ldc);
    [LibraryImport(CudaLibraries.CuBlas)] public static partial nint cublasGetStatusString(int status);

    public static void Check(int status, string function)
    {
        if (status != 0) throw new CudaException(function, status, Marshal.PtrToStringUTF8(cublasGetStatusString(status)) ?? $"cublasStatus_t {status}");
    }
}
