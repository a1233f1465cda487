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
