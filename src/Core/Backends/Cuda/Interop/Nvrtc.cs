using System.Runtime.InteropServices;

namespace MLNet.ConvNet.Backends.Cuda.Interop;

/// <summary>NVRTC, CUDA's run-time compiler: our own kernels (Kernels/*.cu) are compiled to PTX once per process.</summary>
internal static unsafe partial class Nvrtc
{
    [LibraryImport(CudaLibraries.Nvrtc)] public static partial int nvrtcVersion(out int major, out int minor);
    [LibraryImport(CudaLibraries.Nvrtc)]
    public static partial int nvrtcCreateProgram(out nint program, [MarshalAs(UnmanagedType.LPUTF8Str)] string source,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name, int headerCount, byte** headers, byte** includeNames);
    [LibraryImport(CudaLibraries.Nvrtc)] public static partial int nvrtcCompileProgram(nint program, int optionCount, byte** options);
    [LibraryImport(CudaLibraries.Nvrtc)] public static partial int nvrtcGetProgramLogSize(nint program, out nuint size);
    [LibraryImport(CudaLibraries.Nvrtc)] public static partial int nvrtcGetProgramLog(nint program, byte* log);
    [LibraryImport(CudaLibraries.Nvrtc)] public static partial int nvrtcGetPTXSize(nint program, out nuint size);
    [LibraryImport(CudaLibraries.Nvrtc)] public static partial int nvrtcGetPTX(nint program, byte* ptx);
    [LibraryImport(CudaLibraries.Nvrtc)] public static partial int nvrtcDestroyProgram(ref nint program);
    [LibraryImport(CudaLibraries.Nvrtc)] public static partial nint nvrtcGetErrorString(int result);

    public static void Check(int result, string function)
    {
        if (result != 0) throw new CudaException(function, result, Marshal.PtrToStringUTF8(nvrtcGetErrorString(result)) ?? $"nvrtcResult {result}");
    }

    /// <summary>Compiles <paramref name="source"/> to PTX with <paramref name="options"/>; a compile error carries NVRTC's log.</summary>
    public static byte[] CompileToPtx(string source, string name, IReadOnlyList<string> options)
    {
        Check(nvrtcCreateProgram(out var program, source, name, 0, null, null), "nvrtcCreateProgram");
        try
        {
            var encoded = options.Select(o => System.Text.Encoding.UTF8.GetBytes(o + "\0")).ToArray();
            var handles = encoded.Select(b => GCHandle.Alloc(b, GCHandleType.Pinned)).ToArray();
            int result;
            try
            {
                var pointers = stackalloc byte*[encoded.Length];
                for (int i = 0; i < encoded.Length; i++) pointers[i] = (byte*)handles[i].AddrOfPinnedObject();
                result = nvrtcCompileProgram(program, encoded.Length, pointers);
            }
            finally { foreach (var h in handles) h.Free(); }
            if (result != 0)
            {
                string log = "";
                if (nvrtcGetProgramLogSize(program, out var size) == 0 && size > 1)
                {
                    var buffer = new byte[(int)size];
                    fixed (byte* p = buffer) nvrtcGetProgramLog(program, p);
                    log = System.Text.Encoding.UTF8.GetString(buffer, 0, buffer.Length - 1);
                }
                throw new CudaException("nvrtcCompileProgram", result,
                    $"{Marshal.PtrToStringUTF8(nvrtcGetErrorString(result))} compiling {name} with {string.Join(' ', options)}:\n{log}");
            }
            Check(nvrtcGetPTXSize(program, out var ptxSize), "nvrtcGetPTXSize");
            var ptx = new byte[(int)ptxSize];
            fixed (byte* p = ptx) Check(nvrtcGetPTX(program, p), "nvrtcGetPTX");
            return ptx; // NUL-terminated, as cuModuleLoadData wants
        }
        finally { nvrtcDestroyProgram(ref program); }
    }
}
