using System.Runtime.InteropServices;

namespace MLNet.ConvNet.Backends.Cuda.Interop;

/// <summary>
/// The CUDA driver API (libcuda, shipped with the NVIDIA driver): devices, the primary context, memory, streams,
/// and loading and launching our own kernels. The driver API rather than the runtime (libcudart) so that nothing
/// but the driver is needed for memory and launches, and the kernels compiled by NVRTC load directly as modules.
/// Every call returns a CUresult; <see cref="Check"/> turns a failure into a <see cref="CudaException"/>.
/// </summary>
internal static unsafe partial class Driver
{
    public const int Success = 0, OutOfMemory = 2, NoDevice = 100;
    public const int AttributeComputeCapabilityMajor = 75, AttributeComputeCapabilityMinor = 76, AttributeMultiprocessorCount = 16;
    public const uint StreamNonBlocking = 1;

    [LibraryImport(CudaLibraries.Driver)] public static partial int cuInit(uint flags);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuDriverGetVersion(out int version);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuDeviceGetCount(out int count);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuDeviceGet(out int device, int ordinal);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuDeviceGetName(byte* name, int length, int device);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuDeviceGetAttribute(out int value, int attribute, int device);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuDevicePrimaryCtxRetain(out nint context, int device);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuDevicePrimaryCtxRelease_v2(int device);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuCtxSetCurrent(nint context);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuMemGetInfo_v2(out nuint free, out nuint total);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuMemAlloc_v2(out ulong pointer, nuint bytes);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuMemFree_v2(ulong pointer);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuMemcpyHtoDAsync_v2(ulong destination, void* source, nuint bytes, nint stream);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuMemcpyDtoHAsync_v2(void* destination, ulong source, nuint bytes, nint stream);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuMemcpyDtoDAsync_v2(ulong destination, ulong source, nuint bytes, nint stream);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuMemsetD32Async(ulong destination, uint value, nuint count, nint stream);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuStreamCreate(out nint stream, uint flags);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuStreamSynchronize(nint stream);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuStreamDestroy_v2(nint stream);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuModuleLoadData(out nint module, void* image);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuModuleGetFunction(out nint function, nint module, [MarshalAs(UnmanagedType.LPUTF8Str)] string name);
    [LibraryImport(CudaLibraries.Driver)]
    public static partial int cuLaunchKernel(nint function, uint gridX, uint gridY, uint gridZ, uint blockX, uint blockY, uint blockZ,
        uint sharedMemoryBytes, nint stream, void** parameters, void** extra);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuEventCreate(out nint e, uint flags);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuEventRecord(nint e, nint stream);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuEventElapsedTime(out float milliseconds, nint start, nint end);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuEventDestroy_v2(nint e);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuGetErrorName(int error, out nint name);
    [LibraryImport(CudaLibraries.Driver)] public static partial int cuGetErrorString(int error, out nint text);

    /// <summary>Throws a <see cref="CudaException"/> naming <paramref name="function"/> and the driver's error name and text.</summary>
    public static void Check(int result, string function)
    {
        if (result != Success) throw new CudaException(function, result, Describe(result));
    }

    public static string Describe(int result)
    {
        string name = cuGetErrorName(result, out var n) == Success && n != 0 ? Marshal.PtrToStringUTF8(n)! : $"CUresult {result}";
        string text = cuGetErrorString(result, out var t) == Success && t != 0 ? Marshal.PtrToStringUTF8(t)! : "";
        return text.Length > 0 ? $"{name}: {text}" : name;
    }
}

/// <summary>A CUDA, NVRTC, cuBLAS or cuDNN call failed; the message names the function and the library's error.</summary>
public sealed class CudaException : InvalidOperationException
{
    internal CudaException(string function, int code, string description)
        : base($"{function} failed: {description} (code {code}).")
    {
        Function = function; Code = code;
    }

    /// <summary>The library function that failed.</summary>
    public string Function { get; }
    /// <summary>The library's status code.</summary>
    public int Code { get; }
}
