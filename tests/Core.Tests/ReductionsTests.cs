using MLNet.ConvNet.Backends.Cpu.Kernels;
using Xunit;

namespace MLNet.ConvNet.Tests;

/// <summary>
/// Kernels/Reductions: the fixed-order float sums the CPU backend uses where TensorPrimitives would add in the machine's
/// vector width. The Vector256 path and the scalar path must agree bit for bit (the scalar path spells out the order
/// the vector path takes), and both must be as close to the float64 sum as float summation allows.
/// </summary>
public class ReductionsTests
{
    private static float[] Random(Random rng, int n, bool mixedMagnitudes)
    {
        var x = new float[n];
        for (int i = 0; i < n; i++)
        {
            float v = (float)(rng.NextDouble() * 2 - 1);
            x[i] = mixedMagnitudes ? v * MathF.Pow(10, rng.Next(-4, 5)) : v;
        }
        return x;
    }

    public static TheoryData<int> Lengths => new(0, 1, 7, 8, 9, 15, 31, 32, 33, 39, 40, 41, 63, 64, 65, 100, 196, 257, 784, 1000, 4099);

    [Theory]
    [MemberData(nameof(Lengths))]
    public void TheVectorPathAddsInTheScalarPathsOrder(int n)
    {
        var rng = new Random(n + 11);
        foreach (bool mixed in new[] { false, true })
        {
            var x = Random(rng, n, mixed);
            var y = Random(rng, n, mixed);
            Assert.Equal(BitConverter.SingleToInt32Bits(Reductions.SumScalar(x)), BitConverter.SingleToInt32Bits(Reductions.SumVector(x)));
            Assert.Equal(BitConverter.SingleToInt32Bits(Reductions.DotScalar(x, y)), BitConverter.SingleToInt32Bits(Reductions.DotVector(x, y)));
            Assert.Equal(BitConverter.SingleToInt32Bits(Reductions.DotScalar(x, x)), BitConverter.SingleToInt32Bits(Reductions.SumOfSquares(x)));
        }
    }

    /// <summary>
    /// The one-pass kernels of batch norm give the bits of the calls they fuse (the sum, and per block the sum of squares
    /// of the float differences added in double; the ReLU-masked gradient, its sum and its dot product with x) on both
    /// paths, with zeros of both signs, NaN and infinities among the values.
    /// </summary>
    [Theory]
    [MemberData(nameof(Lengths))]
    public void FusedBatchNormPassesHaveTheBitsOfTheCallsTheyReplace(int n)
    {
        var rng = new Random(n + 23);
        foreach (bool special in new[] { false, true })
        {
            var x = Random(rng, n, mixedMagnitudes: true);
            var dy = Random(rng, n, mixedMagnitudes: false);
            var y = Random(rng, n, mixedMagnitudes: false);
            if (special && n > 3)
            {
                y[0] = -0f; y[1] = 0f; y[2] = float.NaN; dy[n - 1] = -0f; dy[n / 2] = float.PositiveInfinity; y[n / 2] = 0.5f;
                if (n > 40) { x[40] = float.NaN; y[n - 2] = float.NaN; }
            }
            float mean = (float)(rng.NextDouble() - 0.5);
            foreach (int block in new[] { 32, 256 })
            {
                double squares = 0;
                for (int start = 0; start < n; start += block)
                {
                    var part = x.AsSpan(start, Math.Min(block, n - start)).ToArray();
                    for (int i = 0; i < part.Length; i++) part[i] -= mean;
                    squares += Reductions.SumOfSquares(part);
                }
                foreach (var (sum, sq) in new[] { Reductions.SumAndSquaredDeviations(x, mean, block), Reductions.SumAndSquaredDeviationsScalar(x, mean, block) })
                {
                    Assert.Equal(BitConverter.SingleToInt32Bits(Reductions.Sum(x)), BitConverter.SingleToInt32Bits(sum));
                    Assert.Equal(BitConverter.DoubleToInt64Bits(squares), BitConverter.DoubleToInt64Bits(sq));
                }
            }
            var expected = new float[n];
            for (int i = 0; i < n; i++) expected[i] = dy[i] * (y[i] > 0 ? 1f : y[i] <= 0 ? 0f : float.NaN);
            foreach (bool vector in new[] { true, false })
            {
                var masked = new float[n];
                var (s, d) = vector ? Reductions.MaskedSumAndDot(y, dy, x, masked) : Reductions.MaskedSumAndDotScalar(y, dy, x, masked);
                Assert.Equal(expected.Select(BitConverter.SingleToInt32Bits), masked.Select(BitConverter.SingleToInt32Bits));
                Assert.Equal(BitConverter.SingleToInt32Bits(Reductions.Sum(expected)), BitConverter.SingleToInt32Bits(s));
                Assert.Equal(BitConverter.SingleToInt32Bits(Reductions.Dot(expected, x)), BitConverter.SingleToInt32Bits(d));
                var (s2, d2) = vector ? Reductions.MaskedSumAndDot(default, dy, x, default) : Reductions.MaskedSumAndDotScalar(default, dy, x, default);
                Assert.Equal(BitConverter.SingleToInt32Bits(Reductions.Sum(dy)), BitConverter.SingleToInt32Bits(s2));
                Assert.Equal(BitConverter.SingleToInt32Bits(Reductions.Dot(dy, x)), BitConverter.SingleToInt32Bits(d2));
            }
        }
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void SumsAreWithinFloatRoundingOfTheFloat64Sums(int n)
    {
        var rng = new Random(n + 5);
        var x = Random(rng, n, mixedMagnitudes: true);
        var y = Random(rng, n, mixedMagnitudes: true);
        double sum = 0, absSum = 0, dot = 0, absDot = 0;
        for (int i = 0; i < n; i++) { sum += x[i]; absSum += Math.Abs(x[i]); dot += (double)x[i] * y[i]; absDot += Math.Abs((double)x[i] * y[i]); }
        // Any order of n float additions is within about n * 2^-24 of the sum of the magnitudes.
        double bound = (n + 1) * Math.Pow(2, -24);
        Assert.InRange(Reductions.Sum(x) - sum, -bound * absSum - 1e-30, bound * absSum + 1e-30);
        Assert.InRange(Reductions.Dot(x, y) - dot, -bound * absDot - 1e-30, bound * absDot + 1e-30);
    }

    [Fact]
    public void NonFiniteValuesComeThrough()
    {
        var x = new float[70];
        x[45] = float.NaN;
        Assert.True(float.IsNaN(Reductions.Sum(x)));
        Assert.True(float.IsNaN(Reductions.SumScalar(x)));
        x[45] = float.PositiveInfinity;
        Assert.Equal(float.PositiveInfinity, Reductions.Sum(x));
        Assert.Equal(float.PositiveInfinity, Reductions.Dot(x, x));
    }

    [Fact]
    public void DotOfSpansOfTwoLengthsIsAnError()
    {
        var e = Assert.Throws<ArgumentException>(() => Reductions.Dot(new float[3], new float[4]));
        Assert.Contains("3 and 4", e.Message);
    }
}
