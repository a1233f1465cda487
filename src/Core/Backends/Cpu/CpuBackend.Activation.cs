using System.Runtime.CompilerServices;
using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Backends.Cpu;

// Dropout, element-wise activations, softmax and softmax cross-entropy.
public sealed partial class CpuBackend
{
    /// <summary>Elements per parallel work item in element-wise kernels: big enough to amortize scheduling.</summary>
    private const int ElementwiseBlock = 16384;

    /// <summary>The body of <see cref="ForElementBlocks{TBody}"/>: Run(start, count) over one block of elements.</summary>
    private interface IElementBlockBody
    {
        void Run(int start, int count);
    }

    /// <summary>Runs body.Run(start, count) over consecutive blocks of [0, length); each element belongs to one block.</summary>
    private void ForElementBlocks<TBody>(int length, TBody body) where TBody : struct, IElementBlockBody =>
        For((length + ElementwiseBlock - 1) / ElementwiseBlock, new ElementBlocks<TBody>(length, body));

    private readonly struct ElementBlocks<TBody>(int length, TBody body) : IParallelBody where TBody : struct, IElementBlockBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int block)
        {
            int start = block * ElementwiseBlock;
            body.Run(start, Math.Min(ElementwiseBlock, length - start));
        }
    }

    // ---- dropout ----

    public void DropoutForward(Tensor x, float p, ulong seed, Tensor mask, Tensor y)
    {
        ForElementBlocks(x.Length, new DropoutBody(Array(x), p, seed, Array(mask), Array(y)));
    }

    private readonly struct DropoutBody(float[] x, float p, ulong seed, float[] mask, float[] y) : IElementBlockBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int start, int count)
        {
            float keep = 1f / (1f - p);
            for (int i = start; i < start + count; i++)
            {
                // Dropped when u < p: probability p up to the 2^-53 spacing of u; p = 0 drops nothing.
                float m = DropoutUniform(seed, (ulong)i) < p ? 0f : keep;
                mask[i] = m;
                y[i] = x[i] * m;
            }
        }
    }

    /// <summary>
    /// A uniform double in [0, 1) that depends only on (seed, index): the SplitMix64 finalizer applied twice,
    /// once to the seed and once to its key plus index times the golden-ratio increment (a counter-based generator).
    /// </summary>
    internal static double DropoutUniform(ulong seed, ulong index)
    {
        ulong key = Rng.Mix64(seed);
        ulong z = Rng.Mix64(key + (index + 1) * Rng.GoldenGamma);
        return (z >> 11) * (1.0 / (1UL << 53));
    }

    // ---- activations ----

    public void ActivationForward(ActivationKind kind, float alpha, Tensor x, Tensor y) =>
        ForElementBlocks(x.Length, new ActivationForwardBody(kind, alpha, Array(x), Array(y)));

    private readonly struct ActivationForwardBody(ActivationKind kind, float alpha, float[] x, float[] y) : IElementBlockBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int start, int count)
        {
            var xs = x.AsSpan(start, count); var ys = y.AsSpan(start, count);
            switch (kind)
            {
                case ActivationKind.ReLU:
                    TensorPrimitives.Max(xs, 0f, ys); // NaN propagates through Max
                    break;
                case ActivationKind.LeakyReLU:
                    for (int i = 0; i < xs.Length; i++) ys[i] = xs[i] > 0 ? xs[i] : alpha * xs[i];
                    break;
                case ActivationKind.ELU:
                    // exp(x) - 1 in double: no cancellation in float for x near 0.
                    for (int i = 0; i < xs.Length; i++) ys[i] = xs[i] > 0 ? xs[i] : (float)(alpha * (Math.Exp(xs[i]) - 1.0));
                    break;
                case ActivationKind.Sigmoid:
                    for (int i = 0; i < xs.Length; i++) ys[i] = StableSigmoid(xs[i]);
                    break;
                case ActivationKind.Tanh:
                    TensorPrimitives.Tanh(xs, ys);
                    break;
                default:
                    throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown activation.");
            }
        }
    }

    public void ActivationBackward(ActivationKind kind, float alpha, Tensor x, Tensor y, Tensor dy, Tensor dx) =>
        ForElementBlocks(x.Length, new ActivationBackwardBody(kind, alpha, Array(x), Array(y), Array(dy), Array(dx)));

    private readonly struct ActivationBackwardBody(ActivationKind kind, float alpha, float[] x, float[] y, float[] dy, float[] dx) : IElementBlockBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int start, int count)
        {
            var xs = x.AsSpan(start, count); var ys = y.AsSpan(start, count);
            var dys = dy.AsSpan(start, count); var dxs = dx.AsSpan(start, count);
            switch (kind)
            {
                case ActivationKind.ReLU:
                    // The derivative at the kink x = 0 is taken as 0 (cuDNN, PyTorch).
                    ReluBackward(xs, dys, dxs);
                    break;
                case ActivationKind.LeakyReLU:
                    for (int i = 0; i < xs.Length; i++) dxs[i] = dys[i] * PiecewiseSlope(xs[i], alpha);
                    break;
                case ActivationKind.ELU:
                    // alpha exp(x) from x rather than y + alpha, which cancels for large negative x.
                    for (int i = 0; i < xs.Length; i++)
                        dxs[i] = xs[i] > 0 ? dys[i] : (float)(dys[i] * (alpha * Math.Exp(xs[i])));
                    break;
                case ActivationKind.Sigmoid:
                    for (int i = 0; i < xs.Length; i++) dxs[i] = dys[i] * (ys[i] * (1f - ys[i]));
                    break;
                case ActivationKind.Tanh:
                    for (int i = 0; i < xs.Length; i++) dxs[i] = dys[i] * (1f - ys[i] * ys[i]);
                    break;
                default:
                    throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown activation.");
            }
        }
    }

    /// <summary>dx = dy * PiecewiseSlope(x, 0), eight lanes at a time (the same product per element as the scalar form).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ReluBackward(ReadOnlySpan<float> x, ReadOnlySpan<float> dy, Span<float> dx)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= x.Length - 8; i += 8)
                (Vector256.Create(dy.Slice(i, 8)) * Kernels.Relu.Slope(Vector256.Create(x.Slice(i, 8)))).CopyTo(dx.Slice(i, 8));
        }
        for (; i < x.Length; i++) dx[i] = dy[i] * PiecewiseSlope(x[i], 0f);
    }

    /// <summary>1 for x &gt; 0, <paramref name="below"/> for x &lt;= 0, NaN for NaN (so a NaN input is not hidden).</summary>
    private static float PiecewiseSlope(float x, float below) => x > 0 ? 1f : x <= 0 ? below : float.NaN;

    /// <summary>1 / (1 + exp(-x)) through exp(-|x|), which never overflows: exact limits and tiny values for large |x|.</summary>
    private static float StableSigmoid(float x)
    {
        double e = Math.Exp(-Math.Abs((double)x));
        return (float)(x >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e));
    }

    // ---- softmax over the last dimension of [N, K] ----

    public void SoftmaxForward(Tensor x, Tensor y, bool log) =>
        For(x.Shape[0], new SoftmaxForwardBody(Array(x), Array(y), x.Shape[1], log));

    private readonly struct SoftmaxForwardBody(float[] x, float[] y, int k, bool log) : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int row)
        {
            var xs = x.AsSpan(row * k, k); var ys = y.AsSpan(row * k, k);
            double max = TensorPrimitives.Max<float>(xs), logSum = LogSumExpShifted(xs, max);
            for (int j = 0; j < k; j++)
            {
                double shifted = xs[j] - max;
                ys[j] = (float)(log ? shifted - logSum : Math.Exp(shifted - logSum));
            }
        }
    }

    public void SoftmaxBackward(Tensor y, Tensor dy, Tensor dx, bool log) =>
        For(y.Shape[0], new SoftmaxBackwardBody(Array(y), Array(dy), Array(dx), y.Shape[1], log));

    private readonly struct SoftmaxBackwardBody(float[] y, float[] dy, float[] dx, int k, bool log) : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int row)
        {
            var ys = y.AsSpan(row * k, k); var dys = dy.AsSpan(row * k, k); var dxs = dx.AsSpan(row * k, k);
            if (log)
            {
                // y = log softmax: dx = dy - softmax * sum(dy), softmax = exp(y).
                double sum = 0;
                foreach (float v in dys) sum += v;
                for (int j = 0; j < k; j++) dxs[j] = (float)(dys[j] - Math.Exp(ys[j]) * sum);
            }
            else
            {
                // y = softmax: dx = y * (dy - sum(dy * y)).
                double dot = 0;
                for (int j = 0; j < k; j++) dot += (double)dys[j] * ys[j];
                for (int j = 0; j < k; j++) dxs[j] = (float)(ys[j] * (dys[j] - dot));
            }
        }
    }

    public void SoftmaxCrossEntropyForward(Tensor logits, Tensor labels, float labelSmoothing, Tensor loss, Tensor probabilities)
    {
        int n = logits.Shape[0], k = logits.Shape[1];
        var la = Array(labels);
        CheckLabels(la, n, k);
        For(n, new CrossEntropyForwardBody(Array(logits), la, labelSmoothing, Array(loss), Array(probabilities), k));
    }

    private readonly struct CrossEntropyForwardBody(float[] logits, float[] labels, float smoothing, float[] loss, float[] probabilities, int k) : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int row)
        {
            var xs = logits.AsSpan(row * k, k); var ps = probabilities.AsSpan(row * k, k);
            double max = TensorPrimitives.Max<float>(xs), logSum = LogSumExpShifted(xs, max);
            for (int j = 0; j < k; j++) ps[j] = (float)Math.Exp(xs[j] - max - logSum);
            // -log softmax[label] = logsumexp - x[label], both relative to the row max.
            double target = xs[(int)labels[row]] - max;
            if (smoothing != 0)
            {
                // -sum_j q_j log softmax_j = logsumexp - sum_j q_j x_j (q sums to 1), with q = (1-e) onehot + e/K.
                // Skipped at e = 0 so the plain loss keeps its arithmetic (and a -inf logit does not give 0 * -inf).
                double sum = 0;
                foreach (float v in xs) sum += v - max;
                target = (1.0 - smoothing) * target + smoothing * (sum / k);
            }
            loss[row] = (float)(logSum - target);
        }
    }

    public void LossAndCorrect(Tensor loss, Tensor probabilities, Tensor labels, Tensor stats, int row)
    {
        int n = probabilities.Shape[0], k = probabilities.Shape[1]; // shapes checked by CrossEntropy.LossAndCorrect
        var l = Span(loss); var p = Span(probabilities); var y = Span(labels);
        double sum = 0; int hits = 0;
        for (int i = 0; i < n; i++)
        {
            sum += l[i];
            var r = p.Slice(i * k, k);
            int best = 0;
            for (int j = 1; j < k; j++) if (r[j] > r[best]) best = j;
            if (best == (int)y[i]) hits++;
        }
        var s = Span(stats);
        s[2 * row] = (float)sum;
        s[2 * row + 1] = hits;
    }

    public void SoftmaxCrossEntropyBackward(Tensor probabilities, Tensor labels, float labelSmoothing, float scale, Tensor dlogits)
    {
        int n = probabilities.Shape[0], k = probabilities.Shape[1];
        var la = Array(labels);
        CheckLabels(la, n, k);
        // The smoothed target: off = e/K everywhere, on = 1 - e + e/K at the label; e = 0 gives exactly 1 and 0, and
        // p - 0f == p, so the plain gradient is bit-identical to scale * (p - onehot).
        float off = (float)((double)labelSmoothing / k), on = (float)(1.0 - labelSmoothing + (double)labelSmoothing / k);
        For(n, new CrossEntropyBackwardBody(Array(probabilities), la, on, off, scale, Array(dlogits), k));
    }

    private readonly struct CrossEntropyBackwardBody(float[] probabilities, float[] labels, float on, float off, float scale, float[] dlogits, int k) : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int row)
        {
            var ps = probabilities.AsSpan(row * k, k); var ds = dlogits.AsSpan(row * k, k);
            int label = (int)labels[row];
            for (int j = 0; j < k; j++) ds[j] = scale * (ps[j] - (j == label ? on : off));
        }
    }

    /// <summary>log sum_j exp(x[j] - max) in double; the sum is at least 1 when max is the row's maximum.</summary>
    private static double LogSumExpShifted(ReadOnlySpan<float> xs, double max)
    {
        double sum = 0;
        foreach (float v in xs) sum += Math.Exp(v - max);
        return Math.Log(sum);
    }

    /// <summary>Labels are read as indices, so an out-of-range or fractional one would read a wrong element: refuse it.</summary>
    private static void CheckLabels(float[] labels, int n, int k)
    {
        for (int i = 0; i < n; i++)
        {
            float v = labels[i];
            if (!(v >= 0 && v < k) || v != MathF.Floor(v))
                throw new ArgumentOutOfRangeException(nameof(labels), v, $"Label {v} at row {i} is not a class index in [0, {k}).");
        }
    }
}
