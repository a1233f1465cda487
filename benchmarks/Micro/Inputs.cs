using MLNet.ConvNet.Backends;
using MLNet.ConvNet.Backends.Cpu;

namespace MLNet.ConvNet.Benchmarks;

/// <summary>Seeded random tensors and the two backends (fast, reference) the benchmarks compare.</summary>
internal static class Inputs
{
    // The baseline is the CPU backend's own plain loops (its internal reference switch), as in the recorded figures;
    // ReferenceBackend's double-precision host loops are an oracle, not a baseline.
    public static IBackend Backend(bool reference) => new CpuBackend(null, referenceKernels: reference);

    public static Tensor Random(IBackend backend, int seed, float scale, params int[] dims)
    {
        var rng = new Random(seed);
        var shape = new Shape(dims);
        var data = new float[shape.Length];
        for (int i = 0; i < data.Length; i++) data[i] = (float)(rng.NextDouble() * 2 - 1) * scale;
        return Tensor.FromHost(data, shape, backend);
    }
}
