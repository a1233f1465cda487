using MLNet.ConvNet.Backends.Cpu.Kernels;
using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace MLNet.ConvNet.Backends.Cpu;

// The fast path of training-mode batch norm: the same two-pass statistics and formulas as the reference
// (CpuBackend.Normalization.cs), but each (image, channel) row is summed with float SIMD (TensorPrimitives)
// and only the row sums are accumulated in double, image by image in order; the element-wise passes run in
// float. One channel per parallel task, so no sum is split across threads.
public sealed partial class CpuBackend
{
    private void FastBatchNormForwardTraining(Tensor x, Tensor gamma, Tensor beta, float epsilon, float momentum,
        Tensor runningMean, Tensor runningVariance, Tensor y, Tensor savedMean, Tensor savedInvStd, bool relu = false) =>
        For(x.Shape[1], new FastBatchNormTrainingBody(x, gamma, beta, epsilon, momentum, runningMean, runningVariance, y, savedMean, savedInvStd, relu));

    /// <summary>
    /// The arguments of a training-mode batch norm forward, read as [N, C, inner]; one channel per index. With
    /// <paramref name="relu"/> each output row goes through the ReLU while it is still in the first-level cache.
    /// </summary>
    private readonly struct FastBatchNormTrainingBody(Tensor x, Tensor gamma, Tensor beta, float epsilon, float momentum,
        Tensor runningMean, Tensor runningVariance, Tensor y, Tensor savedMean, Tensor savedInvStd, bool relu) : IParallelBody
    {
        private readonly int n = x.Shape[0], c = x.Shape[1], inner = x.Shape.SizeFrom(2);
        private readonly float[] xa = Array(x), ya = Array(y), g = Array(gamma), b = Array(beta), rm = Array(runningMean),
            rv = Array(runningVariance), sm = Array(savedMean), sis = Array(savedInvStd);

        public void Run(int ch)
        {
            long m = (long)n * inner;
            double sum = 0;
            for (int s = 0; s < n; s++) sum += Reductions.Sum(xa.AsSpan((s * c + ch) * inner, inner));
            double mean = sum / m;
            float meanF = (float)mean;
            // Squared deviations from the float mean, each row in float, rows in double: still two passes.
            double squares = 0, shiftSum = 0;
            for (int s = 0; s < n; s++)
            {
                var row = xa.AsSpan((s * c + ch) * inner, inner);
                shiftSum += Reductions.Sum(row) - (double)meanF * inner;
                squares += SumSquaredDeviations(row, meanF);
            }
            // Correct for the rounding of the mean: sum (x - meanF)^2 = sum (x - mean)^2 + m (mean - meanF)^2.
            double delta = shiftSum / m;
            squares = Math.Max(0, squares - m * delta * delta);
            double variance = squares / m;
            double invStd = 1.0 / Math.Sqrt(variance + epsilon);
            float gain = (float)(g[ch] * invStd), shift = b[ch];
            for (int s = 0; s < n; s++)
            {
                int start = (s * c + ch) * inner;
                var yRow = ya.AsSpan(start, inner);
                Affine(xa.AsSpan(start, inner), meanF, gain, shift, yRow);
                if (relu) TensorPrimitives.Max(yRow, 0f, yRow); // ActivationForward's ReLU (NaN propagates)
            }
            sm[ch] = (float)mean;
            sis[ch] = (float)invStd;
            double unbiased = m > 1 ? squares / (m - 1) : variance;
            rm[ch] = (float)((1.0 - momentum) * rm[ch] + (double)momentum * mean);
            rv[ch] = (float)((1.0 - momentum) * rv[ch] + (double)momentum * unbiased);
        }
    }

