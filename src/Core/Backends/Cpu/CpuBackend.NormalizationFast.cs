using MLNet.ConvNet.Backends.Cpu.Kernels;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace MLNet.ConvNet.Backends.Cpu;

// The fast path of training-mode batch norm: the same two-pass statistics and formulas as the reference
// (CpuBackend.Normalization.cs), but each (image, channel) row is summed with float SIMD in a fixed order
// (Kernels/Reductions) and only the row sums are accumulated in double, image by image in order; the element-wise
// passes run in float. Each pass over a row is one loop (the sum and the squares together; the ReLU mask, the sum
// and the dot product together; the affine map and the ReLU together): a row is 14x14 to 28x28 floats, so separate
// calls per row cost about as much as the arithmetic (cnn2bn's first batch norm + ReLU, batch 64: backward 1.3-1.7
// -> 0.7-0.8 ms). One channel per parallel task, so no sum is split across threads.
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

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int ch)
        {
            long m = (long)n * inner;
            double sum = 0;
            for (int s = 0; s < n; s++) sum += Reductions.Sum(xa.AsSpan((s * c + ch) * inner, inner));
            double mean = sum / m;
            float meanF = (float)mean;
            // Squared deviations from the float mean, each row in float (blocks of 256 added in double), rows in
            // double: still two passes over the data, the second reading each row once for its sum and its squares.
            double squares = 0, shiftSum = 0;
            for (int s = 0; s < n; s++)
            {
                var (rowSum, rowSquares) = Reductions.SumAndSquaredDeviations(xa.AsSpan((s * c + ch) * inner, inner), meanF, SquaresBlock);
                shiftSum += rowSum - (double)meanF * inner;
                squares += rowSquares;
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
                Affine(xa.AsSpan(start, inner), meanF, gain, shift, ya.AsSpan(start, inner), relu);
            }
            sm[ch] = (float)mean;
            sis[ch] = (float)invStd;
            double unbiased = m > 1 ? squares / (m - 1) : variance;
            rm[ch] = (float)((1.0 - momentum) * rm[ch] + (double)momentum * mean);
            rv[ch] = (float)((1.0 - momentum) * rv[ch] + (double)momentum * unbiased);
        }
    }

    /// <summary>
    /// The block of the squared deviations' float sums (<see cref="Reductions.SumAndSquaredDeviations"/>): 256, as the
    /// statistics were first computed (a block of differences on the stack), so the bits have not changed since.
    /// </summary>
    private const int SquaresBlock = 256;

    /// <summary>
    /// y = (x - center) * a + b, then with <paramref name="relu"/> max(y, 0) as TensorPrimitives.Max gives it (NaN stays
    /// NaN, -0 becomes +0); centering first keeps values near the mean from cancelling against b. One pass.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Affine(ReadOnlySpan<float> x, float center, float a, float b, Span<float> y, bool relu = false)
    {
        if (y.Length != x.Length) throw new ArgumentException($"Affine needs spans of one length; got {x.Length} and {y.Length}.", nameof(y));
        ref float rx = ref MemoryMarshal.GetReference(x);
        ref float ry = ref MemoryMarshal.GetReference(y);
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var vc = Vector256.Create(center); var va = Vector256.Create(a); var vb = Vector256.Create(b);
            for (; i <= x.Length - 8; i += 8)
            {
                var v = (Vector256.LoadUnsafe(ref rx, (nuint)i) - vc) * va + vb;
                if (relu) v = Relu.Value(v);
                v.StoreUnsafe(ref ry, (nuint)i);
            }
        }
        for (; i < x.Length; i++)
        {
            float v = (Unsafe.Add(ref rx, i) - center) * a + b;
            Unsafe.Add(ref ry, i) = relu ? Relu.Value(v) : v;
        }
    }

    /// <summary>
    /// dx = g * a + ((x - center) * bx + cc) for g = <paramref name="g"/> (which may be dx itself), the same operations
    /// as Affine followed by TensorPrimitives.MultiplyAdd, in one pass.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AffineAdd(ReadOnlySpan<float> g, float a, ReadOnlySpan<float> x, float center, float bx, float cc, Span<float> dx)
    {
        if (g.Length != x.Length || dx.Length != x.Length)
            throw new ArgumentException($"AffineAdd needs spans of one length; got {g.Length}, {x.Length} and {dx.Length}.", nameof(dx));
        ref float rg = ref MemoryMarshal.GetReference(g);
        ref float rx = ref MemoryMarshal.GetReference(x);
        ref float rd = ref MemoryMarshal.GetReference(dx);
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var vc = Vector256.Create(center); var vbx = Vector256.Create(bx); var vcc = Vector256.Create(cc); var va = Vector256.Create(a);
            for (; i <= x.Length - 8; i += 8)
            {
                var t = (Vector256.LoadUnsafe(ref rx, (nuint)i) - vc) * vbx + vcc;
                (Vector256.LoadUnsafe(ref rg, (nuint)i) * va + t).StoreUnsafe(ref rd, (nuint)i);
            }
        }
        for (; i < x.Length; i++) Unsafe.Add(ref rd, i) = Unsafe.Add(ref rg, i) * a + ((Unsafe.Add(ref rx, i) - center) * bx + cc);
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

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int ch)
        {
            long m = (long)n * inner;
            double mean = sm[ch], invStd = sis[ch];
            double sumDy = 0, sumDyX = 0;
            for (int s = 0; s < n; s++)
            {
                // With the ReLU, dy masked by its backward goes to dx, which then serves as dy.
                int start = (s * c + ch) * inner;
                var (rowSum, rowDot) = Reductions.MaskedSumAndDot(ya is null ? default : ya.AsSpan(start, inner), dya.AsSpan(start, inner),
                    xa.AsSpan(start, inner), dxa.AsSpan(start, inner));
                sumDy += rowSum;
                sumDyX += rowDot;
            }
            // sum dy xhat = invstd (sum dy x - mean sum dy)
            double sumDyXhat = invStd * (sumDyX - mean * sumDy);
            dba[ch] = (float)sumDy;
            dga[ch] = (float)sumDyXhat;
            double k = g[ch] * invStd / m;
            float a = (float)(k * m), bx = (float)(-k * invStd * sumDyXhat), cc = (float)(-k * sumDy);
            for (int s = 0; s < n; s++)
            {
                int start = (s * c + ch) * inner;
                var dxRow = dxa.AsSpan(start, inner);
                AffineAdd(ya is null ? dya.AsSpan(start, inner) : dxRow, a, xa.AsSpan(start, inner), (float)mean, bx, cc, dxRow);
            }
        }
    }
}
