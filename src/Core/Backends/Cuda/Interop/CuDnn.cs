using System.Runtime.InteropServices;

namespace MLNet.ConvNet.Backends.Cuda.Interop;

/// <summary>
/// cuDNN 9's legacy ("v7-style") API: descriptors plus one call per operation. One partial file per op family
/// (CuDnn.Convolution.cs, ...). Status codes are cuDNN 9's (BAD_PARAM = 2000, NOT_SUPPORTED = 3000, ...); the text
/// comes from cudnnGetErrorString, so the numbers never need decoding here.
/// </summary>
internal static unsafe partial class CuDnn
{
    public const int DataFloat = 0;
    public const int TensorNchw = 0;

    [LibraryImport(CudaLibraries.CuDnn)] public static partial nuint cudnnGetVersion();
    [LibraryImport(CudaLibraries.CuDnn)] public static partial int cudnnCreate(out nint handle);
    [LibraryImport(CudaLibraries.CuDnn)] public static partial int cudnnDestroy(nint handle);
    [LibraryImport(CudaLibraries.CuDnn)] public static partial int cudnnSetStream(nint handle, nint stream);
    [LibraryImport(CudaLibraries.CuDnn)] public static partial nint cudnnGetErrorString(int status);

    public static void Check(int status, string function)
    {
        if (status != 0) throw new CudaException(function, status, Marshal.PtrToStringUTF8(cudnnGetErrorString(status)) ?? $"cudnnStatus_t {status}");
    }

    /// <summary>"9.x.y" from cudnnGetVersion's major*10000 + minor*100 + patch.</summary>
    public static string VersionText(nuint v) => $"{v / 10000}.{v / 100 % 100}.{v % 100}";
}
