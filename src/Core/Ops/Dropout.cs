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
        var b = x.Backend;
        mask = b.Allocate(x.Shape);
        var y = b.Allocate(x.Shape);
        b.DropoutForward(x, p, seed, mask, y);
        return y;
    }

    /// <summary>Gradient with respect to x: <c>dx = dy * mask</c>.</summary>
    public static Tensor Backward(Tensor dy, Tensor mask)
    {
        Convolution.CheckGradient(dy, mask.Shape, "Dropout.Backward");
        var dx = dy.Backend.Allocate(dy.Shape);
        dy.Backend.Multiply(dy, mask, dx);
        return dx;
    }
}
