using System.Runtime.CompilerServices;
using System.Numerics;

namespace MLNet.ConvNet.Backends.Cpu;

public sealed partial class CpuBackend
{
    // Element-wise updates: each element is independent, so fixed-size chunks run in parallel and the result
    // does not depend on the thread count. The arithmetic is in double (stored back as float), which keeps the update
    // equal to the float64 formula up to one rounding. Adam runs System.Numerics.Vector<double> lanes with the scalar
    // loop's operations in the same order (separate multiply and add, no fused multiply-add; division and square root
    // are correctly rounded in both), so vector and scalar elements give the same bits.
    private const int OptimizerChunk = 1 << 12;

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
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int chunk)
        {
            int i = chunk * OptimizerChunk, end = Math.Min(n, (chunk + 1) * OptimizerChunk);
            if (Vector.IsHardwareAccelerated) i = RunVector(i, end);
            for (; i < end; i++)
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

        /// <summary>The loop above on whole vectors of floats from <paramref name="start"/>; returns where the scalar tail begins.</summary>
        private int RunVector(int start, int end)
        {
            int width = Vector<float>.Count, i = start;
            var b1v = new Vector<double>(b1); var b2v = new Vector<double>(b2);
            var a1 = new Vector<double>(1 - b1); var a2 = new Vector<double>(1 - b2);
            var lrv = new Vector<double>(lr); var wdv = new Vector<double>(wd); var lrwd = new Vector<double>(lr * wd);
            var c1v = new Vector<double>(c1); var c2v = new Vector<double>(c2); var epsv = new Vector<double>(eps);
            bool isDecoupled = decoupled; // a local: local functions in a struct cannot read primary-constructor parameters
            for (; i <= end - width; i += width)
            {
                Vector.Widen(new Vector<float>(p, i), out var p0, out var p1);
                Vector.Widen(new Vector<float>(g, i), out var g0, out var g1);
                Vector.Widen(new Vector<float>(ma, i), out var m0, out var m1);
                Vector.Widen(new Vector<float>(va, i), out var v0, out var v1);
                Update(ref p0, ref g0, ref m0, ref v0);
                Update(ref p1, ref g1, ref m1, ref v1);
                Vector.Narrow(m0, m1).CopyTo(ma, i);
                Vector.Narrow(v0, v1).CopyTo(va, i);
                Vector.Narrow(p0, p1).CopyTo(p, i);
            }
            return i;

            void Update(ref Vector<double> pi, ref Vector<double> gi, ref Vector<double> mi, ref Vector<double> vi)
            {
                if (isDecoupled) pi -= lrwd * pi;
                else gi += wdv * pi;
                mi = b1v * mi + a1 * gi;
                vi = b2v * vi + a2 * gi * gi;
                pi -= lrv * (mi / c1v) / (Vector.SquareRoot(vi / c2v) + epsv);
            }
        }
    }
}
