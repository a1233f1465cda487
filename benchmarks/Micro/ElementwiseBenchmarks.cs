using MLNet.ConvNet.Backends;
using BenchmarkDotNet.Attributes;
using MLNet.ConvNet.Backends.Cpu;
using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Benchmarks;

/// <summary>ReLU forward/backward and training-mode batch norm forward/backward on cnn2bn's first activation, [64,32,28,28].</summary>
[MemoryDiagnoser]
public class ElementwiseBenchmarks
{
    private IBackend _b = null!;
    private Tensor _x = null!, _y = null!, _dy = null!, _dx = null!, _gamma = null!, _beta = null!, _rm = null!, _rv = null!, _mean = null!, _inv = null!, _dg = null!, _db = null!;

    /// <summary>True: the reference batch norm (the baseline); ReLU runs the same kernels either way.</summary>
    [Params(false, true)]
    public bool Reference { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _b = Inputs.Backend(Reference);
        _x = Inputs.Random(_b, 1, 1f, 64, 32, 28, 28);
        _dy = Inputs.Random(_b, 2, 1f, 64, 32, 28, 28);
        _y = _b.Allocate(_x.Shape); _dx = _b.Allocate(_x.Shape);
        _gamma = Inputs.Random(_b, 3, 1f, 32); _beta = Inputs.Random(_b, 4, 1f, 32);
        _rm = _b.Allocate(new Shape(32)); _rv = _b.Allocate(new Shape(32)); _b.Fill(_rv, 1f);
        _mean = _b.Allocate(new Shape(32)); _inv = _b.Allocate(new Shape(32));
        _dg = _b.Allocate(new Shape(32)); _db = _b.Allocate(new Shape(32));
    }

    [Benchmark]
    public void ReluForwardBackward()
    {
        _b.ActivationForward(ActivationKind.ReLU, 0f, _x, _y);
        _b.ActivationBackward(ActivationKind.ReLU, 0f, _x, _y, _dy, _dx);
    }

    [Benchmark]
    public void BatchNormForwardBackward()
    {
        _b.BatchNormForwardTraining(_x, _gamma, _beta, 1e-5f, 0.1f, _rm, _rv, _y, _mean, _inv);
        _b.BatchNormBackward(_x, _dy, _gamma, _mean, _inv, _dx, _dg, _db);
    }
}
