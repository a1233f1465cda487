using MLNet.ConvNet.Backends;
using BenchmarkDotNet.Attributes;
using MLNet.ConvNet.Backends.Cpu;
using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Benchmarks;

/// <summary>
/// Convolution [64,32,14,14] * [64,32,3,3], pad 1, stride 1, with bias (the peer's conv case): forward, and
/// forward + filter, bias and input gradients. Outputs are preallocated, so this times the kernels.
/// </summary>
[MemoryDiagnoser]
public class ConvolutionBenchmarks
{
    private IBackend _b = null!;
    private ConvGeometry _g = null!;
    private Tensor _x = null!, _w = null!, _bias = null!, _y = null!, _dy = null!, _dx = null!, _dw = null!, _db = null!;

    /// <summary>True: the readable reference kernels (the baseline).</summary>
    [Params(false, true)]
    public bool Reference { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _b = Inputs.Backend(Reference);
        _x = Inputs.Random(_b, 1, 1f, 64, 32, 14, 14);
        _w = Inputs.Random(_b, 2, 0.1f, 64, 32, 3, 3);
        _bias = Inputs.Random(_b, 3, 0.1f, 64);
        _g = ConvGeometry.Create(_x.Shape, _w.Shape, new ConvolutionOptions { Padding = 1, Mode = ConvolutionMode.CrossCorrelation });
        _y = _b.Allocate(_g.Output);
        _dy = Inputs.Random(_b, 4, 1f, 64, 64, 14, 14);
        _dx = _b.Allocate(_g.Input); _dw = _b.Allocate(_g.Filter); _db = _b.Allocate(_bias.Shape);
    }

    [Benchmark]
    public void Forward() => _b.ConvolutionForward(_g, _x, _w, _bias, _y);

    [Benchmark]
    public void ForwardBackward()
    {
        _b.ConvolutionForward(_g, _x, _w, _bias, _y);
        _b.ConvolutionBackwardFilter(_g, _x, _dy, _dw);
        _b.SumPerChannel(_dy, _db);
        _b.ConvolutionBackwardData(_g, _w, _dy, _dx);
    }
}
