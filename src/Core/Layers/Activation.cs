using MLNet.ConvNet.Onnx;
using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Layers;

/// <summary>An element-wise non-linearity (ReLU, leaky ReLU, ELU, sigmoid, tanh); calls <see cref="Ops.Activation"/>.</summary>
public sealed class Activation : Layer
{
    private Tensor? _x, _y;
    private readonly TensorSlot _out = new(), _dx = new();

    /// <summary>The activation <paramref name="kind"/>; <paramref name="alpha"/> defaults to <see cref="Ops.Activation.DefaultAlpha"/>.</summary>
    public Activation(ActivationKind kind, float? alpha = null)
    {
        if (!Enum.IsDefined(kind)) throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown activation.");
        Kind = kind;
        Alpha = alpha ?? Ops.Activation.DefaultAlpha(kind);
    }

    /// <summary>A ReLU layer.</summary>
    public static Activation Relu() => new(ActivationKind.ReLU);

    public ActivationKind Kind { get; }
    public float Alpha { get; }

    internal override bool UsesRelu => Kind is ActivationKind.ReLU or ActivationKind.LeakyReLU or ActivationKind.ELU;

    public override LayerSpec Spec => LayerSpec.Of("Activation", ("kind", Kind), ("alpha", Alpha));

    internal static Activation Parse(LayerSpec s) => new(s.GetEnum<ActivationKind>("kind"), s.GetFloat("alpha"));

    public override string ExportOnnx(OnnxGraphBuilder builder, string x) => builder.Activation(x, Kind, Alpha);

    /// <summary>"relu", "sigmoid": the activation's name.</summary>
    protected internal override string NameStem => Kind.ToString().ToLowerInvariant();

    public override Shape OutputShape(Shape input) => input;

    public override Tensor Forward(Tensor x, bool training)
    {
        CheckInput(x);
        var y = ForwardOutput(_out, x.Shape, x);
        Ops.Activation.Forward(Kind, x, y, Alpha);
        (_x, _y) = training ? (x, y) : (null, null);
        return y;
    }

    /// <summary>
    /// A neighbour ran this ReLU inside its own pass (the batch norm before it, <see cref="BatchNorm.ForwardTrainingRelu"/>,
    /// or the max pool after it, <see cref="Pool.ForwardRelu"/>): nothing is cached here, so a direct
    /// <see cref="Backward(Tensor)"/> fails loudly instead of using an older pass.
    /// </summary>
    internal void SkippedByFusion() => (_x, _y) = (null, null);

    public override Tensor Backward(Tensor dy)
    {
        var x = Cached(_x);
        var dx = Output(_dx, x.Shape);
        Ops.Activation.Backward(Kind, x, Cached(_y), dy, dx, Alpha);
        return dx;
    }
}
