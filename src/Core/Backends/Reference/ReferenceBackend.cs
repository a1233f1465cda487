using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Backends.Reference;

/// <summary>
/// The readable reference kernels as a backend of their own: the oracle of the backend contract tests
/// (tests/Backends.Contract) and of the fast CPU kernels' tests. Slow; not for training (the benchmarks' baseline is
/// the CPU backend's own plain loops, not this).
/// </summary>
/// <remarks>
/// <para>Two sources of kernels. (1) Its own host loops, written here from IBackend's definitions and summing in double,
/// for the element-wise kernels, the per-channel helpers, activations, softmax, the cross-entropy, the step statistics,
/// the optimizers, LRN and batch normalization: each copies its inputs to the host, computes, and copies the outputs
/// back, so it shares no code with the CPU backend's kernels. (2) A private CPU backend built with its reference-loop
/// switch on (made by <see cref="DefaultBackend"/>, beside the CPU kernels; outside the CPU folder the switch is
/// reachable only through this class, and from the benchmarks, which time the plain loops as their baseline) for memory, MatMul, convolution, im2col and pooling, whose plain loops the fast CPU kernels are tested
/// against, and for dropout, whose mask must equal every backend's bit for bit (one counter-based generator).</para>
/// <para>Its tensors hold CPU storage, so they can be copied to and from the CPU backend's with plain host copies.
/// Its threads (1 by default) only split the CPU reference loops; results do not depend on them.</para>
/// </remarks>
public sealed class ReferenceBackend : DelegatingBackend
{
    /// <summary>A reference backend on <paramref name="maxThreads"/> threads (1 by default; results do not depend on it).</summary>
    public ReferenceBackend(int maxThreads = 1) : base(DefaultBackend.CpuReferenceKernels(maxThreads)) { }

    /// <summary>A shared one-thread instance.</summary>
    public static ReferenceBackend Default { get; } = new();

    public override string Name => "reference";

    private float[] H(Tensor t)
    {
        var r = new float[t.Length];
        Inner.CopyToHost(t, r);
        return r;
    }

    private void W(Tensor t, float[] values) => Inner.CopyFromHost(values, t);

    private static void SameLength(Tensor a, Tensor b, string op)
    {
        if (a.Length != b.Length) throw new ArgumentException($"{op}: tensors {a.Shape} and {b.Shape} differ in length.");
    }

    // ---- element-wise ----

    public override void Copy(Tensor source, Tensor destination) { SameLength(source, destination, "Copy"); W(destination, H(source)); }

    public override void Fill(Tensor tensor, float value) => W(tensor, Enumerable.Repeat(value, tensor.Length).ToArray());

    public override void Scale(Tensor x, float alpha, Tensor y)
    {
        SameLength(x, y, "Scale");
        var a = H(x);
        for (int i = 0; i < a.Length; i++) a[i] = alpha * a[i];
        W(y, a);
    }

    public override void Add(Tensor a, Tensor b, Tensor y)
    {
        SameLength(a, b, "Add"); SameLength(a, y, "Add");
        float[] u = H(a), v = H(b), r = new float[u.Length];
        for (int i = 0; i < r.Length; i++) r[i] = u[i] + v[i];
        W(y, r);
    }

    public override void AddScaled(Tensor x, float alpha, Tensor y)
    {
        SameLength(x, y, "AddScaled");
        float[] u = H(x), r = H(y);
        for (int i = 0; i < r.Length; i++) r[i] = (float)(r[i] + (double)alpha * u[i]);
        W(y, r);
    }

    public override void Multiply(Tensor a, Tensor b, Tensor y)
    {
        SameLength(a, b, "Multiply"); SameLength(a, y, "Multiply");
        float[] u = H(a), v = H(b), r = new float[u.Length];
        for (int i = 0; i < r.Length; i++) r[i] = u[i] * v[i];
        W(y, r);
    }

    public override double Sum(Tensor x)
    {
        double s = 0;
        foreach (float v in H(x)) s += v;
        return s;
    }

    // ---- per-channel helpers ----

    public override void AddChannelBias(Tensor y, Tensor bias)
    {
        int n = y.Shape[0], c = y.Shape[1], inner = y.Length / (n * c);
        float[] r = H(y), b = H(bias);
        for (int i = 0; i < n * c; i++)
            for (int k = 0; k < inner; k++) r[i * inner + k] += b[i % c];
        W(y, r);
    }

