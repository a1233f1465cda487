using System.Reflection;
using System.Runtime.InteropServices;

namespace MLNet.ConvNet.Backends.Cuda.Interop;

/// <summary>
/// Finds the NVIDIA libraries where users have them and resolves our <c>[LibraryImport]</c> names to them. The
/// bindings name four logical libraries: <see cref="Driver"/> (libcuda, installed with the driver), <see cref="Nvrtc"/>
/// (the run-time compiler for our own kernels), <see cref="CuBlas"/> and <see cref="CuDnn"/>.
/// </summary>
/// <remarks>
/// Search order for each library, first hit wins:
/// 1. every folder in the environment variable <c>CONVNET_CUDA_PATH</c> (a path list, ':' on Linux, ';' on Windows);
/// 2. the system's own search (LD_LIBRARY_PATH, ldconfig's cache; PATH on Windows);
/// 3. <c>/usr/local/cuda*/lib64</c> and <c>targets/x86_64-linux/lib</c> (CUDA_PATH and CUDNN_PATH's bin folders on Windows);
/// 4. the <c>nvidia/*/lib</c> folders of Python environments (pip's nvidia-cudnn-cu12/cu13 and nvidia-cublas wheels,
///    which is how most PyTorch users already have cuDNN), and <c>torch/lib</c>.
/// A library found in a folder first gets its companions there loaded (cuBLAS needs cuBLASLt, NVRTC its builtins,
/// cuDNN 9 its sub-libraries), because those wheels rely on a search path that a .NET process does not have.
/// Every attempt is recorded, so an error can say what was looked for and where.
/// </remarks>
internal static class CudaLibraries
{
    public const string Driver = "convnet_cuda", Nvrtc = "convnet_nvrtc", CuBlas = "convnet_cublas", CuDnn = "convnet_cudnn";

    private static readonly object Gate = new();
    private static readonly Dictionary<string, nint> Loaded = [];
    private static readonly Dictionary<string, string> Failures = [];
    private static bool _installed;

    /// <summary>Installs the resolver for this assembly (once; later calls do nothing).</summary>
    public static void Install()
    {
        lock (Gate)
        {
            if (_installed) return;
            NativeLibrary.SetDllImportResolver(typeof(CudaLibraries).Assembly, Resolve);
            _installed = true;
        }
    }

    private static nint Resolve(string name, Assembly assembly, DllImportSearchPath? path) =>
        name is Driver or Nvrtc or CuBlas or CuDnn ? Load(name) : 0;

    /// <summary>Loads one logical library (cached); 0 when not found (see <see cref="Describe"/>).</summary>
    public static nint Load(string name)
    {
        lock (Gate)
        {
            // Only successes are cached: a user who installs a library or sets CONVNET_CUDA_PATH needs no restart.
            if (Loaded.TryGetValue(name, out var h)) return h;
            h = Find(name, out string tried);
            if (h != 0) { Loaded[name] = h; Failures.Remove(name); } else Failures[name] = tried;
            return h;
        }
    }

    /// <summary>Where each library came from, or what was tried, for logs and error messages.</summary>
    public static string Describe(string name)
    {
        lock (Gate)
        {
            if (Loaded.ContainsKey(name) && LoadedFrom.TryGetValue(name, out var from)) return $"{Pretty(name)} from {from}";
            return Failures.TryGetValue(name, out var tried) ? $"{Pretty(name)} not found (looked for {tried})" : $"{Pretty(name)} not looked for yet";
        }
    }

    private static readonly Dictionary<string, string> LoadedFrom = [];

    private static string Pretty(string name) => name switch
    {
        Driver => "the CUDA driver (libcuda)", Nvrtc => "NVRTC", CuBlas => "cuBLAS", CuDnn => "cuDNN 9", _ => name,
    };

    /// <summary>File names per library, newest first.</summary>
    private static string[] FileNames(string name) => OperatingSystem.IsWindows()
        ? name switch
        {
            Driver => ["nvcuda.dll"],
            Nvrtc => ["nvrtc64_130_0.dll", "nvrtc64_120_0.dll"],
            CuBlas => ["cublas64_13.dll", "cublas64_12.dll"],
            _ => ["cudnn64_9.dll"],
        }
        : name switch
        {
            Driver => ["libcuda.so.1", "libcuda.so"],
            Nvrtc => ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"],
            CuBlas => ["libcublas.so.13", "libcublas.so.12", "libcublas.so"],
            _ => ["libcudnn.so.9"],
        };

    /// <summary>Files loaded from the same folder before the library itself (patterns for Directory.GetFiles).</summary>
    private static string[] Companions(string name) => name switch
    {
        Nvrtc => OperatingSystem.IsWindows() ? ["nvrtc-builtins64_*.dll"] : ["libnvrtc-builtins.so*"],
        CuBlas => OperatingSystem.IsWindows() ? ["cublasLt64_*.dll"] : ["libcublasLt.so*"],
        CuDnn => OperatingSystem.IsWindows() ? ["cudnn_*64_9.dll"] : ["libcudnn_*.so.9"],
        _ => [],
    };

