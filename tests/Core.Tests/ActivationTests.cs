using MLNet.ConvNet.Ops;
using MLNet.ConvNet.Tests.TestKit;
using Xunit;

namespace MLNet.ConvNet.Tests;

public class ActivationTests
{
    /// <summary>Each activation from its definition, in double.</summary>
    private static double Reference(ActivationKind kind, double alpha, double x) => kind switch
    {
        ActivationKind.ReLU => Math.Max(0, x),
        ActivationKind.LeakyReLU => x > 0 ? x : alpha * x,
        ActivationKind.ELU => x > 0 ? x : alpha * (Math.Exp(x) - 1),
        ActivationKind.Sigmoid => 1 / (1 + Math.Exp(-x)),
        ActivationKind.Tanh => Math.Tanh(x),
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    private static double[] Reference(ActivationKind kind, double alpha, double[] x) => Array.ConvertAll(x, v => Reference(kind, alpha, v));

    public static TheoryData<ActivationKind, float?, int[]> Cases => new()
    {
        { ActivationKind.ReLU, null, new[] { 3, 4, 5, 6 } },
        { ActivationKind.LeakyReLU, null, new[] { 2, 50 } },
        { ActivationKind.LeakyReLU, 0.2f, new[] { 2, 3, 4, 5, 6 } },
        { ActivationKind.ELU, null, new[] { 4, 3, 7 } },
        { ActivationKind.ELU, 0.5f, new[] { 40_000 } },   // more than one parallel block
        { ActivationKind.Sigmoid, null, new[] { 5, 9, 9 } },
        { ActivationKind.Tanh, null, new[] { 3, 100 } },
        { ActivationKind.Tanh, null, new[] { 35_000 } },
    };

    /// <summary>
    /// Uniform in [-4, -0.05] ∪ [0.05, 4]: the ReLU family has a kink at 0 where finite differences are
    /// meaningless, so inputs keep 0.05 away from it (h = 1e-6 never crosses it).
    /// </summary>
    private static float[] AwayFromZero(Random rng, int n)
    {
        var a = new float[n];
        for (int i = 0; i < n; i++)
        {
            double magnitude = 0.05 + rng.NextDouble() * 3.95;
            a[i] = (float)(rng.Next(2) == 0 ? -magnitude : magnitude);
        }
        return a;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void ForwardMatchesDefinition(ActivationKind kind, float? alpha, int[] shape)
    {
        var rng = new Random((int)kind * 10 + shape.Length);
        var data = TestData.Uniform(rng, new Shape(shape).Length, 6f);
        var y = Activation.Forward(kind, Tensor.FromHost(data, shape), alpha);
        Assert.Equal(new Shape(shape), y.Shape);
        // Each value is one function evaluation rounded to float (Tanh through TensorPrimitives, within a few
        // ulps): 1e-6 of the output's scale.
        GradCheck.AssertClose(y.ToHost(), Reference(kind, alpha ?? Activation.DefaultAlpha(kind), TestData.ToDouble(data)), $"{kind} y", relTol: 1e-6);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void BackwardMatchesFiniteDifferences(ActivationKind kind, float? alpha, int[] shape)
    {
        var rng = new Random((int)kind * 100 + shape.Length);
        int length = Math.Min(new Shape(shape).Length, 2000); // finite differences cost one call per input
        var data = AwayFromZero(rng, length);
        var dyData = TestData.Uniform(rng, length);
        var x = Tensor.FromHost(data, length);
        var y = Activation.Forward(kind, x, alpha);
        var dx = Activation.Backward(kind, x, y, Tensor.FromHost(dyData, length), alpha);
        double a = alpha ?? Activation.DefaultAlpha(kind);
        var want = GradCheck.Numeric(v => Reference(kind, a, v), TestData.ToDouble(data), TestData.ToDouble(dyData));
        // Default tolerance (1e-4 of the largest gradient): Sigmoid and Tanh use the float y, whose rounding
        // (~6e-8) is the only error; the rest work in double.
        GradCheck.AssertClose(dx.ToHost(), want, $"{kind} dx");
    }

    [Theory]
    [InlineData(ActivationKind.ReLU, 0f)]
    [InlineData(ActivationKind.LeakyReLU, 0.01f)]
    public void KinkUsesTheLeftSlope(ActivationKind kind, float slope)
    {
        // The derivative at exactly 0 is taken from the left (cuDNN and PyTorch use 0 for ReLU).
        var x = Tensor.FromHost([0f], 1);
        var dx = Activation.Backward(kind, x, Activation.Forward(kind, x), Tensor.FromHost([2f], 1));
        Assert.Equal(2f * slope, dx.ToHost()[0]);
    }

    [Theory]
    [InlineData(ActivationKind.Sigmoid)]
    [InlineData(ActivationKind.Tanh)]
    [InlineData(ActivationKind.ELU)]
    [InlineData(ActivationKind.LeakyReLU)]
    [InlineData(ActivationKind.ReLU)]
    public void StableForLargeInputs(ActivationKind kind)
    {
        float[] data = [-1000f, -100f, -30f, 30f, 100f, 1000f, float.MaxValue, -float.MaxValue];
        var x = Tensor.FromHost(data, data.Length);
        var y = Activation.Forward(kind, x);
        var got = y.ToHost();
        double a = Activation.DefaultAlpha(kind);
        for (int i = 0; i < data.Length; i++)
        {
            float want = (float)Reference(kind, a, data[i]);
            Assert.True(float.IsFinite(got[i]), $"{kind}({data[i]}) = {got[i]}");
            // Sigmoid(-100) is a float subnormal (~3.7e-44): allow one subnormal step there.
            Assert.True(Math.Abs(got[i] - want) <= Math.Abs(want) * 1e-6 + 1.5e-45, $"{kind}({data[i]}) = {got[i]}, expected {want}");
        }
        var dx = Activation.Backward(kind, x, y, Tensor.FromHost(Enumerable.Repeat(1f, data.Length).ToArray(), data.Length)).ToHost();
        Assert.All(dx, v => Assert.True(float.IsFinite(v) && v >= 0, $"{kind}: gradient {v}"));
    }

    [Theory]
    [InlineData(ActivationKind.ReLU)]
    [InlineData(ActivationKind.LeakyReLU)]
    [InlineData(ActivationKind.ELU)]
    [InlineData(ActivationKind.Sigmoid)]
    [InlineData(ActivationKind.Tanh)]
    public void NaNPropagates(ActivationKind kind)
    {
        var x = Tensor.FromHost([1f, float.NaN, -1f], 3);
        var y = Activation.Forward(kind, x);
        Assert.True(float.IsNaN(y.ToHost()[1]));
        var dx = Activation.Backward(kind, x, y, Tensor.FromHost([1f, 1f, 1f], 3)).ToHost();
        Assert.True(float.IsNaN(dx[1]), $"{kind}: dx at NaN is {dx[1]}");
        Assert.False(float.IsNaN(dx[0]) || float.IsNaN(dx[2]));
    }

    [Theory]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    public void RejectsNonFiniteAlpha(float alpha)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Activation.Forward(ActivationKind.ELU, Tensor.Zeros(new Shape(2, 2)), alpha));
        Assert.Equal("alpha", e.ParamName);
        Assert.Contains("ELU", e.Message);
    }

    [Fact]
    public void RejectsUnknownKind()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Activation.Forward((ActivationKind)99, Tensor.Zeros(new Shape(2))));
        Assert.Equal("kind", e.ParamName);
    }

    [Fact]
    public void BackwardRejectsMismatchedShapes()
    {
        var x = Tensor.Zeros(new Shape(2, 3));
        var e = Assert.Throws<ArgumentException>(() => Activation.Backward(ActivationKind.Tanh, x, x, Tensor.Zeros(new Shape(6))));
        Assert.Equal("dy", e.ParamName);
        Assert.Contains("[6]", e.Message);
        Assert.Contains("[2, 3]", e.Message);
    }
}