    /// <summary>y = (x - center) * a + b; centering first keeps values near the mean from cancelling against b.</summary>
    private static void Affine(ReadOnlySpan<float> x, float center, float a, float b, Span<float> y)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var vc = Vector256.Create(center); var va = Vector256.Create(a); var vb = Vector256.Create(b);
            for (; i <= x.Length - 8; i += 8) ((Vector256.Create(x.Slice(i, 8)) - vc) * va + vb).CopyTo(y.Slice(i, 8));
        }
        for (; i < x.Length; i++) y[i] = (x[i] - center) * a + b;
    }

    /// <summary>sum over the row of (x - mean)^2 in float SIMD.</summary>
    private static double SumSquaredDeviations(ReadOnlySpan<float> row, float mean)
    {
        Span<float> chunk = stackalloc float[256];
        double total = 0;
        for (int i = 0; i < row.Length; i += chunk.Length)
        {
            int len = Math.Min(chunk.Length, row.Length - i);
            var part = chunk[..len];
            TensorPrimitives.Subtract(row.Slice(i, len), mean, part);
            total += Reductions.SumOfSquares(part);
        }
        return total;
    }

    private void FastBatchNormBackward(Tensor x, Tensor dy, Tensor gamma, Tensor savedMean, Tensor savedInvStd,
        Tensor dx, Tensor dgamma, Tensor dbeta, Tensor? reluOutput = null) =>
        For(x.Shape[1], new FastBatchNormBackwardBody(x, dy, gamma, savedMean, savedInvStd, dx, dgamma, dbeta, reluOutput));

    /// <summary>
    /// dx = gamma invstd / m (m dy - dbeta - xhat dgamma) = A dy + B (x - mean) + C with
    ///   A = gamma invstd,  B = -gamma invstd^2 dgamma / m,  C = -gamma invstd dbeta / m; one channel per index.
    /// With <paramref name="reluOutput"/> (y of BatchNormReluForwardTraining) dy is first masked by the ReLU's backward
    /// (ReluBackward, the same products as ActivationBackward) into dx, which then serves as dy.
    /// </summary>
    private readonly struct FastBatchNormBackwardBody(Tensor x, Tensor dy, Tensor gamma, Tensor savedMean, Tensor savedInvStd,
        Tensor dx, Tensor dgamma, Tensor dbeta, Tensor? reluOutput) : IParallelBody
    {
        private readonly int n = x.Shape[0], c = x.Shape[1], inner = x.Shape.SizeFrom(2);
        private readonly float[] xa = Array(x), dya = Array(dy), g = Array(gamma), sm = Array(savedMean), sis = Array(savedInvStd),
            dxa = Array(dx), dga = Array(dgamma), dba = Array(dbeta);
        private readonly float[]? ya = reluOutput is null ? null : Array(reluOutput);

        public void Run(int ch)
        {
            long m = (long)n * inner;
            double mean = sm[ch], invStd = sis[ch];
            double sumDy = 0, sumDyX = 0;
            for (int s = 0; s < n; s++)
            {
                int start = (s * c + ch) * inner;
                var dyRow = dya.AsSpan(start, inner);
                if (ya is not null)
                {
                    var masked = dxa.AsSpan(start, inner);
                    ReluBackward(ya.AsSpan(start, inner), dyRow, masked);
                    dyRow = masked;
                }
                sumDy += Reductions.Sum(dyRow);
                sumDyX += Reductions.Dot(dyRow, xa.AsSpan(start, inner));
            }
            // sum dy xhat = invstd (sum dy x - mean sum dy)
            double sumDyXhat = invStd * (sumDyX - mean * sumDy);
            dba[ch] = (float)sumDy;
            dga[ch] = (float)sumDyXhat;
            double k = g[ch] * invStd / m;
            float a = (float)(k * m), bx = (float)(-k * invStd * sumDyXhat), cc = (float)(-k * sumDy);
            if (ya is not null) { MaskedRows(ch, (float)mean, a, bx, cc); return; }
            for (int s = 0; s < n; s++)
            {
                int start = (s * c + ch) * inner;
                var dxRow = dxa.AsSpan(start, inner);
                Affine(xa.AsSpan(start, inner), (float)mean, bx, cc, dxRow);
                TensorPrimitives.MultiplyAdd(dya.AsSpan(start, inner), a, dxRow, dxRow);
            }
        }

        /// <summary>dx = a dy + (bx (x - mean) + cc) where dx already holds the masked dy: the affine part goes through a chunk on the stack.</summary>
        private void MaskedRows(int ch, float mean, float a, float bx, float cc)
        {
            Span<float> part = stackalloc float[256];
            for (int s = 0; s < n; s++)
            {
                int start = (s * c + ch) * inner;
                for (int i = 0; i < inner; i += part.Length)
                {
                    int len = Math.Min(part.Length, inner - i);
                    var affine = part[..len];
                    var dxChunk = dxa.AsSpan(start + i, len);
                    Affine(xa.AsSpan(start + i, len), mean, bx, cc, affine);
                    TensorPrimitives.MultiplyAdd(dxChunk, a, affine, dxChunk);
                }
            }
        }
    }
}
