namespace MLNet.ConvNet.Layers;

/// <summary>Reshapes <c>[N, C, X...]</c> to <c>[N, C * prod(X)]</c> (a view: no copy).</summary>
public sealed class Flatten : Layer
{
    private Shape? _input;

    public override Shape OutputShape(Shape input)
    {
        if (input.Rank < 2) throw new ArgumentException($"Flatten: input {input} must be [N, ...].", "x");
        return new Shape(input[0], input.SizeFrom(1));
    }

    public override Tensor Forward(Tensor x, bool training)
    {
        CheckInput(x);
        _input = x.Shape;
        return x.Reshape(x.Shape[0], x.Shape.SizeFrom(1));
    }

    public override Tensor Backward(Tensor dy) =>
        dy.Reshape(_input ?? throw new InvalidOperationException($"{Describe()}: Backward needs a Forward first."));
}