    public override void SumPerChannel(Tensor dy, Tensor db)
    {
        int n = dy.Shape[0], c = dy.Shape[1], inner = dy.Length / (n * c);
        float[] d = H(dy);
        var r = new float[c];
        for (int ch = 0; ch < c; ch++)
        {
            double s = 0;
            for (int i = 0; i < n; i++)
                for (int k = 0; k < inner; k++) s += d[(i * c + ch) * inner + k];
            r[ch] = (float)s;
        }
        W(db, r);
    }

    // ---- activations ----

    public override void ActivationForward(ActivationKind kind, float alpha, Tensor x, Tensor y)
    {
        float[] a = H(x), r = new float[a.Length];
        for (int i = 0; i < a.Length; i++)
        {
            double v = a[i];
            r[i] = float.IsNaN(a[i]) ? a[i] : (float)(kind switch
            {
                ActivationKind.ReLU => v > 0 ? v : 0,
                ActivationKind.LeakyReLU => v > 0 ? v : alpha * v,
                ActivationKind.ELU => v > 0 ? v : alpha * (Math.Exp(v) - 1),
                ActivationKind.Sigmoid => 1 / (1 + Math.Exp(-v)),
                ActivationKind.Tanh => Math.Tanh(v),
                _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown activation."),
            });
        }
        W(y, r);
    }

    public override void ActivationBackward(ActivationKind kind, float alpha, Tensor x, Tensor y, Tensor dy, Tensor dx)
    {
        float[] a = H(x), f = H(y), d = H(dy), r = new float[a.Length];
        for (int i = 0; i < a.Length; i++)
        {
            double v = a[i], fy = f[i];
            double slope = kind switch
            {
                ActivationKind.ReLU => v > 0 ? 1 : 0, // 0 at the kink
                ActivationKind.LeakyReLU => v > 0 ? 1 : alpha,
                ActivationKind.ELU => v > 0 ? 1 : alpha * Math.Exp(v),
                ActivationKind.Sigmoid => fy * (1 - fy),
                ActivationKind.Tanh => 1 - fy * fy,
                _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown activation."),
            };
            r[i] = (float)(d[i] * slope);
        }
        W(dx, r);
    }

    // ---- ReLU fused into max pooling: the composition of this backend's own two ops, with the ReLU's output kept ----

    public override void PoolingReluForward(PoolGeometry g, Tensor x, Tensor y)
    {
        var r = Allocate(x.Shape);
        ActivationForward(ActivationKind.ReLU, 0f, x, r);
        PoolingForward(g, r, y);
    }

    public override void PoolingReluBackward(PoolGeometry g, Tensor x, Tensor y, Tensor dy, Tensor dx)
    {
        var r = Allocate(x.Shape);
        ActivationForward(ActivationKind.ReLU, 0f, x, r);
        var dr = Allocate(x.Shape);
        PoolingBackward(g, r, y, dy, dr);
        ActivationBackward(ActivationKind.ReLU, 0f, x, r, dr, dx);
    }

    // ---- softmax and cross-entropy ----

    /// <summary>log softmax of one row, in double.</summary>
    private static double[] LogSoftmax(ReadOnlySpan<float> row)
    {
        double max = double.NegativeInfinity;
        foreach (float v in row) max = Math.Max(max, v);
        double sum = 0;
        foreach (float v in row) sum += Math.Exp(v - max);
        double lse = max + Math.Log(sum);
        var r = new double[row.Length];
        for (int j = 0; j < row.Length; j++) r[j] = row[j] - lse;
        return r;
    }

    public override void SoftmaxForward(Tensor x, Tensor y, bool log)
    {
        int n = x.Shape[0], k = x.Length / n;
        float[] a = H(x), r = new float[a.Length];
        for (int i = 0; i < n; i++)
        {
            var lp = LogSoftmax(a.AsSpan(i * k, k));
            for (int j = 0; j < k; j++) r[i * k + j] = (float)(log ? lp[j] : Math.Exp(lp[j]));
        }
        W(y, r);
    }

    public override void SoftmaxBackward(Tensor y, Tensor dy, Tensor dx, bool log)
    {
        int n = y.Shape[0], k = y.Length / n;
        float[] f = H(y), d = H(dy), r = new float[f.Length];
        for (int i = 0; i < n; i++)
        {
            double s = 0;
            for (int j = 0; j < k; j++) s += log ? d[i * k + j] : (double)d[i * k + j] * f[i * k + j];
            for (int j = 0; j < k; j++)
            {
                int at = i * k + j;
                // softmax: dx = y (dy - sum dy y); log-softmax: dx = dy - exp(y) sum dy.
                r[at] = (float)(log ? d[at] - Math.Exp(f[at]) * s : f[at] * (d[at] - s));
            }
        }
        W(dx, r);
    }

