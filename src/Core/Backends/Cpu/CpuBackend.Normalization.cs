using System.Runtime.CompilerServices;
using System.Buffers;
using System.Runtime.Intrinsics;
using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Backends.Cpu;

// Cross-channel LRN and batch normalization. Both read x as [N, C, inner] with inner = prod(spatial)
// (1 for [N, F]); each output element or channel statistic is computed by one thread, in one order.
public sealed partial class CpuBackend
{
    // ---- local response normalization ----
    //
    // s[n,c,i] = K + Alpha/Size * sum_{c' in W(c)} x[n,c',i]^2,  W(c) = [c - lo, c + hi] ∩ [0, C),
    // lo = floor((Size-1)/2), hi = ceil((Size-1)/2);  y = x * s^-Beta.

    public void LrnForward(LrnOptions options, Tensor x, Tensor y)
    {
        int n = x.Shape[0], c = x.Shape[1], inner = x.Shape.SizeFrom(2);
        For(n * c, new LrnForwardBody(options, Array(x), Array(y), c, inner));
    }

    private readonly struct LrnForwardBody(LrnOptions options, float[] x, float[] y, int c, int inner) : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int row)
        {
            double beta = options.Beta;
            int ch = row % c, sampleBase = (row - ch) * inner;
            for (int i = 0; i < inner; i++)
            {
                double s = LrnScale(options, x, sampleBase, c, ch, inner, i);
                int at = row * inner + i;
                y[at] = (float)(x[at] * Math.Pow(s, -beta));
            }
        }
    }

    public void LrnBackward(LrnOptions options, Tensor x, Tensor y, Tensor dy, Tensor dx)
    {
        // With y[c] = x[c] s[c]^-Beta and ds[c]/dx[j] = 2 Alpha/Size x[j] for j in W(c):
        //   dx[j] = dy[j] s[j]^-Beta - 2 Alpha Beta/Size x[j] sum_{c : j in W(c)} dy[c] y[c] / s[c],
        // and j in W(c) exactly when c lies in [j - hi, j + lo]. First s and dy*y/s everywhere, then the sum.
        int n = x.Shape[0], c = x.Shape[1], inner = x.Shape.SizeFrom(2);
        double[] scale = ArrayPool<double>.Shared.Rent(x.Length), ratio = ArrayPool<double>.Shared.Rent(x.Length);
        try
        {
            float[] xa = Array(x), dya = Array(dy);
            For(n * c, new LrnScalesBody(options, xa, Array(y), dya, c, inner, scale, ratio));
            For(n * c, new LrnBackwardBody(options, xa, dya, Array(dx), c, inner, scale, ratio));
        }
        finally
        {
            ArrayPool<double>.Shared.Return(scale);
            ArrayPool<double>.Shared.Return(ratio);
        }
    }

    /// <summary>Per (n, c) row: the scales s and the ratios dy*y/s.</summary>
    private readonly struct LrnScalesBody(LrnOptions options, float[] x, float[] y, float[] dy, int c, int inner,
        double[] scale, double[] ratio) : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int row)
        {
            int ch = row % c, sampleBase = (row - ch) * inner;
            for (int i = 0; i < inner; i++)
            {
                int at = row * inner + i;
                scale[at] = LrnScale(options, x, sampleBase, c, ch, inner, i);
                ratio[at] = (double)dy[at] * y[at] / scale[at];
            }
        }
    }

    /// <summary>Per (n, c) row: dx from the scales and the ratios of the channels whose window holds c.</summary>
    private readonly struct LrnBackwardBody(LrnOptions options, float[] x, float[] dy, float[] dx, int c, int inner,
        double[] scale, double[] ratio) : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int row)
        {
            int lo = (options.Size - 1) / 2, hi = options.Size - 1 - lo;
            double beta = options.Beta, factor = 2.0 * options.Alpha * options.Beta / options.Size;
            int ch = row % c, sampleBase = (row - ch) * inner;
            int first = Math.Max(0, ch - hi), last = Math.Min(c - 1, ch + lo);
            for (int i = 0; i < inner; i++)
            {
                double sum = 0;
                for (int k = first; k <= last; k++) sum += ratio[sampleBase + k * inner + i];
                int at = row * inner + i;
                dx[at] = (float)(dy[at] * Math.Pow(scale[at], -beta) - factor * x[at] * sum);
            }
        }
    }

    /// <summary>K + Alpha/Size * (sum of squares over the channel window of channel ch at position i), in double.</summary>
    private static double LrnScale(LrnOptions o, float[] x, int sampleBase, int channels, int ch, int inner, int i)
    {
        int lo = (o.Size - 1) / 2, hi = o.Size - 1 - lo;
        int first = Math.Max(0, ch - lo), last = Math.Min(channels - 1, ch + hi);
        double sum = 0;
        for (int k = first; k <= last; k++)
        {
            double v = x[sampleBase + k * inner + i];
            sum += v * v;
        }
        return o.K + (double)o.Alpha / o.Size * sum;
    }

    // ---- batch normalization ----

    public void BatchNormForwardTraining(Tensor x, Tensor gamma, Tensor beta, float epsilon, float momentum,
        Tensor runningMean, Tensor runningVariance, Tensor y, Tensor savedMean, Tensor savedInvStd)
    {
        if (!UseReferenceKernels)
        {
            FastBatchNormForwardTraining(x, gamma, beta, epsilon, momentum, runningMean, runningVariance, y, savedMean, savedInvStd);
            return;
        }
        For(x.Shape[1], new BatchNormTrainingBody(x, gamma, beta, epsilon, momentum, runningMean, runningVariance, y, savedMean, savedInvStd));
    }

    /// <summary>The arguments of a training-mode batch norm forward, read as [N, C, inner]; one channel per index.</summary>
    private readonly struct BatchNormTrainingBody(Tensor x, Tensor gamma, Tensor beta, float epsilon, float momentum,
        Tensor runningMean, Tensor runningVariance, Tensor y, Tensor savedMean, Tensor savedInvStd) : IParallelBody
    {
        private readonly int n = x.Shape[0], c = x.Shape[1], inner = x.Shape.SizeFrom(2);
        private readonly float[] xa = Array(x), ya = Array(y), g = Array(gamma), b = Array(beta), rm = Array(runningMean),
            rv = Array(runningVariance), sm = Array(savedMean), sis = Array(savedInvStd);

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int ch)
        {
            long m = (long)n * inner;
            // Two passes (mean, then squared deviations) in double: no cancellation as in E[x²] - E[x]².
            double sum = 0;
            for (int s = 0; s < n; s++)
                foreach (float v in xa.AsSpan((s * c + ch) * inner, inner)) sum += v;
            double mean = sum / m;
            double squares = 0;
            for (int s = 0; s < n; s++)
                foreach (float v in xa.AsSpan((s * c + ch) * inner, inner)) { double d = v - mean; squares += d * d; }
            double variance = squares / m;
            double invStd = 1.0 / Math.Sqrt(variance + epsilon);
            double gain = g[ch] * invStd, shift = b[ch];
            for (int s = 0; s < n; s++)
            {
                int start = (s * c + ch) * inner;
                for (int i = start; i < start + inner; i++) ya[i] = (float)(gain * (xa[i] - mean) + shift);
            }
            sm[ch] = (float)mean;
            sis[ch] = (float)invStd;
            // The running variance estimates the population variance, so it takes the unbiased batch variance.
            double unbiased = m > 1 ? squares / (m - 1) : variance;
            rm[ch] = (float)((1.0 - momentum) * rm[ch] + (double)momentum * mean);
            rv[ch] = (float)((1.0 - momentum) * rv[ch] + (double)momentum * unbiased);
        }
    }

    public void BatchNormReluForwardTraining(Tensor x, Tensor gamma, Tensor beta, float epsilon, float momentum,
        Tensor runningMean, Tensor runningVariance, Tensor y, Tensor savedMean, Tensor savedInvStd)
    {
        if (!UseReferenceKernels)
        {
            FastBatchNormForwardTraining(x, gamma, beta, epsilon, momentum, runningMean, runningVariance, y, savedMean, savedInvStd, relu: true);
            return;
        }
        BatchNormForwardTraining(x, gamma, beta, epsilon, momentum, runningMean, runningVariance, y, savedMean, savedInvStd);
        ActivationForward(ActivationKind.ReLU, 0f, y, y);
    }

    public void BatchNormForwardInference(Tensor x, Tensor gamma, Tensor beta, Tensor mean, Tensor variance, float epsilon, Tensor y)
    {
        int n = x.Shape[0], c = x.Shape[1], inner = x.Shape.SizeFrom(2);
        For(n * c, new BatchNormInferenceBody(Array(x), Array(gamma), Array(beta), Array(mean), Array(variance), epsilon, Array(y), c, inner));
    }

    /// <summary>One (n, c) row per index.</summary>
    private readonly struct BatchNormInferenceBody(float[] x, float[] g, float[] b, float[] mu, float[] va, float epsilon, float[] y,
        int c, int inner) : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int row)
        {
            int ch = row % c;
            double gain = g[ch] / Math.Sqrt((double)va[ch] + epsilon), center = mu[ch], shift = b[ch];
            int i = row * inner, end = i + inner;
            if (Vector256.IsHardwareAccelerated)
            {
                // Eight floats widened to doubles, the scalar line's operations lane by lane (multiply, then add:
                // no fused multiply-add), narrowed back: the same bits as the scalar loop below.
                Vector256<double> g4 = Vector256.Create(gain), c4 = Vector256.Create(center), s4 = Vector256.Create(shift);
                for (; i <= end - 8; i += 8)
                {
                    var (lo, hi) = Vector256.Widen(Vector256.Create(x.AsSpan(i, 8)));
                    Vector256.Narrow(g4 * (lo - c4) + s4, g4 * (hi - c4) + s4).CopyTo(y.AsSpan(i, 8));
                }
            }
            for (; i < end; i++) y[i] = (float)(gain * (x[i] - center) + shift);
        }
    }

    public void BatchNormBackward(Tensor x, Tensor dy, Tensor gamma, Tensor savedMean, Tensor savedInvStd,
        Tensor dx, Tensor dgamma, Tensor dbeta)
    {
        if (!UseReferenceKernels)
        {
            FastBatchNormBackward(x, dy, gamma, savedMean, savedInvStd, dx, dgamma, dbeta);
            return;
        }
        // With xhat = (x - mean) invstd and m values per channel:
        //   dbeta = sum dy,  dgamma = sum dy xhat,  dx = gamma invstd / m * (m dy - dbeta - xhat dgamma).
        For(x.Shape[1], new BatchNormBackwardBody(x, dy, gamma, savedMean, savedInvStd, dx, dgamma, dbeta, null));
    }

    public void BatchNormReluBackward(Tensor x, Tensor y, Tensor dy, Tensor gamma, Tensor savedMean, Tensor savedInvStd,
        Tensor dx, Tensor dgamma, Tensor dbeta)
    {
        if (!UseReferenceKernels)
        {
            FastBatchNormBackward(x, dy, gamma, savedMean, savedInvStd, dx, dgamma, dbeta, reluOutput: y);
            return;
        }
        For(x.Shape[1], new BatchNormBackwardBody(x, dy, gamma, savedMean, savedInvStd, dx, dgamma, dbeta, y));
    }

    /// <summary>
    /// The arguments of a batch norm backward, read as [N, C, inner]; one channel per index. With <paramref name="reluOutput"/>
    /// (y of BatchNormReluForwardTraining) each dy is first multiplied by the ReLU's slope at y, as ActivationBackward does.
    /// </summary>
    private readonly struct BatchNormBackwardBody(Tensor x, Tensor dy, Tensor gamma, Tensor savedMean, Tensor savedInvStd,
        Tensor dx, Tensor dgamma, Tensor dbeta, Tensor? reluOutput) : IParallelBody
    {
        private readonly int n = x.Shape[0], c = x.Shape[1], inner = x.Shape.SizeFrom(2);
        private readonly float[] xa = Array(x), dya = Array(dy), g = Array(gamma), sm = Array(savedMean), sis = Array(savedInvStd),
            dxa = Array(dx), dga = Array(dgamma), dba = Array(dbeta);
        private readonly float[]? ya = reluOutput is null ? null : Array(reluOutput);

        private float Dy(int i) => ya is null ? dya[i] : dya[i] * PiecewiseSlope(ya[i], 0f);

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int ch)
        {
            long m = (long)n * inner;
            double mean = sm[ch], invStd = sis[ch];
            double sumDy = 0, sumDyXhat = 0;
            for (int s = 0; s < n; s++)
            {
                int start = (s * c + ch) * inner;
                for (int i = start; i < start + inner; i++)
                {
                    float d = Dy(i);
                    sumDy += d;
                    sumDyXhat += d * ((xa[i] - mean) * invStd);
                }
            }
            dba[ch] = (float)sumDy;
            dga[ch] = (float)sumDyXhat;
            double k = g[ch] * invStd / m;
            for (int s = 0; s < n; s++)
            {
                int start = (s * c + ch) * inner;
                for (int i = start; i < start + inner; i++)
                    dxa[i] = (float)(k * (m * (double)Dy(i) - sumDy - (xa[i] - mean) * invStd * sumDyXhat));
            }
        }
    }
}
