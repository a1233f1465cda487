namespace MLNet.ConvNet.Ops;

/// <summary>Fully connected layer: <c>y = x Wᵀ + b</c> (the seed's "matrix multiplication" layer).</summary>
public static class Dense
{
    /// <summary>
    /// <paramref name="x"/> <c>[N, In...]</c> (trailing dimensions flattened to In), <paramref name="w"/> <c>[Out, In]</c>,
    /// <paramref name="bias"/> <c>[Out]</c> or null; output <c>[N, Out]</c>:
    /// <code>y[n, o] = b[o] + sum_i w[o, i] x[n, i]</code>
    /// </summary>
    /// <example>The seed's w = [1 3 5; 2 4 6], x = [1, 2, 3]: y = [22, 28].</example>
    public static Tensor Forward(Tensor x, Tensor w, Tensor? bias = null)
    {
        var (n, o) = CheckShapes(x.Shape, w.Shape, "Dense");
        Convolution.CheckBias(bias, o, "Dense");
        var y = x.Backend.Allocate(new Shape(n, o));
        x.Backend.MatMul(x, false, w, true, y);
        if (bias is not null) x.Backend.AddChannelBias(y, bias);
        return y;
    }

    /// <summary>Gradient with respect to x: <c>dx = dy W</c>, shaped like x.</summary>
    public static Tensor BackwardData(Shape xShape, Tensor w, Tensor dy)
    {
        var (n, o) = CheckShapes(xShape, w.Shape, "Dense.BackwardData");
        Convolution.CheckGradient(dy, new Shape(n, o), "Dense.BackwardData");
        var dx = w.Backend.Allocate(xShape);
        w.Backend.MatMul(dy, false, w, false, dx);
        return dx;
    }

    /// <summary>Gradient with respect to W: <c>dW = dyᵀ x</c>, shape <c>[Out, In]</c>.</summary>
    public static Tensor BackwardWeight(Tensor x, Tensor dy)
    {
        if (x.Rank < 2 || dy.Rank != 2 || dy.Shape[0] != x.Shape[0])
            throw new ArgumentException($"Dense.BackwardWeight: dy {dy.Shape} must be [N, Out] with the N of x {x.Shape}.", nameof(dy));
        var dw = x.Backend.Allocate(new Shape(dy.Shape[1], x.Shape.SizeFrom(1)));
        x.Backend.MatMul(dy, true, x, false, dw);
        return dw;
    }

    /// <summary>Gradient with respect to the bias: <c>db = sum over n of dy[n, :]</c>.</summary>
    public static Tensor BackwardBias(Tensor dy) => Convolution.BackwardBias(dy);

    private static (int n, int o) CheckShapes(Shape x, Shape w, string op)
    {
        if (x.Rank < 2) throw new ArgumentException($"{op}: x has shape {x}; expected [N, In, ...].", "x");
        if (w.Rank != 2) throw new ArgumentException($"{op}: w has shape {w}; expected [Out, In].", "w");
        int inputs = x.SizeFrom(1);
        if (w[1] != inputs)
            throw new ArgumentException($"{op}: x {x} has {inputs} features per row but w {w} expects {w[1]}.", "w");
        return (x[0], w[0]);
    }
}