    private static int Label(float value, int row, int k)
    {
        if (!(value >= 0 && value < k) || value != Math.Floor(value))
            throw new ArgumentOutOfRangeException("labels", value, $"Label {value} at row {row} is not a class index in [0, {k}).");
        return (int)value;
    }

    public override void SoftmaxCrossEntropyForward(Tensor logits, Tensor labels, float labelSmoothing, Tensor loss, Tensor probabilities)
    {
        int n = logits.Shape[0], k = logits.Shape[1];
        float[] a = H(logits), y = H(labels), l = new float[n], p = new float[a.Length];
        for (int i = 0; i < n; i++)
        {
            int label = Label(y[i], i, k);
            var lp = LogSoftmax(a.AsSpan(i * k, k));
            double s = 0;
            for (int j = 0; j < k; j++)
            {
                double q = (j == label ? 1 - labelSmoothing : 0) + (double)labelSmoothing / k;
                s -= q * lp[j];
                p[i * k + j] = (float)Math.Exp(lp[j]);
            }
            l[i] = (float)s;
        }
        W(loss, l);
        W(probabilities, p);
    }

    public override void SoftmaxCrossEntropyBackward(Tensor probabilities, Tensor labels, float labelSmoothing, float scale, Tensor dlogits)
    {
        int n = probabilities.Shape[0], k = probabilities.Shape[1];
        float[] p = H(probabilities), y = H(labels), r = new float[p.Length];
        for (int i = 0; i < n; i++)
        {
            int label = Label(y[i], i, k);
            for (int j = 0; j < k; j++)
            {
                double q = (j == label ? 1 - labelSmoothing : 0) + (double)labelSmoothing / k;
                r[i * k + j] = (float)(scale * (p[i * k + j] - q));
            }
        }
        W(dlogits, r);
    }

    public override void LossAndCorrect(Tensor loss, Tensor probabilities, Tensor labels, Tensor stats, int row)
    {
        int n = probabilities.Shape[0], k = probabilities.Shape[1]; // shapes checked by CrossEntropy.LossAndCorrect
        float[] l = H(loss), p = H(probabilities), y = H(labels), s = H(stats);
        double sum = 0;
        int hits = 0;
        for (int i = 0; i < n; i++)
        {
            sum += l[i];
            int best = 0;
            for (int j = 1; j < k; j++) if (p[i * k + j] > p[i * k + best]) best = j;
            if (best == (int)y[i]) hits++;
        }
        s[2 * row] = (float)sum;
        s[2 * row + 1] = hits;
        W(stats, s);
    }

    // ---- optimizers ----

    public override void SgdStep(Tensor param, Tensor grad, Tensor? velocity, float learningRate, float momentum, bool nesterov, float weightDecay)
    {
        float[] w = H(param), g0 = H(grad), v = velocity is null ? [] : H(velocity);
        for (int i = 0; i < w.Length; i++)
        {
            double g = g0[i] + (double)weightDecay * w[i], d = g;
            if (momentum > 0)
            {
                double vi = (double)momentum * v[i] + g;
                v[i] = (float)vi;
                d = nesterov ? g + momentum * vi : vi;
            }
            w[i] = (float)(w[i] - learningRate * d);
        }
        W(param, w);
        if (momentum > 0) W(velocity!, v);
    }

    public override void AdamStep(Tensor param, Tensor grad, Tensor m, Tensor v, float learningRate, float beta1, float beta2, float epsilon,
        float weightDecay, bool decoupled, long step)
    {
        float[] w = H(param), g0 = H(grad), m1 = H(m), v1 = H(v);
        double c1 = 1 - Math.Pow(beta1, step), c2 = 1 - Math.Pow(beta2, step);
        for (int i = 0; i < w.Length; i++)
        {
            double p = w[i], g = g0[i];
            if (decoupled) p -= (double)learningRate * weightDecay * w[i];
            else g += (double)weightDecay * w[i];
            double mi = beta1 * (double)m1[i] + (1 - (double)beta1) * g, vi = beta2 * (double)v1[i] + (1 - (double)beta2) * g * g;
            m1[i] = (float)mi; v1[i] = (float)vi;
            w[i] = (float)(p - learningRate * (mi / c1) / (Math.Sqrt(vi / c2) + epsilon));
        }
        W(param, w); W(m, m1); W(v, v1);
    }

