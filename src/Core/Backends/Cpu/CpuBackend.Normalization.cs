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
        var xa = Array(x); var ya = Array(y);
        double beta = options.Beta;
        For(n * c, row =>
        {
            int ch = row % c, sampleBase = (row - ch) * inner;
            for (int i = 0; i < inner; i++)
            {
                double s = LrnScale(options, xa, sampleBase, c, ch, inner, i);
                int at = row * inner + i;
                ya[at] = (float)(xa[at] * Math.Pow(s, -beta));
            }
        });
    }

    public void LrnBackward(LrnOptions options, Tensor x, Tensor y, Tensor dy, Tensor dx)
    {
        // With y[c] = x[c] s[c]^-Beta and ds[c]/dx[j] = 2 Alpha/Size x[j] for j in W(c):
        //   dx[j] = dy[j] s[j]^-Beta - 2 Alpha Beta/Size x[j] sum_{c : j in W(c)} dy[c] y[c] / s[c],
        // and j in W(c) exactly when c lies in [j - hi, j + lo]. First s and dy*y/s everywhere, then the sum.
        int n = x.Shape[0], c = x.Shape[1], inner = x.Shape.SizeFrom(2);
        int lo = (options.Size - 1) / 2, hi = options.Size - 1 - lo;
        var xa = Array(x); var ya = Array(y); var dya = Array(dy); var dxa = Array(dx);
        var scale = new double[x.Length];
        var ratio = new double[x.Length];
        For(n * c, row =>
        {
            int ch = row % c, sampleBase = (row - ch) * inner;
            for (int i = 0; i < inner; i++)
            {
                int at = row * inner + i;
                scale[at] = LrnScale(options, xa, sampleBase, c, ch, inner, i);
                ratio[at] = (double)dya[at] * ya[at] / scale[at];
            }
        });
        double beta = options.Beta, factor = 2.0 * options.Alpha * options.Beta / options.Size;
        For(n * c, row =>
        {
            int ch = row % c, sampleBase = (row - ch) * inner;
            int first = Math.Max(0, ch - hi), last = Math.Min(c - 1, ch + lo);
            for (int i = 0; i < inner; i++)
            {
                double sum = 0;
                for (int k = first; k <= last; k++) sum += ratio[sampleBase + k * inner + i];
                int at = row * inner + i;
                dxa[at] = (float)(dya[at] * Math.Pow(scale[at], -beta) - factor * xa[at] * sum);
            }
        });
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
        int n = x.Shape[0], c = x.Shape[1], inner = x.Shape.SizeFrom(2);
        long m = (long)n * inner;
        var xa = Array(x); var ya = Array(y); var g = Array(gamma); var b = Array(beta);
        var rm = Array(runningMean); var rv = Array(runningVariance);
        var sm = Array(savedMean); var sis = Array(savedInvStd);
        For(c, ch =>
        {
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
        });
    }

    public void BatchNormForwardInference(Tensor x, Tensor gamma, Tensor beta, Tensor mean, Tensor variance, float epsilon, Tensor y)
    {
        int n = x.Shape[0], c = x.Shape[1], inner = x.Shape.SizeFrom(2);
        var xa = Array(x); var ya = Array(y); var g = Array(gamma); var b = Array(beta);
        var mu = Array(mean); var va = Array(variance);
        For(n * c, row =>
        {
            int ch = row % c;
            double gain = g[ch] / Math.Sqrt((double)va[ch] + epsilon), center = mu[ch], shift = b[ch];
            int start = row * inner;
            for (int i = start; i < start + inner; i++) ya[i] = (float)(gain * (xa[i] - center) + shift);
        });
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
        int n = x.Shape[0], c = x.Shape[1], inner = x.Shape.SizeFrom(2);
        long m = (long)n * inner;
        var xa = Array(x); var dya = Array(dy); var g = Array(gamma);
        var sm = Array(savedMean); var sis = Array(savedInvStd);
        var dxa = Array(dx); var dga = Array(dgamma); var dba = Array(dbeta);
        For(c, ch =>
        {
            double mean = sm[ch], invStd = sis[ch];
            double sumDy = 0, sumDyXhat = 0;
            for (int s = 0; s < n; s++)
            {
                int start = (s * c + ch) * inner;
                for (int i = start; i < start + inner; i++)
                {
                    sumDy += dya[i];
                    sumDyXhat += dya[i] * ((xa[i] - mean) * invStd);
                }
            }
            dba[ch] = (float)sumDy;
            dga[ch] = (float)sumDyXhat;
            double k = g[ch] * invStd / m;
            for (int s = 0; s < n; s++)
            {
                int start = (s * c + ch) * inner;
                for (int i = start; i < start + inner; i++)
                    dxa[i] = (float)(k * (m * (double)dya[i] - sumDy - (xa[i] - mean) * invStd * sumDyXhat));
            }
        });
    }
}
