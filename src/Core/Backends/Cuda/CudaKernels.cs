using System.Reflection;
using MLNet.ConvNet.Backends.Cuda.Interop;

namespace MLNet.ConvNet.Backends.Cuda;

/// <summary>
/// Our own CUDA kernels: the CUDA C sources in Kernels/*.cu (embedded in the assembly) compiled with NVRTC into one
/// PTX module per device, once per process, and looked up by name.
/// </summary>
/// <remarks>
/// Why NVRTC: the sources stay readable CUDA C in the repository, nothing is compiled at build time (no nvcc on a
/// build machine), and PTX for the device's own compute capability is produced where the program runs. Compiled
/// with --fmad=false so that a multiply followed by an add rounds twice, as the CPU kernels do, and the optimizer
/// updates give the CPU's bits.
/// </remarks>
internal sealed class CudaKernels
{
    private static readonly Dictionary<int, CudaKernels> PerDevice = [];
    private readonly nint _module;
    private readonly Dictionary<string, nint> _functions = [];

    private CudaKernels(nint module) => _module = module;

    /// <summary>The kernels for <paramref name="device"/> (compiled and loaded on first use; call with the device's context current).</summary>
    public static CudaKernels For(int device, int computeCapability)
    {
        lock (PerDevice)
        {
            if (PerDevice.TryGetValue(device, out var k)) return k;
            byte[] ptx = Nvrtc.CompileToPtx(Source(), "convnet_kernels.cu",
                [$"--gpu-architecture=compute_{computeCapability}", "--fmad=false", "--std=c++17"]);
            return PerDevice[device] = new CudaKernels(Load(ptx));
        }
    }

    private static unsafe nint Load(byte[] ptx)
    {
        nint module;
        fixed (byte* p = ptx) Driver.Check(Driver.cuModuleLoadData(out module, p), "cuModuleLoadData");
        return module;
    }

    /// <summary>The function <paramref name="name"/> (an <c>extern "C" __global__</c> of Kernels/*.cu).</summary>
    public nint this[string name]
    {
        get
        {
            lock (_functions)
            {
                if (_functions.TryGetValue(name, out var f)) return f;
                Driver.Check(Driver.cuModuleGetFunction(out f, _module, name), $"cuModuleGetFunction({name})");
                return _functions[name] = f;
            }
        }
    }

    /// <summary>Every embedded Kernels/*.cu, Prelude.cu first, joined into one translation unit.</summary>
    internal static string Source()
    {
        var assembly = typeof(CudaKernels).Assembly;
        var names = assembly.GetManifestResourceNames().Where(n => n.EndsWith(".cu", StringComparison.Ordinal))
            .OrderBy(n => n.EndsWith("Prelude.cu", StringComparison.Ordinal) ? 0 : 1).ThenBy(n => n, StringComparer.Ordinal);
        var text = new System.Text.StringBuilder();
        foreach (var n in names)
        {
            using var s = assembly.GetManifestResourceStream(n)!;
            using var r = new StreamReader(s);
            text.Append("// ---- ").Append(n).Append('\n').Append(r.ReadToEnd()).Append('\n');
        }
        return text.ToString();
    }
}
