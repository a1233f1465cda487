namespace MLNet.ConvNet.Backends.Cpu;

public sealed partial class CpuBackend
{
    // Element-wise updates: each element is independent, so fixed-size chunks run in parallel and the result
    // does not depend on the thread count. The arithmetic is in double (stored back as float): it costs little
    // next to a training step and keeps the update equal to the float64 formula up to one rounding.
    private const int OptimizerChunk = 1 << 14;

    public void SgdStep(Tensor param, Tensor grad, Tensor? velocity, float learningRate, float momentum, bool nesterov, float weightDecay)
    {
        SameLength(param, grad);
        if (momentum != 0f)
        {
            if (velocity is null) throw new ArgumentNullException(nameof(velocity), "SgdStep: momentum > 0 needs a velocity tensor.");
            SameLength(param, velocity);
        }
        int n = param.Length;
        For((n + OptimizerChunk - 1) / OptimizerChunk,
            new SgdBody(Array(param), Array(grad), momentum != 0f ? Array(velocity!) : null, n, learningRate, momentum, nesterov, weightDecay));
    }

    private readonly struct SgdBody(float[] p, float[] g, float[]? vel, int n, double lr, double mu, bool nesterov, double wd) : IParallelBody
    {
        public void Run(int chunk)
        {
            int end = Math.Min(n, (chunk + 1) * OptimizerChunk);
            for (int i = chunk * OptimizerChunk; i < end; i++)
            {
                double gi = g[i] + wd * p[i];
                double d = gi;
                if (vel is not null)
                {
                    double vi = mu * vel[i] + gi;
                    vel[i] = (float)vi;
                    d = nesterov ? gi + mu * vi : vi;
                }
                p[i] = (float)(p[i] - lr * d);
            }
        }
    }

    public void AdamStep(Tensor param, Tensor grad, Tensor m, Tensor v, float learningRate, float beta1, float beta2, float epsilon,
        float weightDecay, bool decoupled, long step)
    {
        SameLength(param, grad); SameLength(param, m); SameLength(param, v);
        if (step < 1) throw new ArgumentOutOfRangeException(nameof(step), step, "AdamStep: step is 1-based.");
        int n = param.Length;
        double b1 = beta1, b2 = beta2;
        double c1 = 1 - Math.Pow(b1, step), c2 = 1 - Math.Pow(b2, step);
        For((n + OptimizerChunk - 1) / OptimizerChunk,
            new AdamBody(Array(param), Array(grad), Array(m), Array(v), n, learningRate, b1, b2, epsilon, weightDecay, decoupled, c1, c2));
    }

    /// <summary>c1 and c2 are the bias corrections 1 - beta1^step and 1 - beta2^step.</summary>
    private readonly struct AdamBody(float[] p, float[] g, float[] ma, float[] va, int n, double lr, double b1, double b2, double eps,
        double wd, bool decoupled, double c1, double c2) : IParallelBody
    {
        public void Run(int chunk)
        {
            int end = Math.Min(n, (chunk + 1) * OptimizerChunk);
            for (int i = chunk * OptimizerChunk; i < end; i++)
            {
                double pi = p[i], gi = g[i];
                if (decoupled) pi -= lr * wd * pi;
                else gi += wd * pi;
                double mi = b1 * ma[i] + (1 - b1) * gi;
                double vi = b2 * va[i] + (1 - b2) * gi * gi;
                ma[i] = (float)mi;
                va[i] = (float)vi;
                p[i] = (float)(pi - lr * (mi / c1) / (Math.Sqrt(vi / c2) + eps));
            }
        }
    }
}