    // ---- local response normalization ----

    /// <summary>s[n,c,i] = K + Alpha/Size * sum of x^2 over channels c - floor((Size-1)/2) .. c + ceil((Size-1)/2) inside [0, C).</summary>
    private static double[] LrnScale(LrnOptions o, float[] x, int n, int c, int inner)
    {
        int lo = (o.Size - 1) / 2, hi = o.Size - 1 - lo;
        var s = new double[x.Length];
        for (int b = 0; b < n; b++)
            for (int ch = 0; ch < c; ch++)
                for (int i = 0; i < inner; i++)
                {
                    double sum = 0;
                    for (int q = Math.Max(0, ch - lo); q <= Math.Min(c - 1, ch + hi); q++)
                    {
                        double v = x[(b * c + q) * inner + i];
                        sum += v * v;
                    }
                    s[(b * c + ch) * inner + i] = o.K + (double)o.Alpha / o.Size * sum;
                }
        return s;
    }

    public override void LrnForward(LrnOptions options, Tensor x, Tensor y)
    {
        int n = x.Shape[0], c = x.Shape[1], inner = x.Length / (n * c);
        float[] a = H(x), r = new float[a.Length];
        var s = LrnScale(options, a, n, c, inner);
        for (int i = 0; i < a.Length; i++) r[i] = (float)(a[i] * Math.Pow(s[i], -options.Beta));
        W(y, r);
    }

    public override void LrnBackward(LrnOptions options, Tensor x, Tensor y, Tensor dy, Tensor dx)
    {
        // y_c = x_c s_c^-beta, s_c = K + (alpha/size) sum_{q in window(c)} x_q^2, so
        // dx_j = dy_j s_j^-beta - 2 beta (alpha/size) x_j sum_{c: j in window(c)} dy_c x_c s_c^(-beta-1).
        int n = x.Shape[0], c = x.Shape[1], inner = x.Length / (n * c);
        int lo = (options.Size - 1) / 2, hi = options.Size - 1 - lo;
        float[] a = H(x), d = H(dy);
        var s = LrnScale(options, a, n, c, inner);
        var r = new double[a.Length];
        double beta = options.Beta, factor = 2 * beta * options.Alpha / options.Size;
        for (int b = 0; b < n; b++)
            for (int ch = 0; ch < c; ch++)
                for (int i = 0; i < inner; i++)
                {
                    int at = (b * c + ch) * inner + i;
                    r[at] += d[at] * Math.Pow(s[at], -beta);
                    double common = factor * d[at] * a[at] * Math.Pow(s[at], -beta - 1);
                    for (int q = Math.Max(0, ch - lo); q <= Math.Min(c - 1, ch + hi); q++)
                    {
                        int j = (b * c + q) * inner + i;
                        r[j] -= common * a[j];
                    }
                }
        W(dx, Array.ConvertAll(r, v => (float)v));
    }

    // ---- batch normalization ----

    /// <summary>Every index of channel <paramref name="ch"/> in [N, C, inner].</summary>
    private static IEnumerable<int> Channel(int n, int c, int inner, int ch)
    {
        for (int b = 0; b < n; b++)
            for (int i = 0; i < inner; i++) yield return (b * c + ch) * inner + i;
    }

    public override void BatchNormForwardTraining(Tensor x, Tensor gamma, Tensor beta, float epsilon, float momentum,
        Tensor runningMean, Tensor runningVariance, Tensor y, Tensor savedMean, Tensor savedInvStd)
    {
        int n = x.Shape[0], c = x.Shape[1], inner = x.Length / (n * c), m = n * inner;
        float[] a = H(x), g = H(gamma), bt = H(beta), rm = H(runningMean), rv = H(runningVariance);
        float[] r = new float[a.Length], mean = new float[c], invStd = new float[c];
        for (int ch = 0; ch < c; ch++)
        {
            double sum = 0;
            foreach (int i in Channel(n, c, inner, ch)) sum += a[i];
            double mu = sum / m, sq = 0;
            foreach (int i in Channel(n, c, inner, ch)) sq += (a[i] - mu) * (a[i] - mu);
            double variance = sq / m, inv = 1 / Math.Sqrt(variance + epsilon);
            foreach (int i in Channel(n, c, inner, ch)) r[i] = (float)(g[ch] * (a[i] - mu) * inv + bt[ch]);
            mean[ch] = (float)mu; invStd[ch] = (float)inv;
            rm[ch] = (float)((1 - (double)momentum) * rm[ch] + momentum * mu);
            rv[ch] = (float)((1 - (double)momentum) * rv[ch] + momentum * (m > 1 ? sq / (m - 1) : variance));
        }
        W(y, r); W(savedMean, mean); W(savedInvStd, invStd); W(runningMean, rm); W(runningVariance, rv);
    }