    private static nint Find(string name, out string tried)
    {
        var files = FileNames(name);
        var attempts = new List<string>();
        // 1. The user's folders.
        foreach (var dir in UserFolders())
            if (TryFolder(name, dir, files, attempts) is var h and not 0) { tried = ""; return h; }
        // 2. The system's search.
        foreach (var f in files)
        {
            if (NativeLibrary.TryLoad(f, out var h)) { LoadedFrom[name] = $"the system search path ({f})"; tried = ""; return h; }
        }
        attempts.Add("the system library path");
        // 3 and 4. Toolkit folders and Python environments.
        foreach (var dir in ToolkitFolders().Concat(PythonFolders()))
            if (TryFolder(name, dir, files, attempts) is var h and not 0) { tried = ""; return h; }
        tried = $"{string.Join(" or ", files)} in {string.Join(", ", attempts.Distinct())}" +
                (Environment.GetEnvironmentVariable("CONVNET_CUDA_PATH") is null ? "; set CONVNET_CUDA_PATH to the folder that holds it" : "");
        return 0;
    }

    private static nint TryFolder(string name, string dir, string[] files, List<string> attempts)
    {
        if (!Directory.Exists(dir)) return 0;
        attempts.Add(dir);
        foreach (var f in files)
        {
            string path = Path.Combine(dir, f);
            if (!File.Exists(path)) continue;
            LoadCompanions(name, dir);
            if (NativeLibrary.TryLoad(path, out var h)) { LoadedFrom[name] = path; return h; }
        }
        return 0;
    }

    /// <summary>Loads the companions in passes until none more loads (one may need another first).</summary>
    private static void LoadCompanions(string name, string dir)
    {
        var pending = Companions(name).SelectMany(p => Directory.GetFiles(dir, p)).Where(f => !f.EndsWith(".alt", StringComparison.Ordinal)).Distinct().ToList();
        bool progress = true;
        while (pending.Count > 0 && progress)
        {
            progress = false;
            foreach (var f in pending.ToArray())
                if (NativeLibrary.TryLoad(f, out _)) { pending.Remove(f); progress = true; }
        }
    }

    private static IEnumerable<string> UserFolders()
    {
        var list = Environment.GetEnvironmentVariable("CONVNET_CUDA_PATH");
        return string.IsNullOrWhiteSpace(list) ? [] : list.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
    }

    private static IEnumerable<string> ToolkitFolders()
    {
        if (OperatingSystem.IsWindows())
        {
            foreach (var v in new[] { "CUDA_PATH", "CUDNN_PATH" })
                if (Environment.GetEnvironmentVariable(v) is { Length: > 0 } root)
                {
                    yield return Path.Combine(root, "bin", "x64");
                    yield return Path.Combine(root, "bin");
                }
            yield break;
        }
        foreach (var root in Glob("/usr/local", "cuda*"))
        {
            yield return Path.Combine(root, "lib64");
            yield return Path.Combine(root, "targets", "x86_64-linux", "lib");
        }
        yield return "/usr/lib/x86_64-linux-gnu";
    }

    /// <summary>nvidia/*/lib (and torch/lib) under the site-packages of the usual Python places.</summary>
    private static IEnumerable<string> PythonFolders()
    {
        var roots = new List<string>();
        string home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        foreach (var prefix in new[] { Environment.GetEnvironmentVariable("VIRTUAL_ENV"), Environment.GetEnvironmentVariable("CONDA_PREFIX"),
                     "/usr", "/usr/local", "/opt/conda", Path.Combine(home, ".local") })
        {
            if (string.IsNullOrEmpty(prefix)) continue;
            foreach (var lib in Glob(Path.Combine(prefix, "lib"), "python3*")) roots.Add(lib);
            roots.Add(Path.Combine(prefix, "Lib")); // Windows virtual environments
        }
        foreach (var v in Glob(Path.Combine(home, ".pyenv", "versions"), "*"))
            foreach (var lib in Glob(Path.Combine(v, "lib"), "python3*")) roots.Add(lib);
        foreach (var root in roots)
            foreach (var packages in new[] { "site-packages", "dist-packages" })
            {
                string sp = Path.Combine(root, packages);
                foreach (var pkg in Glob(Path.Combine(sp, "nvidia"), "*"))
                {
                    yield return Path.Combine(pkg, "lib");
                    yield return Path.Combine(pkg, "bin"); // Windows wheels
                }
                yield return Path.Combine(sp, "torch", "lib");
            }
    }

    private static IEnumerable<string> Glob(string dir, string pattern)
    {
        try { return Directory.Exists(dir) ? Directory.GetDirectories(dir, pattern).Order(StringComparer.Ordinal).Reverse().ToArray() : []; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return []; }
    }
}
