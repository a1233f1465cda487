using MLNet.ConvNet.Onnx;
using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Layers;

/// <summary>Max or average pooling (1-D, 2-D, 3-D); calls <see cref="Pooling"/>. No parameters.</summary>
public sealed class Pool : Layer
{
    private readonly bool _global;
    private PoolingOptions? _resolved;
    private Tensor? _x, _y;
    private bool _ranWithRelu;                             // the last training pass was ForwardRelu's
    private PoolGeometry? _geometry;                       // for the last input shape: made once, not per call
    private readonly TensorSlot _out = new(), _dx = new();

    /// <summary>Pooling with <paramref name="options"/> (<see cref="PoolingOptions.Default"/>: max over 2 x 2, stride 2).</summary>
    public Pool(PoolingOptions? options = null) => Options = options ?? PoolingOptions.Default;

    private Pool(PoolingMode mode)
    {
        _global = true;
        Options = new PoolingOptions { Mode = mode };
    }

    /// <summary>Global pooling: one window covering the whole spatial extent, whatever the input size (average by default, as ResNet's head).</summary>
    public static Pool Global(PoolingMode mode = PoolingMode.AverageIncludingPadding) => new(mode);

    /// <summary>The options; for a global pool the window is set from the input at build time.</summary>
    public PoolingOptions Options { get; }

    /// <summary>True for <see cref="Global"/>.</summary>
    public bool IsGlobal => _global;

    /// <summary>A global pool is written as its mode alone (its window comes from the input).</summary>
    public override LayerSpec Spec => _global
        ? LayerSpec.Of("Pool", ("global", true), ("mode", Options.Mode))
        : LayerSpec.Of("Pool", ("global", false), ("mode", Options.Mode), ("window", Options.Window), ("padding", Options.Padding), ("stride", Options.Stride));

    internal static Pool Parse(LayerSpec s) => s.GetBool("global")
        ? Global(s.GetEnum<PoolingMode>("mode"))
        : new Pool(new PoolingOptions { Mode = s.GetEnum<PoolingMode>("mode"), Window = s.GetPerAxis("window"), Padding = s.GetPerAxis("padding"), Stride = s.GetPerAxis("stride") });

    /// <summary>MaxPool or AveragePool; a global pool's window is its built input's spatial size.</summary>
    public override string ExportOnnx(OnnxGraphBuilder builder, string x) => builder.Pooling(x, _resolved ?? throw new InvalidOperationException($"{Describe()} is not built."));

    public override Shape OutputShape(Shape input) => PoolGeometry.Create(input, Resolve(input), "Pool").Output;

    private PoolingOptions Resolve(Shape input)
    {
        if (!_global) return Options;
        ConvGeometry.CheckRank(input, "x", "Pool");
        return Options with { Window = input.Spatial, Stride = input.Spatial, Padding = 0 };
    }

    protected override void OnBuild(Shape input, Backends.IBackend backend) => _resolved = Resolve(input);

    public override Tensor Forward(Tensor x, bool training)
    {
        CheckInput(x);
        var g = Geometry(x.Shape);
        var y = ForwardOutput(_out, g.Output, x);
        Pooling.Forward(g, x, y);
        (_x, _y, _ranWithRelu) = training ? (x, y, false) : (null, null, false);
        return y;
    }

    /// <summary>
    /// A pass of the ReLU <paramref name="relu"/> before this max pool and of this layer in one backend call
    /// (<see cref="Pooling.ForwardRelu"/>): what <see cref="Network"/> runs for the pair, saving the ReLU's pass and its
    /// output. <paramref name="x"/> is the ReLU's input; returns this layer's output, the same values as the two layers
    /// give. After a training pass, <see cref="BackwardRelu"/> is the pair's backward.
    /// </summary>
    internal Tensor ForwardRelu(Tensor x, Activation relu, bool training)
    {
        CheckInput(x);
        var g = Geometry(x.Shape);
        var y = ForwardOutput(_out, g.Output, x);
        Pooling.ForwardRelu(g, x, y);
        (_x, _y, _ranWithRelu) = training ? (x, y, true) : (null, null, false);
        relu.SkippedByFusion();
        return y;
    }

    /// <summary>Whether the last training pass was <see cref="ForwardRelu"/> (its backward is then <see cref="BackwardRelu"/>).</summary>
    internal bool RanWithRelu => _ranWithRelu;

    /// <summary>The backward of <see cref="ForwardRelu"/>: dy is the gradient of this layer's output; returns dx of the ReLU's input.</summary>
    internal Tensor BackwardRelu(Tensor dy)
    {
        var x = Cached(_x);
        var g = Geometry(x.Shape);
        var dx = Output(_dx, g.Input);
        Pooling.BackwardRelu(g, x, Cached(_y), dy, dx);
        return dx;
    }

    public override Tensor Backward(Tensor dy)
    {
        if (_ranWithRelu)
            throw new InvalidOperationException($"{Describe()}: the last forward pass ran with the ReLU before it fused in; call BackwardRelu (Network does).");
        var x = Cached(_x);
        var g = Geometry(x.Shape);
        var dx = Output(_dx, g.Input);
        Pooling.Backward(g, x, Cached(_y), dy, dx);
        return dx;
    }

    private PoolGeometry Geometry(Shape input)
    {
        if (_geometry is null || _geometry.Input != input) _geometry = PoolGeometry.Create(input, _resolved, "Pool");
        return _geometry;
    }
}
