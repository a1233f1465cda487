using MLNet.ConvNet.Onnx;

namespace MLNet.ConvNet.Layers;

/// <summary>Reshapes <c>[N, C, X...]</c> to <c>[N, C * prod(X)]</c> (a view: no copy).</summary>
public sealed class Flatten : Layer
{
    private Shape? _input;
    // The last input and output gradient with their reshaped views: the same tensor (a reused buffer) gets the same
    // view back, so a warm training step makes no new Tensor here.
    private Tensor? _x, _xView, _dy, _dyView;

    public override LayerSpec Spec => LayerSpec.Of("Flatten");

    internal static Flatten Parse(LayerSpec s) => new();

    public override string ExportOnnx(OnnxGraphBuilder builder, string x) => builder.Flatten(x);

    public override Shape OutputShape(Shape input)
    {
        if (input.Rank < 2) throw new ArgumentException($"Flatten: input {input} must be [N, ...].", "x");
        return new Shape(input[0], input.SizeFrom(1));
    }

    public override Tensor Forward(Tensor x, bool training)
    {
        CheckInput(x);
        _input = x.Shape;
        if (!ReferenceEquals(x, _x) || _xView is null) (_x, _xView) = (x, x.Reshape(x.Shape[0], x.Shape.SizeFrom(1)));
        return _xView;
    }

    public override Tensor Backward(Tensor dy)
    {
        var shape = _input ?? throw new InvalidOperationException($"{Describe()}: Backward needs a Forward first.");
        ArgumentNullException.ThrowIfNull(dy);
        if (!ReferenceEquals(dy, _dy) || _dyView is null || _dyView.Shape != shape) (_dy, _dyView) = (dy, dy.Reshape(shape));
        return _dyView;
    }
}
