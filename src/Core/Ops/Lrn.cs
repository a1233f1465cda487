namespace MLNet.ConvNet.Ops;

/// <summary>Options of cross-channel local response normalization (cuDNN's parameters and defaults).</summary>
public sealed record LrnOptions
{
    /// <summary>Size = 5: channels in the window (cuDNN allows 1..16).</summary>
    public int Size { get; init; } = 5;
    /// <summary>Alpha = 1e-4.</summary>
    public float Alpha { get; init; } = 1e-4f;
    /// <summary>Beta = 0.75.</summary>
    public float Beta { get; init; } = 0.75f;
    /// <summary>K = 2 (cuDNN's and AlexNet's bias; ONNX calls it bias and defaults to 1).</summary>
    public float K { get; init; } = 2f;

    public static LrnOptions Default { get; } = new();

    /// <summary>Throws naming the option when a value is out of range.</summary>
    public void Validate()
    {
        if (Size < 1 || Size > 16) throw new ArgumentOutOfRangeException("size", Size, "LRN: size must be between 1 and 16 (cuDNN's range).");
        if (!(Alpha >= 0) || float.IsInfinity(Alpha)) throw new ArgumentOutOfRangeException("alpha", Alpha, "LRN: alpha must be finite and >= 0.");
        if (!(Beta >= 0) || float.IsInfinity(Beta)) throw new ArgumentOutOfRangeException("beta", Beta, "LRN: beta must be finite and >= 0.");
        if (!(K > 0) || float.IsInfinity(K)) throw new ArgumentOutOfRangeException("k", K, "LRN: k must be finite and > 0.");
    }
}

/// <summary>Cross-channel local response normalization (AlexNet; cuDNN's LRN_CROSS_CHANNEL_DIM1).</summary>
public static class Lrn
{
    /// <summary>
    /// Normalizes each value of <paramref name="x"/> <c>[N, C, ...]</c> by the energy of its neighbours across channels:
    /// <code>
    /// y[n,c,i] = x[n,c,i] / (K + Alpha/Size * sum_{c' = c - floor((Size-1)/2)}^{c + ceil((Size-1)/2)} x[n,c',i]^2)^Beta
    /// </code>
    /// (channels outside [0, C) are skipped), which is cuDNN's and ONNX's formula.
    /// </summary>
    public static Tensor Forward(Tensor x, LrnOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(x);
        var y = x.Backend.Allocate(x.Shape);
        Forward(x, y, options);
        return y;
    }

    /// <summary><see cref="Forward(Tensor, LrnOptions?)"/> into <paramref name="y"/> (x's shape).</summary>
    public static void Forward(Tensor x, Tensor y, LrnOptions? options = null)
    {
        options ??= LrnOptions.Default;
        options.Validate();
        ArgumentNullException.ThrowIfNull(x);
        CheckInput(x.Shape, "Lrn");
        Outputs.Check(y, x.Shape, x.Backend, "Lrn", nameof(y), x);
        x.Backend.LrnForward(options, x, y);
    }

    /// <summary>Gradient with respect to x given x, y = Forward(x) and dy.</summary>
    public static Tensor Backward(Tensor x, Tensor y, Tensor dy, LrnOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(x);
        var dx = x.Backend.Allocate(x.Shape);
        Backward(x, y, dy, dx, options);
        return dx;
    }

    /// <summary><see cref="Backward(Tensor, Tensor, Tensor, LrnOptions?)"/> into <paramref name="dx"/> (x's shape).</summary>
    public static void Backward(Tensor x, Tensor y, Tensor dy, Tensor dx, LrnOptions? options = null)
    {
        options ??= LrnOptions.Default;
        options.Validate();
        ArgumentNullException.ThrowIfNull(x);
        CheckInput(x.Shape, "Lrn.Backward");
        ArgumentNullException.ThrowIfNull(y);
        Convolution.CheckGradient(y, x.Shape, "Lrn.Backward (y)");
        Convolution.CheckGradient(dy, x.Shape, "Lrn.Backward");
        Outputs.Check(dx, x.Shape, x.Backend, "Lrn.Backward", nameof(dx), x, y, dy);
        x.Backend.LrnBackward(options, x, y, dy, dx);
    }

    private static void CheckInput(Shape x, string op)
    {
        if (x.Rank < 2) throw new ArgumentException($"{op}: x has shape {x}; expected [N, C, ...].", "x");
    }
}
