using MLNet.ConvNet.Backends;
using MLNet.ConvNet.Onnx;

namespace MLNet.ConvNet.Layers;

/// <summary>
/// A fully connected layer: <c>y = x Wᵀ + b</c> with W <c>[Out, In]</c>; trailing input dimensions are flattened,
/// so it can follow a convolution directly. Calls <see cref="Ops.Dense"/>.
/// </summary>
public sealed class Dense : Layer
{
    private Parameter? _weight, _bias;
    private Tensor? _x;
    private Shape? _y0;                                    // the last output shape, so a steady batch size makes no new Shape
    private readonly TensorSlot _y = new(), _dx = new(), _dw = new(), _db = new();

    /// <summary>A dense layer with <paramref name="outFeatures"/> outputs; In is inferred at build time.</summary>
    public Dense(int outFeatures, bool bias = true)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(outFeatures, 1);
        OutFeatures = outFeatures; HasBias = bias;
    }

    public int OutFeatures { get; }
    public bool HasBias { get; }

    /// <summary>W <c>[Out, In]</c>; null before build.</summary>
    public Parameter? Weight => _weight;
    /// <summary>b <c>[Out]</c>; null before build or without bias.</summary>
    public Parameter? Bias => _bias;

    public override IReadOnlyList<Parameter> Parameters =>
        _weight is null ? [] : _bias is null ? [_weight] : [_weight, _bias];

    public override LayerSpec Spec => LayerSpec.Of("Dense", ("out_features", OutFeatures), ("bias", HasBias));

    internal static Dense Parse(LayerSpec s) => new(s.GetInt("out_features"), s.GetBool("bias"));

    public override string ExportOnnx(OnnxGraphBuilder builder, string x) => builder.Dense(x, _weight!.Value, _bias?.Value);

    public override Layer CloneWithBias() => new Dense(OutFeatures, bias: true) { Name = Name };

    public override long MultiplyAddsPerSample => _weight?.Value.Length ?? 0;

    protected internal override string NameStem => "dense";

    public override Shape OutputShape(Shape input)
    {
        if (input.Rank < 2) throw new ArgumentException($"Dense: input {input} must be [N, In, ...].", "x");
        return new Shape(input[0], OutFeatures);
    }

    protected override void OnBuild(Shape input, IBackend backend)
    {
        int inFeatures = input.SizeFrom(1);
        _weight = NewParameter(backend, "weight", new Shape(OutFeatures, inFeatures), ParameterRole.Weight, fanIn: inFeatures, fanOut: OutFeatures);
        if (HasBias) _bias = NewParameter(backend, "bias", new Shape(OutFeatures), ParameterRole.Bias);
    }

    public override Tensor Forward(Tensor x, bool training)
    {
        CheckInput(x);
        _x = training ? x : null;
        if (_y0 is not { } shape || shape[0] != x.Shape[0]) _y0 = shape = new Shape(x.Shape[0], OutFeatures);
        var y = ForwardOutput(_y, shape, x);
        Ops.Dense.Forward(x, _weight!.Value, _bias?.Value, y);
        return y;
    }

    public override Tensor Backward(Tensor dy) => Backward(dy, inputGradient: true)!;

    public override Tensor? Backward(Tensor dy, bool inputGradient)
    {
        var x = Cached(_x);
        var w = _weight!;
        var dw = GradientTarget(w, _dw);
        Ops.Dense.BackwardWeight(x, dy, dw);
        CommitGradient(w, dw);
        if (_bias is not null)
        {
            var db = GradientTarget(_bias, _db);
            Ops.Convolution.BackwardBias(dy, db);
            CommitGradient(_bias, db);
        }
        if (!inputGradient) return null;
        var dx = Output(_dx, x.Shape);
        Ops.Dense.BackwardData(w.Value, dy, dx);
        return dx;
    }
}
