using MLNet.ConvNet.Backends;
using BenchmarkDotNet.Attributes;
using MLNet.ConvNet.Backends.Cpu;

namespace MLNet.ConvNet.Benchmarks;

/// <summary>C = A B on 2048 x 2048 float matrices (17.2 GFLOP per product), on every core and on one thread.</summary>
[MemoryDiagnoser]
public class GemmBenchmarks
{
    private const int N = 2048;
    private IBackend _b = null!;
    private Tensor _a = null!, _bm = null!, _c = null!;

    /// <summary>Threads the backend may use (0: every core).</summary>
    [Params(0, 1)]
    public int Threads { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _b = Threads == 0 ? new CpuBackend() : new CpuBackend(Threads);
        _a = Inputs.Random(_b, 1, 1f, N, N);
        _bm = Inputs.Random(_b, 2, 1f, N, N);
        _c = _b.Allocate(new Shape(N, N));
    }

    [Benchmark]
    public void MatMul2048() => _b.MatMul(_a, false, _bm, false, _c);
}
