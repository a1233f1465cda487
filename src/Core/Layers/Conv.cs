using MLNet.ConvNet.Backends;
using MLNet.ConvNet.Onnx;
using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Layers;

/// <summary>
/// A 1-D, 2-D or 3-D convolution layer (the rank follows the input): weight <c>[O, C/groups, K...]</c> and an
/// optional bias <c>[O]</c>; input channels are inferred at build time. Calls <see cref="Convolution"/>.
/// </summary>
/// <remarks>
/// Options default to <see cref="ConvolutionOptions.Default"/> except <see cref="ConvolutionOptions.Mode"/>, which
/// defaults to <see cref="ConvolutionMode.CrossCorrelation"/>: a learned filter does not care about the flip, and
/// cross-correlation is what ONNX's Conv and PyTorch compute, so weights export and import without flipping.
/// </remarks>
public sealed class Conv : Layer
{
    /// <summary>The layer's default options: no padding, stride 1, dilation 1, one group, cross-correlation.</summary>
    public static ConvolutionOptions DefaultOptions { get; } = new() { Mode = ConvolutionMode.CrossCorrelation };

    private Parameter? _weight, _bias;
    private Tensor? _x;
    private ConvGeometry? _geometry;                       // for the last input shape: made once, not per call
    private readonly TensorSlot _y = new(), _dx = new(), _dw = new(), _db = new();
    private readonly FilterCache _filterCache = new();     // inference: the backend's packed / transformed filter

    /// <summary>A convolution with <paramref name="outChannels"/> filters of spatial size <paramref name="kernel"/> (one value for every dimension or one per dimension).</summary>
    public Conv(int outChannels, PerAxis kernel, ConvolutionOptions? options = null, bool bias = true)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(outChannels, 1);
        if (kernel.IsDefault) throw new ArgumentException("Conv: give the kernel size.", nameof(kernel));
        OutChannels = outChannels; Kernel = kernel; Options = options ?? DefaultOptions; HasBias = bias;
    }

    public int OutChannels { get; }
    public PerAxis Kernel { get; }
    public ConvolutionOptions Options { get; }
    public bool HasBias { get; }

    /// <summary>The filter bank <c>[O, C/groups, K...]</c>; null before build.</summary>
    public Parameter? Weight => _weight;
    /// <summary>The bias <c>[O]</c>; null before build or without bias.</summary>
    public Parameter? Bias => _bias;

    public override IReadOnlyList<Parameter> Parameters =>
        _weight is null ? [] : _bias is null ? [_weight] : [_weight, _bias];

    public override LayerSpec Spec => LayerSpec.Of("Conv", ("out_channels", OutChannels), ("kernel", Kernel), ("padding", Options.Padding),
        ("stride", Options.Stride), ("dilation", Options.Dilation), ("groups", Options.Groups), ("mode", Options.Mode), ("bias", HasBias));

    internal static Conv Parse(LayerSpec s) => new(s.GetInt("out_channels"), s.GetPerAxis("kernel"), new ConvolutionOptions
    {
        Padding = s.GetPerAxis("padding"), Stride = s.GetPerAxis("stride"), Dilation = s.GetPerAxis("dilation"),
        Groups = s.GetInt("groups"), Mode = s.GetEnum<ConvolutionMode>("mode"),
    }, s.GetBool("bias"));

    public override string ExportOnnx(OnnxGraphBuilder builder, string x) => builder.Convolution(x, _weight!.Value, _bias?.Value, Options);

    public override Layer CloneWithBias() => new Conv(OutChannels, Kernel, Options, bias: true) { Name = Name };

    /// <summary>Every weight once per output position.</summary>
    public override long MultiplyAddsPerSample => _weight is null ? 0 : (long)_weight.Value.Length * OutputShape(BuiltInput!.Value).SizeFrom(2);

    protected internal override string NameStem => "conv";

    public override Shape OutputShape(Shape input) => ConvGeometry.Create(input, FilterShape(input), Options, "Conv").Output;

    private Shape FilterShape(Shape input)
    {
        ConvGeometry.CheckRank(input, "x", "Conv");
        int groups = Options.Groups;
        if (groups < 1 || input[1] % groups != 0)
            throw new ArgumentException($"Conv: groups = {groups} does not divide the input's {input[1]} channels (input {input}).", "groups");
        return new Shape([OutChannels, input[1] / groups, .. Kernel.Expand(input.Rank - 2, "kernel")]);
    }

    protected override void OnBuild(Shape input, IBackend backend)
    {
        var filter = FilterShape(input);
        int taps = filter.SizeFrom(2), groups = Options.Groups;
        _weight = NewParameter(backend, "weight", filter, ParameterRole.Weight, fanIn: filter[1] * taps, fanOut: OutChannels / groups * taps);
        if (HasBias) _bias = NewParameter(backend, "bias", new Shape(OutChannels), ParameterRole.Bias);
    }

    public override Tensor Forward(Tensor x, bool training)
    {
        CheckInput(x);
        _x = training ? x : null; // only a training pass is differentiated; inference keeps nothing alive
        var g = Geometry(x.Shape);
        var y = ForwardOutput(_y, g.Output, x);
        // Training changes the filter every step: only inference keeps the backend's prepared filter.
        Convolution.Forward(g, x, _weight!.Value, _bias?.Value, y, training ? null : _filterCache);
        return y;
    }

    public override Tensor Backward(Tensor dy) => Backward(dy, inputGradient: true)!;

    public override Tensor? Backward(Tensor dy, bool inputGradient)
    {
        var x = Cached(_x);
        var g = Geometry(x.Shape);
        var w = _weight!;
        var dw = GradientTarget(w, _dw);
        Convolution.BackwardFilter(g, x, dy, dw);
        CommitGradient(w, dw);
        if (_bias is not null)
        {
            var db = GradientTarget(_bias, _db);
            Convolution.BackwardBias(dy, db);
            CommitGradient(_bias, db);
        }
        if (!inputGradient) return null;
        var dx = Output(_dx, g.Input);
        Convolution.BackwardData(g, w.Value, dy, dx);
        return dx;
    }

    private ConvGeometry Geometry(Shape input)
    {
        if (_geometry is null || _geometry.Input != input)
            _geometry = ConvGeometry.Create(input, _weight!.Value.Shape, Options, "Conv");
        return _geometry;
    }
}
