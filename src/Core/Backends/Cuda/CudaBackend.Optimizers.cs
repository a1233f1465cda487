namespace MLNet.ConvNet.Backends.Cuda;

// Optimizer updates: kernels in Kernels/Optimizers.cu, the CPU's double arithmetic operation for operation, so the
// GPU gives the CPU's bits for the same inputs. Checks and messages as CpuBackend.Optimizers.cs.
public sealed partial class CudaBackend
{
    public void SgdStep(Tensor param, Tensor grad, Tensor? velocity, float learningRate, float momentum, bool nesterov, float weightDecay)
    {
        SameLength(param, grad);
        if (momentum != 0f)
        {
            if (velocity is null) throw new ArgumentNullException(nameof(velocity), "SgdStep: momentum > 0 needs a velocity tensor.");
            SameLength(param, velocity);
        }
        if (param.Length == 0) return;
        using var _ = Enter();
        // As the CPU: the velocity is used only when momentum != 0 (a null pointer tells the kernel to skip it).
        ulong vel = momentum != 0f ? Ptr(velocity!) : 0;
        Launch("opt_sgd", Blocks(param.Length), BlockSize,
            Arg(Ptr(param)), Arg(Ptr(grad)), Arg(vel), Arg((double)learningRate), Arg((double)momentum), Arg(nesterov),
            Arg((double)weightDecay), Arg((long)param.Length));
    }

    public void AdamStep(Tensor param, Tensor grad, Tensor m, Tensor v, float learningRate, float beta1, float beta2, float epsilon,
        float weightDecay, bool decoupled, long step)
    {
        SameLength(param, grad); SameLength(param, m); SameLength(param, v);
        if (step < 1) throw new ArgumentOutOfRangeException(nameof(step), step, "AdamStep: step is 1-based.");
        if (param.Length == 0) return;
        // The bias corrections on the host in double with Math.Pow, exactly as the CPU computes them.
        double b1 = beta1, b2 = beta2;
        double c1 = 1 - Math.Pow(b1, step), c2 = 1 - Math.Pow(b2, step);
        using var _ = Enter();
        Launch("opt_adam", Blocks(param.Length), BlockSize,
            Arg(Ptr(param)), Arg(Ptr(grad)), Arg(Ptr(m)), Arg(Ptr(v)), Arg((double)learningRate), Arg(b1), Arg(b2),
            Arg((double)epsilon), Arg((double)weightDecay), Arg(decoupled), Arg(c1), Arg(c2), Arg((long)param.Length));
    }
}
