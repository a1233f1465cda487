using MLNet.ConvNet.Backends.Cpu;
using MLNet.ConvNet.Ops;
using MLNet.ConvNet.Tests.TestKit;
using Xunit;

namespace MLNet.ConvNet.Tests;

public class DropoutTests
{
    private const int Count = 100_000;

    private static float[] Mask(float p, ulong seed, int length = Count, CpuBackend? backend = null)
    {
        var x = Tensor.FromHost(new float[length], new Shape(length), backend);
        Dropout.Forward(x, p, seed, out var mask);
        return mask.ToHost();
    }

    /// <summary>Asserts that count is within 5 standard deviations of a Binomial(trials, q) mean.</summary>
    private static void AssertBinomial(int count, int trials, double q, string what)
    {
        double mean = trials * q, sigma = Math.Sqrt(trials * q * (1 - q));
        Assert.True(Math.Abs(count - mean) <= 5 * sigma, $"{what}: {count} of {trials}, expected {mean:F0} ± {5 * sigma:F0} (5 sigma)");
    }

    [Theory]
    [InlineData(0.1f)]
    [InlineData(0.5f)]
    [InlineData(0.9f)]
    [InlineData(0.01f)]
    public void DropsAboutAFractionP(float p)
    {
        var mask = Mask(p, seed: 42);
        AssertBinomial(mask.Count(v => v == 0f), Count, p, $"p = {p}: dropped");
    }

    [Theory]
    [InlineData(0.2f)]
    [InlineData(0.5f)]
    public void DropsAreIndependentAcrossNeighboursAndSeeds(float p)
    {
        // A weak hash shows up as correlated neighbours or correlated seeds; both pairs should be dropped with
        // probability p^2.
        var a = Mask(p, seed: 7);
        var b = Mask(p, seed: 8);
        int neighbours = 0, seeds = 0;
        for (int i = 0; i + 1 < Count; i++) if (a[i] == 0 && a[i + 1] == 0) neighbours++;
        for (int i = 0; i < Count; i++) if (a[i] == 0 && b[i] == 0) seeds++;
        AssertBinomial(neighbours, Count - 1, p * p, "neighbours both dropped");
        AssertBinomial(seeds, Count, p * p, "seeds 7 and 8 both dropped");
    }

    [Theory]
    [InlineData(0.3f, 1UL)]
    [InlineData(0.5f, 0UL)]
    [InlineData(0.75f, ulong.MaxValue)]
    public void KeptValuesAreScaledByExactlyOneOverOneMinusP(float p, ulong seed)
    {
        var data = TestData.Uniform(new Random(2), 10_000, 5f);
        var y = Dropout.Forward(Tensor.FromHost(data, data.Length), p, seed, out var maskT).ToHost();
        var mask = maskT.ToHost();
        float keep = 1f / (1f - p);
        int kept = 0;
        for (int i = 0; i < data.Length; i++)
        {
            if (mask[i] == 0f) Assert.Equal(0f, y[i]);
            else
            {
                kept++;
                Assert.Equal(keep, mask[i]);
                Assert.Equal(data[i] * keep, y[i]);
            }
        }
        Assert.InRange(kept, 1, data.Length - 1);
    }

    [Fact]
    public void ZeroProbabilityIsTheIdentity()
    {
        var data = TestData.Uniform(new Random(3), 5000, 3f);
        var y = Dropout.Forward(Tensor.FromHost(data, 10, 500), 0f, 99, out var mask);
        Assert.Equal(data, y.ToHost());
        Assert.All(mask.ToHost(), v => Assert.Equal(1f, v));
    }

    [Fact]
    public void SameSeedGivesSameMaskAndOtherSeedsDiffer()
    {
        var first = Mask(0.5f, 123);
        Assert.Equal(first, Mask(0.5f, 123));
        foreach (ulong other in new ulong[] { 124, 0, 123UL << 32 })
        {
            // Independent masks with p = 0.5 differ in half the places.
            int differ = first.Zip(Mask(0.5f, other)).Count(t => t.First != t.Second);
            AssertBinomial(differ, Count, 0.5, $"seed 123 vs {other}: differing entries");
        }
    }

    [Fact]
    public void MaskDoesNotDependOnThreadCountOrShape()
    {
        var one = Mask(0.4f, 2024, backend: new CpuBackend(maxThreads: 1));
        Assert.Equal(one, Mask(0.4f, 2024, backend: CpuBackend.Default));
        Assert.Equal(one, Mask(0.4f, 2024, backend: new CpuBackend(maxThreads: 3)));
        // The mask is a function of the flat index: a prefix of a longer tensor's mask is the shorter one's mask.
        Assert.Equal(one.AsSpan(0, 1000).ToArray(), Mask(0.4f, 2024, length: 1000));
    }

    [Fact]
    public void BackwardIsDyTimesMask()
    {
        var rng = new Random(4);
        var x = Tensor.FromHost(TestData.Uniform(rng, 600), 2, 3, 10, 10);
        Dropout.Forward(x, 0.35f, 77, out var mask);
        var dyData = TestData.Uniform(rng, 600);
        var dx = Dropout.Backward(Tensor.FromHost(dyData, 2, 3, 10, 10), mask).ToHost();
        var m = mask.ToHost();
        for (int i = 0; i < dyData.Length; i++) Assert.Equal(dyData[i] * m[i], dx[i]);
        Assert.Contains(0f, dx);
    }

    [Fact]
    public void NaNIsNotHiddenByTheMask()
    {
        // y = x * mask, so NaN * 0 is still NaN: a dropped NaN does not vanish silently.
        var y = Dropout.Forward(Tensor.FromHost(Enumerable.Repeat(float.NaN, 64).ToArray(), 64), 0.5f, 1, out var mask).ToHost();
        Assert.Contains(0f, mask.ToHost());
        Assert.All(y, v => Assert.True(float.IsNaN(v)));
    }

    [Theory]
    [InlineData(1f)]
    [InlineData(-0.1f)]
    [InlineData(float.NaN)]
    [InlineData(1.5f)]
    public void RejectsProbabilityOutsideRange(float p)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Dropout.Forward(Tensor.Zeros(new Shape(2, 3)), p, 1, out _));
        Assert.Equal("p", e.ParamName);
        Assert.Contains(p.ToString(), e.Message);
    }

    [Fact]
    public void BackwardRejectsMismatchedGradient()
    {
        Dropout.Forward(Tensor.Zeros(new Shape(2, 3)), 0.5f, 1, out var mask);
        var e = Assert.Throws<ArgumentException>(() => Dropout.Backward(Tensor.Zeros(new Shape(3, 2)), mask));
        Assert.Equal("dy", e.ParamName);
        Assert.Contains("[3, 2]", e.Message);
        Assert.Contains("[2, 3]", e.Message);
    }
}
