using MLNet.ConvNet.Backends;
using BenchmarkDotNet.Attributes;
using MLNet.ConvNet.Backends.Cpu;
using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Benchmarks;

/// <summary>Max pooling 2x2 stride 2 on [64,32,28,28]: forward, and forward + backward.</summary>
[MemoryDiagnoser]
public class PoolingBenchmarks
{
    private IBackend _b = null!;
    private PoolGeometry _g = null!;
    private Tensor _x = null!, _y = null!, _dy = null!, _dx = null!;

    /// <summary>True: the readable reference kernels (the baseline).</summary>
    [Params(false, true)]
    public bool Reference { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _b = Inputs.Backend(Reference);
        _x = Inputs.Random(_b, 1, 1f, 64, 32, 28, 28);
        _g = PoolGeometry.Create(_x.Shape, new PoolingOptions { Window = 2 });
        _y = _b.Allocate(_g.Output);
        _dy = Inputs.Random(_b, 2, 1f, 64, 32, 14, 14);
        _dx = _b.Allocate(_x.Shape);
    }

    [Benchmark]
    public void Forward() => _b.PoolingForward(_g, _x, _y);

    [Benchmark]
    public void ForwardBackward()
    {
        _b.PoolingForward(_g, _x, _y);
        _b.PoolingBackward(_g, _x, _y, _dy, _dx);
    }
}
