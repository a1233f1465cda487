using MLNet.ConvNet.Backends.Cpu;
using MLNet.ConvNet.Ops;
using MLNet.ConvNet.Tests.TestKit;
using Xunit;

namespace MLNet.ConvNet.Tests;

public class Im2ColTests
{
    [Theory]
    [InlineData(ConvolutionMode.CrossCorrelation, new float[] { 1, 2, 3, 4, 5, 2, 3, 4, 5, 6, 3, 4, 5, 6, 7 }, new float[] { 14, 20, 26, 32, 38 })]
    [InlineData(ConvolutionMode.Convolution, new float[] { 3, 4, 5, 6, 7, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5 }, new float[] { 10, 16, 22, 28, 34 })]
    public void SeedPatchesAsColumns(ConvolutionMode mode, float[] expectedCols, float[] expectedY)
    {
        // The seed's picture: x = [1..7], a 3-tap kernel; each output position's patch is one column, so
        // cols is 3 x 5 and w x cols is the convolution. Convolution mode reads the taps flipped (row k = tap 2-k).
        var x = Tensor.FromHost([1f, 2, 3, 4, 5, 6, 7], 1, 1, 7);
        var options = new ConvolutionOptions { Mode = mode };
        var cols = Im2Col.Forward(x, [3], options);
        Assert.Equal(new Shape(1, 3, 5), cols.Shape);
        GradCheck.AssertExact(expectedCols, cols, $"im2col {mode}");
        var w = Tensor.FromHost([1f, 2, 3], 1, 3);
        var y = Tensor.Zeros(new Shape(1, 5));
        CpuBackend.Default.MatMul(w, false, cols.Reshape(3, 5), false, y);
        GradCheck.AssertExact(expectedY, y, "w x cols");
        GradCheck.AssertExact(expectedY, Convolution.Forward(x, w.Reshape(1, 1, 3), options: options), "conv");
    }

    public static TheoryData<int> Seeds => new(Enumerable.Range(0, 18).Select(s => s % 6 + 36 * (s / 6)));

    /// <summary>Random cases with one group (im2col's own restriction): every rank and both modes.</summary>
    private static ConvCase Draw(int seed) => ConvCase.Draw(seed) is var c && c.Groups == 1 ? c
        : throw new InvalidOperationException($"seed {seed} has groups {c.Groups}");

    [Theory]
    [MemberData(nameof(Seeds))]
    public void Im2ColMatchesDefinition(int seed)
    {
        var cs = Draw(seed);
        var x = TestData.Uniform(new Random(seed), cs.XShape.Length);
        var cols = Im2Col.Forward(Tensor.FromHost(x, cs.XShape), cs.K, cs.Options);
        Assert.Equal(new Shape(cs.N, cs.C * cs.WShape.SizeFrom(2), cs.YShape.SizeFrom(2)), cols.Shape);
        // im2col only copies values: exact.
        Assert.Equal(NaiveConv.Im2Col(cs, TestData.ToDouble(x)), TestData.ToDouble(cols));
    }

    [Theory]
    [MemberData(nameof(Seeds))]
    public void ConvolutionIsFilterTimesColumns(int seed)
    {
        var cs = Draw(seed);
        var rng = new Random(seed);
        float[] x = TestData.Uniform(rng, cs.XShape.Length), w = TestData.Uniform(rng, cs.WShape.Length);
        var cols = Im2Col.Forward(Tensor.FromHost(x, cs.XShape), cs.K, cs.Options).ToHost();
        int rows = cs.C * cs.WShape.SizeFrom(2), yv = cs.YShape.SizeFrom(2);
        var product = new float[cs.N * cs.O * yv];
        for (int n = 0; n < cs.N; n++)
        {
            var y = Tensor.Zeros(new Shape(cs.O, yv));
            CpuBackend.Default.MatMul(Tensor.FromHost(w, cs.O, rows), false, Tensor.FromHost(cols.AsSpan(n * rows * yv, rows * yv), new Shape(rows, yv)), false, y);
            y.ToHost().CopyTo(product, n * cs.O * yv);
        }
        var conv = Convolution.Forward(Tensor.FromHost(x, cs.XShape), Tensor.FromHost(w, cs.WShape), options: cs.Options).ToHost();
        var want = NaiveConv.Forward(cs, TestData.ToDouble(x), TestData.ToDouble(w));
        GradCheck.AssertClose(product, want, $"W x im2col {cs}");
        GradCheck.AssertClose(conv, want, $"conv {cs}");
    }

    [Theory]
    [MemberData(nameof(Seeds))]
    public void Col2ImIsTheAdjointOfIm2Col(int seed)
    {
        // <c, im2col(x)> == <col2im(c), x>, both sides summed in float64. im2col copies exactly; col2im adds up
        // to prod(K) float32 values per cell, so the two sides agree to ~1e-6 of the sum of |terms|.
        var cs = Draw(seed);
        var rng = new Random(seed);
        float[] x = TestData.Uniform(rng, cs.XShape.Length);
        var colsShape = new Shape(cs.N, cs.C * cs.WShape.SizeFrom(2), cs.YShape.SizeFrom(2));
        float[] c = TestData.Uniform(rng, colsShape.Length);
        double[] im = TestData.ToDouble(Im2Col.Forward(Tensor.FromHost(x, cs.XShape), cs.K, cs.Options));
        double[] back = TestData.ToDouble(Im2Col.Backward(Tensor.FromHost(c, colsShape), cs.XShape, cs.K, cs.Options));
        double left = GradCheck.Dot(TestData.ToDouble(c), im), right = GradCheck.Dot(back, TestData.ToDouble(x));
        double scale = c.Zip(im, (a, b) => Math.Abs(a * b)).Sum();
        Assert.True(Math.Abs(left - right) <= 1e-5 * scale + 1e-9, $"{cs}: <c, im2col x> = {left} but <col2im c, x> = {right}");
        // And col2im against the definition's transpose (cols entries summed onto their cells).
        var want = new double[x.Length];
        var probe = new double[x.Length];
        for (int i = 0; i < x.Length; i++)
        {
            probe[i] = 1;
            var colsOfUnit = NaiveConv.Im2Col(cs, probe);
            want[i] = GradCheck.Dot(colsOfUnit, TestData.ToDouble(c));
            probe[i] = 0;
        }
        GradCheck.AssertClose(Array.ConvertAll(back, v => (float)v), want, $"col2im {cs}");
    }

    [Fact]
    public void Im2ColRejectsGroups()
    {
        var e = Assert.Throws<ArgumentException>(() => Im2Col.Forward(Tensor.Zeros(new Shape(1, 2, 5)), [3], new ConvolutionOptions { Groups = 2 }));
        Assert.Equal("groups", e.ParamName);
    }
}
