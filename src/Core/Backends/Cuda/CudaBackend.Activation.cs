using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Backends.Cuda;

// Dropout and the element-wise activations: kernels in Kernels/Activation.cu. Our own kernels rather than
// cudnnActivationForward so that every formula (stable sigmoid, ELU in double, NaN handling, derivative at the kink)
// and the dropout mask are the CPU's exactly.
public sealed partial class CudaBackend
{
    /// <summary>The CPU's counter-based mask (SplitMix64 keyed by (seed, index)), drawn on the device: the same mask bit for bit.</summary>
    public void DropoutForward(Tensor x, float p, ulong seed, Tensor mask, Tensor y)
    {
        SameLength(x, mask); SameLength(x, y);
        if (x.Length == 0) return;
        float keep = 1f / (1f - p); // in float, as the CPU
        using var _ = Enter();
        Launch("act_dropout", Blocks(x.Length), BlockSize,
            Arg(Ptr(x)), Arg(p), Arg(keep), Arg(seed), Arg(Ptr(mask)), Arg(Ptr(y)), Arg((long)x.Length));
    }

    public void ActivationForward(ActivationKind kind, float alpha, Tensor x, Tensor y)
    {
        CheckActivation(kind);
        SameLength(x, y);
        if (x.Length == 0) return;
        using var _ = Enter();
        Launch("act_forward", Blocks(x.Length), BlockSize, Arg((int)kind), Arg(alpha), Arg(Ptr(x)), Arg(Ptr(y)), Arg((long)x.Length));
    }

    /// <summary>ReLU, LeakyReLU and ELU read x; Sigmoid and Tanh read y (as the CPU).</summary>
    public void ActivationBackward(ActivationKind kind, float alpha, Tensor x, Tensor y, Tensor dy, Tensor dx)
    {
        CheckActivation(kind);
        SameLength(x, y); SameLength(x, dy); SameLength(x, dx);
        if (x.Length == 0) return;
        using var _ = Enter();
        Launch("act_backward", Blocks(x.Length), BlockSize,
            Arg((int)kind), Arg(alpha), Arg(Ptr(x)), Arg(Ptr(y)), Arg(Ptr(dy)), Arg(Ptr(dx)), Arg((long)x.Length));
    }

    /// <summary>The kernels number the kinds as the enum does (ReLU 0 ... Tanh 4); anything else is refused here.</summary>
    private static void CheckActivation(ActivationKind kind)
    {
        if (kind is not (ActivationKind.ReLU or ActivationKind.LeakyReLU or ActivationKind.ELU or ActivationKind.Sigmoid or ActivationKind.Tanh))
            throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown activation.");
    }
}
