using MLNet.ConvNet.Backends;
using MLNet.ConvNet.Onnx;
using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Layers;

/// <summary>
/// A basic residual block (He et al. 2016): two 3x3 convolutions with batch norm, added to a shortcut, then ReLU.
/// <code>
/// y = relu( bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x) )
/// conv1: 3x3, stride S, padding 1, no bias      conv2: 3x3, stride 1, padding 1, no bias
/// shortcut(x) = x                      when the input has OutChannels channels and S = 1
///             = bn_proj(conv_proj(x))  otherwise (1x1 convolution, stride S, no bias)
/// </code>
/// The kernel is 3 in every spatial dimension, so the block works on 1-D, 2-D and 3-D inputs.
/// </summary>
public sealed class Residual : Layer
{
    private readonly Layer[] _main;
    private Layer[] _shortcut = [];
    private readonly Activation _relu = new(ActivationKind.ReLU) { Name = "relu_out" };
    private readonly TensorSlot _sum = new(), _dx = new();

    /// <summary>A block with <paramref name="outChannels"/> output channels and stride <paramref name="stride"/> in the first convolution.</summary>
    public Residual(int outChannels, int stride = 1)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(outChannels, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(stride, 1);
        OutChannels = outChannels; Stride = stride;
        _main =
        [
            new Conv(outChannels, 3, Conv.DefaultOptions with { Padding = 1, Stride = stride }, bias: false) { Name = "conv1" },
            new BatchNorm() { Name = "bn1" },
            new Activation(ActivationKind.ReLU) { Name = "relu1" },
            new Conv(outChannels, 3, Conv.DefaultOptions with { Padding = 1 }, bias: false) { Name = "conv2" },
            new BatchNorm() { Name = "bn2" },
        ];
    }

    public int OutChannels { get; }
    public int Stride { get; }

    /// <summary>True when the shortcut is a 1x1 convolution with batch norm (decided at build time); false for identity.</summary>
    public bool HasProjection => _shortcut.Length > 0;

    public override IReadOnlyList<Layer> Children => [.. _main, .. _shortcut, _relu];
    public override IReadOnlyList<Parameter> Parameters => Children.SelectMany(c => c.Parameters).ToArray();
    public override IReadOnlyList<Buffer> Buffers => Children.SelectMany(c => c.Buffers).ToArray();
    internal override bool UsesRelu => true;

    public override LayerSpec Spec => LayerSpec.Of("Residual", ("out_channels", OutChannels), ("stride", Stride));

    internal static Residual Parse(LayerSpec s) => new(s.GetInt("out_channels"), s.GetInt("stride"));

    /// <summary>The inner layers' own exports: main branch and shortcut from the same input, an Add, then the ReLU.</summary>
    public override string ExportOnnx(OnnxGraphBuilder builder, string x)
    {
        string main = x, shortcut = x;
        foreach (var l in _main) main = l.ExportOnnx(builder, main);
        foreach (var l in _shortcut) shortcut = l.ExportOnnx(builder, shortcut);
        return _relu.ExportOnnx(builder, builder.Add(main, shortcut));
    }

    protected internal override string NameStem => "res";

    private bool NeedsProjection(Shape input) => input[1] != OutChannels || Stride != 1;

    private Layer[] MakeShortcut() =>
    [
        new Conv(OutChannels, 1, Conv.DefaultOptions with { Stride = Stride }, bias: false) { Name = "proj" },
        new BatchNorm() { Name = "proj_bn" },
    ];

    public override Shape OutputShape(Shape input)
    {
        var main = input;
        foreach (var l in _main) main = l.OutputShape(main);
        if (NeedsProjection(input))
        {
            var s = input;
            foreach (var l in MakeShortcut()) s = l.OutputShape(s);
            if (s != main) throw new InvalidOperationException($"Residual: branch shapes differ ({main} vs {s}).");
        }
        return main;
    }

    protected override void OnBuild(Shape input, IBackend backend)
    {
        if (NeedsProjection(input)) _shortcut = MakeShortcut();
        var main = input;
        foreach (var l in _main) main = l.Build(main, backend);
        var s = input;
        foreach (var l in _shortcut) s = l.Build(s, backend);
        _relu.Build(main, backend);
    }

    public override Tensor Forward(Tensor x, bool training)
    {
        CheckInput(x);
        var h = x;
        foreach (var l in _main) h = l.Forward(h, training);
        var s = x;
        foreach (var l in _shortcut) s = l.Forward(s, training);
        var sum = Output(_sum, h.Shape);
        x.Backend.Add(h, s, sum);
        return _relu.Forward(sum, training);
    }

    public override Tensor Backward(Tensor dy)
    {
        var dsum = _relu.Backward(dy);
        var dmain = dsum;
        for (int i = _main.Length - 1; i >= 0; i--) dmain = _main[i].Backward(dmain);
        var dshort = dsum;
        for (int i = _shortcut.Length - 1; i >= 0; i--) dshort = _shortcut[i].Backward(dshort);
        var dx = Output(_dx, dmain.Shape);
        dy.Backend.Add(dmain, dshort, dx);
        return dx;
    }
}
