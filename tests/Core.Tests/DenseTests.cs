using MLNet.ConvNet.Ops;
using MLNet.ConvNet.Tests.TestKit;
using Xunit;

namespace MLNet.ConvNet.Tests;

public class DenseTests
{
    /// <summary>y[n, o] = b[o] + sum_i w[o, i] x[n, i], with x's trailing dimensions flattened.</summary>
    private static double[] Reference(double[] x, double[] w, double[]? b, int n, int inputs, int outputs)
    {
        var y = new double[n * outputs];
        for (int s = 0; s < n; s++)
            for (int o = 0; o < outputs; o++)
            {
                double sum = b?[o] ?? 0;
                for (int i = 0; i < inputs; i++) sum += w[o * inputs + i] * x[s * inputs + i];
                y[s * outputs + o] = sum;
            }
        return y;
    }

    [Fact]
    public void SeedMatrixProduct()
    {
        // Knet: w = reshape(1:6, (2,3)) = [1 3 5; 2 4 6], x = [1, 2, 3]: w * x = [22, 28].
        // Our w is [Out = 2, In = 3] row-major; x is one row [1, 3].
        var w = Tensor.FromHost([1f, 3, 5, 2, 4, 6], 2, 3);
        var x = Tensor.FromHost([1f, 2, 3], 1, 3);
        GradCheck.AssertExact([22f, 28f], Dense.Forward(x, w), "seed w * x");
    }

    public static TheoryData<int[], int, bool> Cases => new()
    {
        { new[] { 1, 3 }, 2, true },
        { new[] { 5, 7 }, 4, false },
        { new[] { 4, 2, 3, 3 }, 6, true },    // [N, C, H, W] flattened to 18 features
        { new[] { 3, 65 }, 33, true },        // sizes past one SIMD width
        { new[] { 2, 1 }, 1, false },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void ForwardMatchesLoop(int[] xShape, int outputs, bool withBias)
    {
        var rng = new Random(xShape.Sum() + outputs);
        int n = xShape[0], inputs = new Shape(xShape).SizeFrom(1);
        var x = TestData.Uniform(rng, n * inputs);
        var w = TestData.Uniform(rng, outputs * inputs);
        var b = withBias ? TestData.Uniform(rng, outputs) : null;
        var y = Dense.Forward(Tensor.FromHost(x, xShape), Tensor.FromHost(w, outputs, inputs), b is null ? null : Tensor.FromHost(b, outputs));
        Assert.Equal(new Shape(n, outputs), y.Shape);
        // Sums of up to 65 float products: 1e-5 of the output's scale covers sqrt(65) ulps with a wide margin.
        GradCheck.AssertClose(y.ToHost(), Reference(TestData.ToDouble(x), TestData.ToDouble(w), b is null ? null : TestData.ToDouble(b), n, inputs, outputs), "dense y", relTol: 1e-5);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void BackwardMatchesFiniteDifferences(int[] xShape, int outputs, bool withBias)
    {
        var rng = new Random(xShape.Sum() * 3 + outputs);
        int n = xShape[0], inputs = new Shape(xShape).SizeFrom(1);
        var x = TestData.Uniform(rng, n * inputs);
        var w = TestData.Uniform(rng, outputs * inputs);
        var b = TestData.Uniform(rng, outputs);
        var dyData = TestData.Uniform(rng, n * outputs);
        var xT = Tensor.FromHost(x, xShape);
        var wT = Tensor.FromHost(w, outputs, inputs);
        var dy = Tensor.FromHost(dyData, n, outputs);
        double[] xd = TestData.ToDouble(x), wd = TestData.ToDouble(w), bd = TestData.ToDouble(b), dyd = TestData.ToDouble(dyData);
        double[]? bias = withBias ? bd : null;

        var dx = Dense.BackwardData(xT.Shape, wT, dy);
        Assert.Equal(xT.Shape, dx.Shape);
        // Default tolerance (1e-4 of the largest gradient): each gradient is a float sum of at most 65 products.
        GradCheck.AssertClose(dx.ToHost(), GradCheck.Numeric(v => Reference(v, wd, bias, n, inputs, outputs), xd, dyd), "dense dx");
        var dw = Dense.BackwardWeight(xT, dy);
        Assert.Equal(new Shape(outputs, inputs), dw.Shape);
        GradCheck.AssertClose(dw.ToHost(), GradCheck.Numeric(v => Reference(xd, v, bias, n, inputs, outputs), wd, dyd), "dense dW");
        GradCheck.AssertClose(Dense.BackwardBias(dy).ToHost(), GradCheck.Numeric(v => Reference(xd, wd, v, n, inputs, outputs), bd, dyd), "dense db");
    }

    // ---- bad arguments ----

    [Fact]
    public void RejectsInFeatureMismatch()
    {
        var e = Assert.Throws<ArgumentException>(() => Dense.Forward(Tensor.Zeros(new Shape(2, 4)), Tensor.Zeros(new Shape(3, 5))));
        Assert.Equal("w", e.ParamName);
        Assert.Contains("[2, 4]", e.Message);
        Assert.Contains("[3, 5]", e.Message);
        e = Assert.Throws<ArgumentException>(() => Dense.BackwardData(new Shape(2, 2, 2), Tensor.Zeros(new Shape(3, 5)), Tensor.Zeros(new Shape(2, 3))));
        Assert.Equal("w", e.ParamName);
        Assert.Contains("[2, 2, 2]", e.Message);
    }

    [Fact]
    public void RejectsWeightOfRankOne()
    {
        var e = Assert.Throws<ArgumentException>(() => Dense.Forward(Tensor.Zeros(new Shape(2, 3)), Tensor.Zeros(new Shape(3))));
        Assert.Equal("w", e.ParamName);
        Assert.Contains("[3]", e.Message);
    }

    [Fact]
    public void RejectsInputOfRankOne()
    {
        var e = Assert.Throws<ArgumentException>(() => Dense.Forward(Tensor.Zeros(new Shape(3)), Tensor.Zeros(new Shape(2, 3))));
        Assert.Equal("x", e.ParamName);
        Assert.Contains("[3]", e.Message);
    }

    [Fact]
    public void RejectsBiasOfWrongLength()
    {
        var e = Assert.Throws<ArgumentException>(() => Dense.Forward(Tensor.Zeros(new Shape(2, 3)), Tensor.Zeros(new Shape(4, 3)), Tensor.Zeros(new Shape(3))));
        Assert.Equal("bias", e.ParamName);
        Assert.Contains("[3]", e.Message);
        Assert.Contains("[4]", e.Message);
    }

    [Fact]
    public void BackwardRejectsMismatchedGradient()
    {
        var w = Tensor.Zeros(new Shape(4, 3));
        var e = Assert.Throws<ArgumentException>(() => Dense.BackwardData(new Shape(2, 3), w, Tensor.Zeros(new Shape(2, 5))));
        Assert.Equal("dy", e.ParamName);
        Assert.Contains("[2, 5]", e.Message);
        Assert.Contains("[2, 4]", e.Message);
        e = Assert.Throws<ArgumentException>(() => Dense.BackwardWeight(Tensor.Zeros(new Shape(2, 3)), Tensor.Zeros(new Shape(3, 4))));
        Assert.Equal("dy", e.ParamName);
        Assert.Contains("[3, 4]", e.Message);
        Assert.Contains("[2, 3]", e.Message);
    }
}
