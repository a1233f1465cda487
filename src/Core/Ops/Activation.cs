namespace MLNet.ConvNet.Ops;

/// <summary>Element-wise non-linearities.</summary>
public enum ActivationKind
{
    /// <summary>max(0, x).</summary>
    ReLU,
    /// <summary>x for x &gt; 0, alpha x otherwise (alpha = 0.01 by default).</summary>
    LeakyReLU,
    /// <summary>x for x &gt; 0, alpha (exp(x) - 1) otherwise (alpha = 1 by default).</summary>
    ELU,
    /// <summary>1 / (1 + exp(-x)).</summary>
    Sigmoid,
    /// <summary>tanh(x).</summary>
    Tanh,
}

/// <summary>Element-wise activations and their gradients.</summary>
public static class Activation
{
    /// <summary>The alpha used when none is given: 0.01 for LeakyReLU, 1 for ELU, unused otherwise.</summary>
    public static float DefaultAlpha(ActivationKind kind) => kind switch
    {
        ActivationKind.LeakyReLU => 0.01f,
        ActivationKind.ELU => 1f,
        _ => 0f,
    };

    /// <summary>y = f(x) element-wise; any shape.</summary>
    public static Tensor Forward(ActivationKind kind, Tensor x, float? alpha = null)
    {
        ArgumentNullException.ThrowIfNull(x);
        var y = x.Backend.Allocate(x.Shape);
        Forward(kind, x, y, alpha);
        return y;
    }

    /// <summary><see cref="Forward(ActivationKind, Tensor, float?)"/> into <paramref name="y"/> (x's shape): what a training loop calls to allocate nothing.</summary>
    public static void Forward(ActivationKind kind, Tensor x, Tensor y, float? alpha = null)
    {
        float a = CheckAlpha(kind, alpha);
        ArgumentNullException.ThrowIfNull(x);
        Outputs.Check(y, x.Shape, x.Backend, "Activation", nameof(y), x);
        x.Backend.ActivationForward(kind, a, x, y);
    }

    /// <summary>dx = f'(x) * dy, given x, y = f(x) and dy.</summary>
    /// <remarks>
    /// At the kink x = 0 the ReLU family takes the left slope: 0 for ReLU (as cuDNN and PyTorch), alpha for
    /// LeakyReLU and ELU. Sigmoid and Tanh use y: f' = y (1 - y) and 1 - y².
    /// </remarks>
    public static Tensor Backward(ActivationKind kind, Tensor x, Tensor y, Tensor dy, float? alpha = null)
    {
        ArgumentNullException.ThrowIfNull(x);
        var dx = x.Backend.Allocate(x.Shape);
        Backward(kind, x, y, dy, dx, alpha);
        return dx;
    }

    /// <summary><see cref="Backward(ActivationKind, Tensor, Tensor, Tensor, float?)"/> into <paramref name="dx"/> (x's shape).</summary>
    public static void Backward(ActivationKind kind, Tensor x, Tensor y, Tensor dy, Tensor dx, float? alpha = null)
    {
        float a = CheckAlpha(kind, alpha);
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(y);
        ArgumentNullException.ThrowIfNull(dy);
        // The messages are built only on failure: this runs on every training step.
        if (y.Shape != x.Shape) Convolution.CheckGradient(y, x.Shape, $"Activation.Backward({kind}) (y)");
        if (dy.Shape != x.Shape) Convolution.CheckGradient(dy, x.Shape, $"Activation.Backward({kind})");
        Outputs.Check(dx, x.Shape, x.Backend, "Activation.Backward", nameof(dx), x, y, dy);
        x.Backend.ActivationBackward(kind, a, x, y, dy, dx);
    }

    private static float CheckAlpha(ActivationKind kind, float? alpha)
    {
        if (!Enum.IsDefined(kind)) throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown activation.");
        float a = alpha ?? DefaultAlpha(kind);
        if (!float.IsFinite(a)) throw new ArgumentOutOfRangeException(nameof(alpha), a, $"{kind}: alpha must be finite.");
        return a;
    }
}
