namespace MLNet.ConvNet.Backends.Reference;

/// <summary>
/// The readable reference kernels as a backend of their own: plain loops for MatMul, convolution and pooling, one
/// thread by default. The oracle of the backend contract tests (tests/Backends.Contract) and of the fast CPU kernels'
/// tests, and the baseline of the benchmarks. Slow; not for training.
/// </summary>
/// <remarks>
/// First step of issue 9: it runs a private CPU backend built with its reference-loop switch on (made by <see cref="DefaultBackend"/>, beside the CPU kernels), so its
/// tensors hold CPU storage and can be copied to and from the CPU backend's with plain host copies. The switch is
/// reachable only through this class.
/// </remarks>
public sealed class ReferenceBackend : DelegatingBackend
{
    /// <summary>A reference backend on <paramref name="maxThreads"/> threads (1 by default; results do not depend on it).</summary>
    public ReferenceBackend(int maxThreads = 1) : base(DefaultBackend.CpuReferenceKernels(maxThreads)) { }

    /// <summary>A shared one-thread instance.</summary>
    public static ReferenceBackend Default { get; } = new();

    public override string Name => "reference";
}
