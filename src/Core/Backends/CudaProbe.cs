using MLNet.ConvNet.Backends.Cuda;
using MLNet.ConvNet.Backends.Cuda.Interop;

namespace MLNet.ConvNet.Backends;

/// <summary>Finds out whether the CUDA backend can run here, and creates it when it can; says what is missing when not.</summary>
internal static class CudaProbe
{
    public static bool TryCreate(BackendOptions options, out IBackend? backend, out string whyNot)
    {
        backend = null;
        CudaLibraries.Install();
        var missing = new[] { CudaLibraries.Driver, CudaLibraries.Nvrtc, CudaLibraries.CuBlas, CudaLibraries.CuDnn }
            .Where(l => CudaLibraries.Load(l) == 0).Select(CudaLibraries.Describe).ToList();
        if (missing.Count > 0) { whyNot = string.Join("; ", missing) + "."; return false; }
        try
        {
            int r = Driver.cuInit(0);
            if (r != Driver.Success) { whyNot = $"the CUDA driver did not start (cuInit: {Driver.Describe(r)})."; return false; }
            Driver.Check(Driver.cuDeviceGetCount(out int count), "cuDeviceGetCount");
            if (count == 0) { whyNot = "the CUDA driver sees no device (check nvidia-smi and CUDA_VISIBLE_DEVICES)."; return false; }
            if (options.DeviceIndex >= count)
            {
                whyNot = $"option DeviceIndex = {options.DeviceIndex} but the driver sees {count} device(s) (0 to {count - 1}).";
                return false;
            }
            backend = CudaBackend.Get(options.DeviceIndex, options.AllowTf32);
            whyNot = "";
            return true;
        }
        catch (Exception e) when (e is CudaException or DllNotFoundException or EntryPointNotFoundException)
        {
            whyNot = $"the CUDA backend could not start: {e.Message}";
            return false;
        }
    }

    /// <summary>Where each library was found or what was looked for (for logs and docs/gpu.md's checks).</summary>
    public static string Describe() => string.Join("\n",
        new[] { CudaLibraries.Driver, CudaLibraries.Nvrtc, CudaLibraries.CuBlas, CudaLibraries.CuDnn }.Select(CudaLibraries.Describe));
}
