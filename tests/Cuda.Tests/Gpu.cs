using MLNet.ConvNet.Backends;
using MLNet.ConvNet.Backends.Cuda;
using Xunit;

namespace MLNet.ConvNet.Cuda.Tests;

/// <summary>The CUDA backend for device 0 when one can run here; otherwise the reason, and every GPU test skips with it.</summary>
internal static class Gpu
{
    private static readonly Lazy<(CudaBackend? Backend, string WhyNot)> Probe = new(() =>
    {
        try { return ((CudaBackend)BackendFactory.Create(new BackendOptions { Kind = BackendKind.Cuda }).Backend, ""); }
        catch (BackendUnavailableException e) { return (null, e.Message); }
    });

    /// <summary>The backend; skips the calling test (with the reason) where there is none.</summary>
    public static CudaBackend Require()
    {
        var (backend, whyNot) = Probe.Value;
        if (backend is null) Assert.Skip("No usable CUDA device here: " + whyNot);
        return backend;
    }
}