    public override void BatchNormForwardInference(Tensor x, Tensor gamma, Tensor beta, Tensor mean, Tensor variance, float epsilon, Tensor y)
    {
        int n = x.Shape[0], c = x.Shape[1], inner = x.Length / (n * c);
        float[] a = H(x), g = H(gamma), bt = H(beta), mu = H(mean), vr = H(variance), r = new float[a.Length];
        for (int ch = 0; ch < c; ch++)
        {
            double inv = 1 / Math.Sqrt((double)vr[ch] + epsilon);
            foreach (int i in Channel(n, c, inner, ch)) r[i] = (float)(g[ch] * (a[i] - (double)mu[ch]) * inv + bt[ch]);
        }
        W(y, r);
    }

    public override void BatchNormBackward(Tensor x, Tensor dy, Tensor gamma, Tensor savedMean, Tensor savedInvStd,
        Tensor dx, Tensor dgamma, Tensor dbeta)
    {
        BatchNormBackwardHost(x, H(dy), gamma, savedMean, savedInvStd, dx, dgamma, dbeta);
    }

    /// <summary>This backend's ReLU forward on its own batch norm's output.</summary>
    public override void BatchNormReluForwardTraining(Tensor x, Tensor gamma, Tensor beta, float epsilon, float momentum,
        Tensor runningMean, Tensor runningVariance, Tensor y, Tensor savedMean, Tensor savedInvStd)
    {
        BatchNormForwardTraining(x, gamma, beta, epsilon, momentum, runningMean, runningVariance, y, savedMean, savedInvStd);
        ActivationForward(ActivationKind.ReLU, 0f, y, y);
    }

    /// <summary>dy times this backend's ReLU slope at y (1 where y &gt; 0, else 0), then its batch norm backward.</summary>
    public override void BatchNormReluBackward(Tensor x, Tensor y, Tensor dy, Tensor gamma, Tensor savedMean, Tensor savedInvStd,
        Tensor dx, Tensor dgamma, Tensor dbeta)
    {
        float[] f = H(y), d = H(dy);
        for (int i = 0; i < d.Length; i++) d[i] = (float)(d[i] * (f[i] > 0 ? 1.0 : 0.0));
        BatchNormBackwardHost(x, d, gamma, savedMean, savedInvStd, dx, dgamma, dbeta);
    }

    private void BatchNormBackwardHost(Tensor x, float[] d, Tensor gamma, Tensor savedMean, Tensor savedInvStd,
        Tensor dx, Tensor dgamma, Tensor dbeta)
    {
        // xhat = (x - mean) invStd; dbeta = sum dy; dgamma = sum dy xhat; dx = gamma invStd / m (m dy - dbeta - xhat dgamma).
        int n = x.Shape[0], c = x.Shape[1], inner = x.Length / (n * c), m = n * inner;
        float[] a = H(x), g = H(gamma), mu = H(savedMean), inv = H(savedInvStd);
        float[] r = new float[a.Length], dg = new float[c], db = new float[c];
        for (int ch = 0; ch < c; ch++)
        {
            double sumDy = 0, sumDyXhat = 0;
            foreach (int i in Channel(n, c, inner, ch))
            {
                sumDy += d[i];
                sumDyXhat += d[i] * ((a[i] - (double)mu[ch]) * inv[ch]);
            }
            foreach (int i in Channel(n, c, inner, ch))
            {
                double xhat = (a[i] - (double)mu[ch]) * inv[ch];
                r[i] = (float)(g[ch] * (double)inv[ch] / m * (m * (double)d[i] - sumDy - xhat * sumDyXhat));
            }
            dg[ch] = (float)sumDyXhat; db[ch] = (float)sumDy;
        }
        W(dx, r); W(dgamma, dg); W(dbeta, db);
    }
}
