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
        var y = x.Backend.Allocate(new Shape(n, o));
        Forward(x, w, bias, y);
        return y;
    }

    /// <summary><see cref="Forward(Tensor, Tensor, Tensor?)"/> into <paramref name="y"/> <c>[N, Out]</c>: what a training loop calls to allocate nothing.</summary>
    public static void Forward(Tensor x, Tensor w, Tensor? bias, Tensor y)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(w);
        ArgumentNullException.ThrowIfNull(y);
        var (n, o) = CheckShapes(x.Shape, w.Shape, "Dense");
        Convolution.CheckBias(bias, o, "Dense");
        if (y.Rank != 2 || y.Shape[0] != n || y.Shape[1] != o)
            throw new ArgumentException($"Dense: y has shape {y.Shape} but the result is [{n}, {o}].", nameof(y));
        Outputs.Check(y, y.Shape, x.Backend, "Dense", nameof(y), x, w, bias);
        x.Backend.MatMul(x, false, w, true, y);
        if (bias is not null) x.Backend.AddChannelBias(y, bias);
    }

    /// <summary>Gradient with respect to x: <c>dx = dy W</c>, shaped like x.</summary>
    public static Tensor BackwardData(Shape xShape, Tensor w, Tensor dy)
    {
        var dx = w.Backend.Allocate(xShape);
        BackwardData(w, dy, dx);
        return dx;
    }

    /// <summary>Gradient with respect to the input into <paramref name="dx"/> (x's shape): <c>dx = dy w</c>.</summary>
    public static void BackwardData(Tensor w, Tensor dy, Tensor dx)
    {
        ArgumentNullException.ThrowIfNull(w);
        ArgumentNullException.ThrowIfNull(dy);
        ArgumentNullException.ThrowIfNull(dx);
        var (n, o) = CheckShapes(dx.Shape, w.Shape, "Dense.BackwardData");
        if (dy.Rank != 2 || dy.Shape[0] != n || dy.Shape[1] != o) Convolution.CheckGradient(dy, new Shape(n, o), "Dense.BackwardData");
        Outputs.Check(dx, dx.Shape, w.Backend, "Dense.BackwardData", nameof(dx), w, dy);
        w.Backend.MatMul(dy, false, w, false, dx);
    }

    /// <summary>Gradient with respect to W: <c>dW = dyᵀ x</c>, shape <c>[Out, In]</c>.</summary>
    public static Tensor BackwardWeight(Tensor x, Tensor dy)
    {
        if (x.Rank < 2 || dy.Rank != 2 || dy.Shape[0] != x.Shape[0])
            throw new ArgumentException($"Dense.BackwardWeight: dy {dy.Shape} must be [N, Out] with the N of x {x.Shape}.", nameof(dy));
        var dw = x.Backend.Allocate(new Shape(dy.Shape[1], x.Shape.SizeFrom(1)));
        BackwardWeight(x, dy, dw);
        return dw;
    }

    /// <summary>Gradient with respect to the weight into <paramref name="dw"/> <c>[Out, In]</c> (overwritten, not accumulated): <c>dw = dyᵀ x</c>.</summary>
    public static void BackwardWeight(Tensor x, Tensor dy, Tensor dw)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(dy);
        ArgumentNullException.ThrowIfNull(dw);
        if (x.Rank < 2 || dy.Rank != 2 || dy.Shape[0] != x.Shape[0])
            throw new ArgumentException($"Dense.BackwardWeight: dy {dy.Shape} must be [N, Out] with the N of x {x.Shape}.", nameof(dy));
        if (dw.Rank != 2 || dw.Shape[0] != dy.Shape[1] || dw.Shape[1] != x.Shape.SizeFrom(1))
            throw new ArgumentException($"Dense.BackwardWeight: dw has shape {dw.Shape} but the result is [{dy.Shape[1]}, {x.Shape.SizeFrom(1)}].", nameof(dw));
        Outputs.Check(dw, dw.Shape, x.Backend, "Dense.BackwardWeight", nameof(dw), x, dy);
        x.Backend.MatMul(dy, true, x, false, dw);
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
