using MLNet.ConvNet.Backends.Cpu;

namespace MLNet.ConvNet.Backends;

/// <summary>
/// The backend used when none is given: the shared all-cores CPU backend. A convenience for samples, tests and the
/// engine's short forms (<c>Tensor.FromHost(data, dims)</c>, <c>new Network(layers)</c>, a preset without a backend).
/// Code that serves a user's backend choice (the ML.NET trainer and transforms) never relies on it: it gets its
/// backend from <see cref="BackendFactory.Create"/> and passes it explicitly. It lives beside the CPU kernels so that
/// this folder is the only library code that names the CPU backend's type.
/// </summary>
public static class DefaultBackend
{
    /// <summary>The shared CPU backend using every core.</summary>
    public static IBackend Instance => CpuBackend.Default;

    /// <summary>A new CPU backend on at most <paramref name="maxThreads"/> threads (all cores when null); what <see cref="BackendFactory"/> makes for Cpu.</summary>
    public static IBackend Cpu(int? maxThreads = null) => new CpuBackend(maxThreads);

    /// <summary>A CPU backend running its readable reference loops: what <see cref="Reference.ReferenceBackend"/> forwards to.</summary>
    internal static IBackend CpuReferenceKernels(int maxThreads) => new CpuBackend(maxThreads, referenceKernels: true);
}
