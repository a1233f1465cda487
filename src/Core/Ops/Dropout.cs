namespace MLNet.ConvNet.Ops;

/// <summary>Inverted dropout (Srivastava et al. 2014; Knet's dropout): zero each value with probability p, scale the rest by 1/(1-p).</summary>
public static class Dropout
{
    /// <summary>
    /// Training-mode dropout: <c>y = x * mask</c>, mask[i] = 0 with probability <paramref name="p"/>, else 1/(1-p),
    /// so the expected value of y is x and inference needs no rescaling. The mask is a function of
    /// (<paramref name="seed"/>, i) only: the same seed gives the same mask on any thread count.
    /// </summary>
    public static Tensor Forward(Tensor x, float p, ulong seed, out Tensor mask)
    {
        if (!(p >= 0f && p < 1f))
            throw new ArgumentOutOfRangeException(nameof(p), p, "Dropout: p must be in [0, 1).");
        ArgumentNullException.ThrowIfNull(x);
        var b = x.Backend;
        mask = b.Allocate(x.Shape);
        var y = b.Allocate(x.Shape);
        Forward(x, p, seed, mask, y);
        return y;
    }

    /// <summary><see cref="Forward(Tensor, float, ulong, out Tensor)"/> into <paramref name="mask"/> and <paramref name="y"/> (x's shape).</summary>
    public static void Forward(Tensor x, float p, ulong seed, Tensor mask, Tensor y)
    {
        if (!(p >= 0f && p < 1f))
            throw new ArgumentOutOfRangeException(nameof(p), p, "Dropout: p must be in [0, 1).");
        ArgumentNullException.ThrowIfNull(x);
        Outputs.Check(mask, x.Shape, x.Backend, "Dropout", nameof(mask), x);
        Outputs.Check(y, x.Shape, x.Backend, "Dropout", nameof(y), x, mask);
        x.Backend.DropoutForward(x, p, seed, mask, y);
    }

    /// <summary>Gradient with respect to x: <c>dx = dy * mask</c>.</summary>
    public static Tensor Backward(Tensor dy, Tensor mask)
    {
        ArgumentNullException.ThrowIfNull(dy);
        var dx = dy.Backend.Allocate(dy.Shape);
        Backward(dy, mask, dx);
        return dx;
    }

    /// <summary><see cref="Backward(Tensor, Tensor)"/> into <paramref name="dx"/> (dy's shape).</summary>
    public static void Backward(Tensor dy, Tensor mask, Tensor dx)
    {
        ArgumentNullException.ThrowIfNull(mask);
        Convolution.CheckGradient(dy, mask.Shape, "Dropout.Backward");
        Outputs.Check(dx, dy.Shape, dy.Backend, "Dropout.Backward", nameof(dx), dy, mask);
        dy.Backend.Multiply(dy, mask, dx);
    }
}
