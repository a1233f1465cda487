using MLNet.ConvNet.Onnx;
using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Layers;

/// <summary>Cross-channel local response normalization (AlexNet); calls <see cref="Ops.Lrn"/>. No parameters.</summary>
public sealed class Lrn : Layer
{
    private Tensor? _x, _y;
    private readonly TensorSlot _out = new(), _dx = new();

    /// <summary>LRN with <paramref name="options"/> (<see cref="LrnOptions.Default"/>: size 5, alpha 1e-4, beta 0.75, k 2).</summary>
    public Lrn(LrnOptions? options = null)
    {
        Options = options ?? LrnOptions.Default;
        Options.Validate();
    }

    public LrnOptions Options { get; }

    public override LayerSpec Spec => LayerSpec.Of("Lrn", ("size", Options.Size), ("alpha", Options.Alpha), ("beta", Options.Beta), ("k", Options.K));

    internal static Lrn Parse(LayerSpec s) =>
        new(new LrnOptions { Size = s.GetInt("size"), Alpha = s.GetFloat("alpha"), Beta = s.GetFloat("beta"), K = s.GetFloat("k") });

    public override string ExportOnnx(OnnxGraphBuilder builder, string x) => builder.Lrn(x, Options);

    protected internal override string NameStem => "lrn";

    public override Shape OutputShape(Shape input)
    {
        if (input.Rank < 2) throw new ArgumentException($"Lrn: input {input} must be [N, C, ...].", "x");
        return input;
    }

    public override Tensor Forward(Tensor x, bool training)
    {
        CheckInput(x);
        var y = ForwardOutput(_out, x.Shape, x);
        Ops.Lrn.Forward(x, y, Options);
        (_x, _y) = training ? (x, y) : (null, null);
        return y;
    }

    public override Tensor Backward(Tensor dy)
    {
        var x = Cached(_x);
        var dx = Output(_dx, x.Shape);
        Ops.Lrn.Backward(x, Cached(_y), dy, dx, Options);
        return dx;
    }
}
