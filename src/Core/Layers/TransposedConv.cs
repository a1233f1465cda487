using MLNet.ConvNet.Backends;
using MLNet.ConvNet.Onnx;
using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Layers;

/// <summary>
/// A transposed convolution layer (1-D, 2-D, 3-D; "deconvolution", ONNX's ConvTranspose): weight <c>[Cx, Cy/groups, K...]</c>
/// and an optional bias <c>[Cy]</c>, output size <c>Y = (X - 1)S + (K - 1)D + 1 - 2P</c>. Calls the convolution kernels
/// with the roles of input and output swapped (<see cref="ConvGeometry.ForTransposed"/>).
/// </summary>
/// <remarks>Options default to <see cref="Conv.DefaultOptions"/> (cross-correlation, as ONNX and PyTorch), so weights import without flipping.</remarks>
public sealed class TransposedConv : Layer
{
    private Parameter? _weight, _bias;
    private Tensor? _x;
    private ConvGeometry? _geometry;
    private readonly TensorSlot _y = new(), _dx = new(), _dw = new(), _db = new();

    /// <summary>A transposed convolution to <paramref name="outChannels"/> channels with kernel <paramref name="kernel"/>.</summary>
    public TransposedConv(int outChannels, PerAxis kernel, ConvolutionOptions? options = null, bool bias = true)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(outChannels, 1);
        if (kernel.IsDefault) throw new ArgumentException("TransposedConv: give the kernel size.", nameof(kernel));
        OutChannels = outChannels; Kernel = kernel; Options = options ?? Conv.DefaultOptions; HasBias = bias;
    }

    public int OutChannels { get; }
    public PerAxis Kernel { get; }
    public ConvolutionOptions Options { get; }
    public bool HasBias { get; }

    /// <summary>The filter bank <c>[Cx, Cy/groups, K...]</c>; null before build.</summary>
    public Parameter? Weight => _weight;
    /// <summary>The bias <c>[Cy]</c>; null before build or without bias.</summary>
    public Parameter? Bias => _bias;

    public override IReadOnlyList<Parameter> Parameters =>
        _weight is null ? [] : _bias is null ? [_weight] : [_weight, _bias];

    public override LayerSpec Spec => LayerSpec.Of("TransposedConv", ("out_channels", OutChannels), ("kernel", Kernel), ("padding", Options.Padding),
        ("stride", Options.Stride), ("dilation", Options.Dilation), ("groups", Options.Groups), ("mode", Options.Mode), ("bias", HasBias));

    internal static TransposedConv Parse(LayerSpec s) => new(s.GetInt("out_channels"), s.GetPerAxis("kernel"), new ConvolutionOptions
    {
        Padding = s.GetPerAxis("padding"), Stride = s.GetPerAxis("stride"), Dilation = s.GetPerAxis("dilation"),
        Groups = s.GetInt("groups"), Mode = s.GetEnum<ConvolutionMode>("mode"),
    }, s.GetBool("bias"));

    public override string ExportOnnx(OnnxGraphBuilder builder, string x) => builder.TransposedConvolution(x, _weight!.Value, _bias?.Value, Options);

    /// <summary>Every weight once per input position.</summary>
    public override long MultiplyAddsPerSample => _weight is null ? 0 : (long)_weight.Value.Length * BuiltInput!.Value.SizeFrom(2);

    protected internal override string NameStem => "deconv";

    public override Shape OutputShape(Shape input) => ConvGeometry.ForTransposed(input, FilterShape(input), Options).Input;

    private Shape FilterShape(Shape input)
    {
        ConvGeometry.CheckRank(input, "x", "TransposedConv");
        int groups = Options.Groups;
        if (groups < 1 || OutChannels % groups != 0)
            throw new ArgumentException($"TransposedConv: groups = {groups} does not divide the {OutChannels} output channels.", "groups");
        return new Shape([input[1], OutChannels / groups, .. Kernel.Expand(input.Rank - 2, "kernel")]);
    }

    protected override void OnBuild(Shape input, IBackend backend)
    {
        var filter = FilterShape(input);
        int taps = filter.SizeFrom(2), groups = Options.Groups;
        _weight = NewParameter(backend, "weight", filter, ParameterRole.Weight, fanIn: filter[1] * taps, fanOut: input[1] / groups * taps);
        if (HasBias) _bias = NewParameter(backend, "bias", new Shape(OutChannels), ParameterRole.Bias);
    }

    public override Tensor Forward(Tensor x, bool training)
    {
        CheckInput(x);
        _x = training ? x : null;
        var g = Geometry(x.Shape);
        // g is the convolution from y back to x: this layer's output is g.Input, computed as that convolution's input-gradient.
        var y = ForwardOutput(_y, g.Input, x);
        Convolution.BackwardData(g, _weight!.Value, x, y);
        if (_bias is not null) x.Backend.AddChannelBias(y, _bias.Value);
        return y;
    }

    public override Tensor Backward(Tensor dy) => Backward(dy, inputGradient: true)!;

    public override Tensor? Backward(Tensor dy, bool inputGradient)
    {
        var x = Cached(_x);
        var g = Geometry(x.Shape);
        var w = _weight!;
        var dw = GradientTarget(w, _dw);
        Convolution.BackwardFilter(g, dy, x, dw);   // the underlying convolution's input is dy, its output-gradient x
        CommitGradient(w, dw);
        if (_bias is not null)
        {
            var db = GradientTarget(_bias, _db);
            Convolution.BackwardBias(dy, db);
            CommitGradient(_bias, db);
        }
        if (!inputGradient) return null;
        var dx = Output(_dx, g.Output);
        Convolution.Forward(g, dy, w.Value, null, dx);
        return dx;
    }

    private ConvGeometry Geometry(Shape input)
    {
        if (_geometry is null || _geometry.Output != input)
            _geometry = ConvGeometry.ForTransposed(input, _weight!.Value.Shape, Options);
        return _geometry;
    }
}
