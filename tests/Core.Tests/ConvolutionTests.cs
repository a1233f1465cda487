using MLNet.ConvNet.Backends;
using MLNet.ConvNet.Backends.Cpu;
using MLNet.ConvNet.Ops;
using MLNet.ConvNet.Tests.TestKit;
using Xunit;

namespace MLNet.ConvNet.Tests;

// Tolerances: forward and gradients use GradCheck's default, |got - want| <= 1e-4 * max|want| + 1e-6.
// The kernels sum at most a few hundred float32 products per output here (Cg * prod(K) taps, or N * prod(Y)
// positions for the filter gradient), a relative drift of about 1e-6; 1e-4 leaves a wide margin while any
// wrong tap, flip or offset (an O(1) error) fails. The seed's numbers are small integers: compared exactly.

public class ConvolutionTests
{
    private static readonly ConvolutionOptions CrossCorrelation = new() { Mode = ConvolutionMode.CrossCorrelation };

    // ---------------- the seed's examples ----------------

    public static TheoryData<int[], int[], int[], float[]> SeedOneD => new()
    {
        // x = [1..7], w = [1,2,3] as 1-D [1,1,7] and as Knet's 4-D (7,1,1,1), i.e. our [1,1,1,7] (padding reversed).
        { [1, 1, 7], [0], [1], [10, 16, 22, 28, 34] },
        { [1, 1, 7], [1], [1], [4, 10, 16, 22, 28, 34, 32] },
        { [1, 1, 7], [1], [3], [4, 22, 32] },
        { [1, 1, 1, 7], [0, 0], [1], [10, 16, 22, 28, 34] },
        { [1, 1, 1, 7], [0, 1], [1], [4, 10, 16, 22, 28, 34, 32] },
        { [1, 1, 1, 7], [0, 1], [3], [4, 22, 32] },
    };

    [Theory]
    [MemberData(nameof(SeedOneD))]
    public void SeedOneDimensionalExamples(int[] xDims, int[] padding, int[] stride, float[] expected)
    {
        var x = Tensor.FromHost([1f, 2, 3, 4, 5, 6, 7], new Shape(xDims));
        var wDims = (int[])xDims.Clone(); wDims[^1] = 3;
        var w = Tensor.FromHost([1f, 2, 3], new Shape(wDims));
        var y = Convolution.Forward(x, w, options: new() { Padding = padding, Stride = stride });
        GradCheck.AssertExact(expected, y, "conv4(w, x)");
        Assert.Equal(expected.Length, y.Shape[y.Rank - 1]);
    }

    [Fact]
    public void SeedTwoDimensionalExample()
    {
        // Knet reshape(1:4, (2,2,1,1)) and reshape(1:9, (3,3,1,1)) are column-major: the same memory is our
        // row-major [1,1,2,2] and [1,1,3,3] (transposed). Knet's result [23 53; 33 63] is memory [23,33,53,63].
        var w = Tensor.FromHost([1f, 2, 3, 4], 1, 1, 2, 2);
        var x = Tensor.FromHost([1f, 2, 3, 4, 5, 6, 7, 8, 9], 1, 1, 3, 3);
        var y = Convolution.Forward(x, w);
        Assert.Equal(new Shape(1, 1, 2, 2), y.Shape);
        GradCheck.AssertExact([23, 33, 53, 63], y, "conv4 2-D");
    }

    [Fact]
    public void ConvolutionAsMatrixProduct()
    {
        // The seed's two pictures for w = [1,2,3], x = [1..7], y = [10,16,22,28,34].
        float[] w = [1, 2, 3], x = [1, 2, 3, 4, 5, 6, 7];
        // (1) w repeated on the shifted rows of a sparse Y x X matrix (flipped, since this is convolution).
        var sparse = new float[5 * 7];
        for (int i = 0; i < 5; i++)
            for (int j = 0; j < 3; j++) sparse[i * 7 + i + j] = w[2 - j];
        var y1 = Tensor.Zeros(new Shape(5, 1));
        CpuBackend.Default.MatMul(Tensor.FromHost(sparse, 5, 7), false, Tensor.FromHost(x, 7, 1), false, y1);
        GradCheck.AssertExact([10, 16, 22, 28, 34], y1, "sparse(w) x x");
        // (2) x's patches as the columns of a dense W x Y matrix (im2col), then w x cols.
        var cols = Im2Col.Forward(Tensor.FromHost(x, 1, 1, 7), [3]);
        var y2 = Tensor.Zeros(new Shape(1, 5));
        CpuBackend.Default.MatMul(Tensor.FromHost(w, 1, 3), false, cols.Reshape(3, 5), false, y2);
        GradCheck.AssertExact([10, 16, 22, 28, 34], y2, "w x im2col(x)");
    }

    public static TheoryData<int[], int[]> MatrixAsConvolutionShapes => new()
    {
        { [2, 1, 1, 3], [1, 1, 1, 3] },   // Knet's w2 (3,1,1,2) and x2 (3,1,1,1), reversed
        { [2, 1, 3], [1, 1, 3] },         // the same as a 1-D convolution
    };

    [Theory]
    [MemberData(nameof(MatrixAsConvolutionShapes))]
    public void MatrixProductAsConvolution(int[] wDims, int[] xDims)
    {
        // W = [1 3 5; 2 4 6], x = [1,2,3]: each row of W is one filter; y = W x = [22, 28].
        var w2 = Tensor.FromHost([1f, 3, 5, 2, 4, 6], new Shape(wDims));
        var x2 = Tensor.FromHost([1f, 2, 3], new Shape(xDims));
        var y2 = Convolution.Forward(x2, w2, options: CrossCorrelation);
        Assert.Equal(new Shape([1, 2, .. Enumerable.Repeat(1, xDims.Length - 2)]), y2.Shape);
        GradCheck.AssertExact([22, 28], y2, "conv4(w2, x2; mode=1)");
    }

    [Fact]
    public void MatrixMatrixProductAsConvolution()
    {
        // The seed's exercise: a batch of vectors is a batch of 1-pixel images with D taps, so conv = X Wᵀ.
        var rng = new Random(7);
        int n = 4, d = 5, k = 3;
        float[] w = TestData.Uniform(rng, k * d), x = TestData.Uniform(rng, n * d);
        var y = Convolution.Forward(Tensor.FromHost(x, n, 1, d), Tensor.FromHost(w, k, 1, d), options: CrossCorrelation);
        var want = new double[n * k];
        for (int i = 0; i < n; i++)
            for (int o = 0; o < k; o++)
                for (int j = 0; j < d; j++) want[i * k + o] += (double)x[i * d + j] * w[o * d + j];
        Assert.Equal(new Shape(n, k, 1), y.Shape);
        GradCheck.AssertClose(y.ToHost(), want, "X Wᵀ as a convolution");
    }

    // ---------------- forward against the naive float64 loop ----------------

    public static TheoryData<int> Seeds => new(Enumerable.Range(0, 36));

    [Theory]
    [MemberData(nameof(Seeds))]
    public void ForwardMatchesNaiveLoop(int seed)
    {
        var cs = ConvCase.Draw(seed);
        var rng = new Random(1000 + seed);
        float[] x = TestData.Uniform(rng, cs.XShape.Length), w = TestData.Uniform(rng, cs.WShape.Length), b = TestData.Uniform(rng, cs.O);
        var X = Tensor.FromHost(x, cs.XShape); var W = Tensor.FromHost(w, cs.WShape);

        var y = Convolution.Forward(X, W, options: cs.Options);
        Assert.Equal(cs.YShape, y.Shape);
        GradCheck.AssertClose(y.ToHost(), NaiveConv.Forward(cs, TestData.ToDouble(x), TestData.ToDouble(w)), $"{cs}");

        var yb = Convolution.Forward(X, W, Tensor.FromHost(b, cs.O), cs.Options);
        GradCheck.AssertClose(yb.ToHost(), NaiveConv.Forward(cs, TestData.ToDouble(x), TestData.ToDouble(w), TestData.ToDouble(b)), $"{cs} with bias");
    }

    [Fact]
    public void RandomCasesCoverEveryFeature()
    {
        // Guards the generator: the 36 seeds above must exercise every rank, mode, groups > 1, stride > 1,
        // dilation > 1, padding > 0, N > 1 and Cg > 1.
        var cases = Enumerable.Range(0, 36).Select(s => ConvCase.Draw(s)).ToList();
        foreach (int rank in new[] { 1, 2, 3 }) Assert.Contains(cases, c => c.Rank == rank);
        foreach (var mode in Enum.GetValues<ConvolutionMode>()) Assert.Contains(cases, c => c.Mode == mode);
        Assert.Contains(cases, c => c.Groups > 1);
        Assert.Contains(cases, c => c.S.Any(v => v > 1));
        Assert.Contains(cases, c => c.D.Any(v => v > 1));
        Assert.Contains(cases, c => c.P.Any(v => v > 0));
        Assert.Contains(cases, c => c.N > 1);
        Assert.Contains(cases, c => c.C / c.Groups > 1);
        Assert.Contains(cases, c => c.Rank == 3 && c.Groups > 1 && c.S.Any(v => v > 1));
    }

    [Fact]
    public void NaNPropagates()
    {
        // One NaN in x reaches exactly the outputs whose window covers it (zero weights included: 0 * NaN = NaN).
        var cs = new ConvCase(1, 2, 2, 1, [6, 5], [3, 2], [1, 2], [1, 0], [1, 1], ConvolutionMode.Convolution);
        var rng = new Random(3);
        float[] x = TestData.Uniform(rng, cs.XShape.Length), w = TestData.Uniform(rng, cs.WShape.Length);
        x[17] = float.NaN; w[0] = 0f;
        var got = Convolution.Forward(Tensor.FromHost(x, cs.XShape), Tensor.FromHost(w, cs.WShape), options: cs.Options).ToHost();
        var want = NaiveConv.Forward(cs, TestData.ToDouble(x), TestData.ToDouble(w));
        Assert.Contains(want, double.IsNaN);
        Assert.Contains(want, v => !double.IsNaN(v));
        for (int i = 0; i < want.Length; i++) Assert.Equal(double.IsNaN(want[i]), float.IsNaN(got[i]));

        // A NaN in dy for output channel 0 (no padding, so every tap meets it) spoils exactly that filter's gradient.
        var unpadded = cs with { P = [0, 0] };
        x[17] = 0.5f;
        var dy = TestData.Uniform(rng, unpadded.YShape.Length); dy[3] = float.NaN;
        var dw = Convolution.BackwardFilter(Tensor.FromHost(x, unpadded.XShape), unpadded.WShape, Tensor.FromHost(dy, unpadded.YShape), unpadded.Options).ToHost();
        int perFilter = dw.Length / unpadded.O;
        for (int i = 0; i < dw.Length; i++) Assert.Equal(i < perFilter, float.IsNaN(dw[i]));
    }

    // ---------------- transposed convolution ----------------

    [Fact]
    public void TransposedDocsExample()
    {
        var y = TransposedConvolution.Forward(Tensor.FromHost([1f, 1], 1, 1, 2), Tensor.FromHost([1f, 2, 3], 1, 1, 3), options: CrossCorrelation);
        GradCheck.AssertExact([1, 3, 5, 3], y, "deconv4(w, x; mode=1)");
        // Convolution mode scatters the flipped kernel: [3,2,1] + shifted [3,2,1].
        var yc = TransposedConvolution.Forward(Tensor.FromHost([1f, 1], 1, 1, 2), Tensor.FromHost([1f, 2, 3], 1, 1, 3));
        GradCheck.AssertExact([3, 5, 3, 1], yc, "deconv4(w, x; mode=0)");
    }

    public static TheoryData<int, int, int, int, int> TransposedSizes => new()
    {
        // X, K, S, P, D
        { 2, 3, 1, 0, 1 }, { 5, 3, 2, 1, 1 }, { 4, 4, 2, 1, 1 }, { 3, 3, 3, 0, 2 }, { 7, 1, 2, 0, 1 }, { 1, 5, 4, 2, 1 }, { 4, 2, 3, 1, 3 },
    };

    [Theory]
    [MemberData(nameof(TransposedSizes))]
    public void TransposedShapeRuleInvertsConvolutionShape(int x, int k, int s, int p, int d)
    {
        var options = new ConvolutionOptions { Stride = s, Padding = p, Dilation = d };
        var y = TransposedConvolution.Forward(Tensor.Zeros(new Shape(2, 3, x)), Tensor.Zeros(new Shape(3, 4, k)), options: options);
        Assert.Equal(new Shape(2, 4, (x - 1) * s + (k - 1) * d + 1 - 2 * p), y.Shape);
        // A convolution with the same options maps the result back to x's spatial size.
        Assert.Equal(new Shape(2, 3, x), Convolution.Forward(y, Tensor.Zeros(new Shape(3, 4, k)), options: options).Shape);
    }

    [Theory]
    [MemberData(nameof(Seeds))]
    public void TransposedForwardMatchesNaiveScatter(int seed)
    {
        var cs = ConvCase.DrawTransposed(seed);
        var rng = new Random(2000 + seed);
        float[] t = TestData.Uniform(rng, cs.YShape.Length), w = TestData.Uniform(rng, cs.WShape.Length), b = TestData.Uniform(rng, cs.C);
        var T = Tensor.FromHost(t, cs.YShape); var W = Tensor.FromHost(w, cs.WShape);
        var y = TransposedConvolution.Forward(T, W, options: cs.Options);
        Assert.Equal(cs.XShape, y.Shape);
        GradCheck.AssertClose(y.ToHost(), NaiveConv.Transposed(cs, TestData.ToDouble(t), TestData.ToDouble(w)), $"transposed {cs}");
        var yb = TransposedConvolution.Forward(T, W, Tensor.FromHost(b, cs.C), cs.Options);
        GradCheck.AssertClose(yb.ToHost(), NaiveConv.Transposed(cs, TestData.ToDouble(t), TestData.ToDouble(w), TestData.ToDouble(b)), $"transposed {cs} with bias");
    }

    // ---------------- gradients against finite differences ----------------

    public static TheoryData<int> GradSeeds => new(Enumerable.Range(100, 15));

    [Theory]
    [MemberData(nameof(GradSeeds))]
    public void ConvolutionGradients(int seed)
    {
        var cs = ConvCase.Draw(seed, small: true);
        var rng = new Random(seed);
        float[] x = TestData.Uniform(rng, cs.XShape.Length), w = TestData.Uniform(rng, cs.WShape.Length), b = TestData.Uniform(rng, cs.O);
        float[] dy = TestData.Uniform(rng, cs.YShape.Length);
        double[] xd = TestData.ToDouble(x), wd = TestData.ToDouble(w), bd = TestData.ToDouble(b), dyd = TestData.ToDouble(dy);
        var DY = Tensor.FromHost(dy, cs.YShape);

        var dx = Convolution.BackwardData(cs.XShape, Tensor.FromHost(w, cs.WShape), DY, cs.Options);
        GradCheck.AssertClose(dx.ToHost(), GradCheck.Numeric(v => NaiveConv.Forward(cs, v, wd, bd), xd, dyd), $"dx {cs}");
        var dw = Convolution.BackwardFilter(Tensor.FromHost(x, cs.XShape), cs.WShape, DY, cs.Options);
        GradCheck.AssertClose(dw.ToHost(), GradCheck.Numeric(v => NaiveConv.Forward(cs, xd, v, bd), wd, dyd), $"dw {cs}");
        var db = Convolution.BackwardBias(DY);
        GradCheck.AssertClose(db.ToHost(), GradCheck.Numeric(v => NaiveConv.Forward(cs, xd, wd, v), bd, dyd), $"db {cs}");
    }

    [Theory]
    [MemberData(nameof(GradSeeds))]
    public void TransposedConvolutionGradients(int seed)
    {
        var cs = ConvCase.DrawTransposed(seed, small: true);
        var rng = new Random(seed);
        // The transposed convolution reads t shaped like the convolution's output and writes the input's shape.
        float[] t = TestData.Uniform(rng, cs.YShape.Length), w = TestData.Uniform(rng, cs.WShape.Length), b = TestData.Uniform(rng, cs.C);
        float[] dy = TestData.Uniform(rng, cs.XShape.Length);
        double[] td = TestData.ToDouble(t), wd = TestData.ToDouble(w), bd = TestData.ToDouble(b), dyd = TestData.ToDouble(dy);
        var DY = Tensor.FromHost(dy, cs.XShape);

        var dt = TransposedConvolution.BackwardData(cs.YShape, Tensor.FromHost(w, cs.WShape), DY, cs.Options);
        GradCheck.AssertClose(dt.ToHost(), GradCheck.Numeric(v => NaiveConv.Transposed(cs, v, wd, bd), td, dyd), $"dx transposed {cs}");
        var dw = TransposedConvolution.BackwardFilter(Tensor.FromHost(t, cs.YShape), cs.WShape, DY, cs.Options);
        GradCheck.AssertClose(dw.ToHost(), GradCheck.Numeric(v => NaiveConv.Transposed(cs, td, v, bd), wd, dyd), $"dw transposed {cs}");
        var db = TransposedConvolution.BackwardBias(DY);
        GradCheck.AssertClose(db.ToHost(), GradCheck.Numeric(v => NaiveConv.Transposed(cs, td, wd, v), bd, dyd), $"db transposed {cs}");
    }

    // ---------------- threads and memory bounds ----------------

    public static TheoryData<int, int> ThreadCases => new() { { 4, 1 }, { 11, 5 }, { 30, 2 }, { 8, 9 } };

    [Theory]
    [MemberData(nameof(ThreadCases))]
    public void ResultsDoNotDependOnThreadCount(int seed, int batch)
    {
        // One image per thread when N >= threads, else channels of one image across threads: both must give
        // the same bits. Backends with 3 and 8 threads force real parallel paths even on a small machine.
        var cs = ConvCase.Draw(seed) with { N = batch };
        var rng = new Random(seed);
        float[] x = TestData.Uniform(rng, cs.XShape.Length), w = TestData.Uniform(rng, cs.WShape.Length),
                b = TestData.Uniform(rng, cs.O), dy = TestData.Uniform(rng, cs.YShape.Length);
        (float[] y, float[] dx, float[] dw) Run(IBackend be)
        {
            var X = Tensor.FromHost(x, cs.XShape, be); var W = Tensor.FromHost(w, cs.WShape, be); var DY = Tensor.FromHost(dy, cs.YShape, be);
            return (Convolution.Forward(X, W, Tensor.FromHost(b, new Shape(cs.O), be), cs.Options).ToHost(),
                    Convolution.BackwardData(cs.XShape, W, DY, cs.Options).ToHost(),
                    Convolution.BackwardFilter(X, cs.WShape, DY, cs.Options).ToHost());
        }
        var one = Run(new CpuBackend(maxThreads: 1));
        GradCheck.AssertClose(one.y, NaiveConv.Forward(cs, TestData.ToDouble(x), TestData.ToDouble(w), TestData.ToDouble(b)), "single-threaded forward");
        foreach (var be in new IBackend[] { CpuBackend.Default, new CpuBackend(maxThreads: 3), new CpuBackend(maxThreads: 8) })
        {
            var many = Run(be);
            Assert.Equal(one.y, many.y);
            Assert.Equal(one.dx, many.dx);
            Assert.Equal(one.dw, many.dw);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(200)]
    public void SmallColumnBudgetSplitsImagesIntoSlabs(int budget)
    {
        // A budget below one output line forces one line per slab; 200 floats forces a few lines per slab.
        foreach (var cs in new[]
        {
            new ConvCase(2, 2, 3, 1, [7, 6], [3, 2], [2, 1], [1, 1], [1, 2], ConvolutionMode.Convolution),
            new ConvCase(1, 4, 2, 2, [4, 5, 3], [2, 3, 2], [1, 2, 1], [1, 0, 1], [2, 1, 1], ConvolutionMode.CrossCorrelation),
        })
        {
            var be = new CpuBackend(maxThreads: 2) { ConvolutionColumnBudget = budget };
            var rng = new Random(budget);
            float[] x = TestData.Uniform(rng, cs.XShape.Length), w = TestData.Uniform(rng, cs.WShape.Length), dy = TestData.Uniform(rng, cs.YShape.Length);
            double[] xd = TestData.ToDouble(x), wd = TestData.ToDouble(w), dyd = TestData.ToDouble(dy);
            var X = Tensor.FromHost(x, cs.XShape, be); var W = Tensor.FromHost(w, cs.WShape, be); var DY = Tensor.FromHost(dy, cs.YShape, be);
            GradCheck.AssertClose(Convolution.Forward(X, W, options: cs.Options).ToHost(), NaiveConv.Forward(cs, xd, wd), $"slabbed forward {cs}");
            GradCheck.AssertClose(Convolution.BackwardData(cs.XShape, W, DY, cs.Options).ToHost(),
                GradCheck.Numeric(v => NaiveConv.Forward(cs, v, wd), xd, dyd), $"slabbed dx {cs}");
            GradCheck.AssertClose(Convolution.BackwardFilter(X, cs.WShape, DY, cs.Options).ToHost(),
                GradCheck.Numeric(v => NaiveConv.Forward(cs, xd, v), wd, dyd), $"slabbed dw {cs}");
        }
    }

    // ---------------- bad arguments ----------------

    public sealed record BadCase(Action Act, Type Exception, string Parameter, params string[] Fragments);

    private static Tensor Z(params int[] dims) => Tensor.Zeros(new Shape(dims));

    private static readonly Dictionary<string, BadCase> BadCases = new()
    {
        ["channel mismatch"] = new(() => Convolution.Forward(Z(1, 3, 5), Z(2, 2, 3)), typeof(ArgumentException), "w", "[1, 3, 5]", "[2, 2, 3]"),
        ["kernel larger than padded input"] = new(() => Convolution.Forward(Z(1, 1, 3), Z(1, 1, 5)), typeof(ArgumentException), "w", "spans 5", "[1, 1, 3]"),
        ["dilated kernel larger than input"] = new(() => Convolution.Forward(Z(1, 1, 5), Z(1, 1, 3), options: new() { Dilation = 3 }), typeof(ArgumentException), "w", "spans 7", "dilation 3"),
        ["stride 0"] = new(() => Convolution.Forward(Z(1, 1, 5), Z(1, 1, 3), options: new() { Stride = 0 }), typeof(ArgumentOutOfRangeException), "stride", "stride must be >= 1"),
        ["dilation negative"] = new(() => Convolution.Forward(Z(1, 1, 5, 5), Z(1, 1, 3, 3), options: new() { Dilation = new[] { 1, -1 } }), typeof(ArgumentOutOfRangeException), "dilation", "dilation must be >= 1", "spatial dimension 1"),
        ["negative padding"] = new(() => Convolution.Forward(Z(1, 1, 5), Z(1, 1, 3), options: new() { Padding = -1 }), typeof(ArgumentOutOfRangeException), "padding", "padding must be >= 0"),
        ["groups do not divide input channels"] = new(() => Convolution.Forward(Z(1, 3, 5), Z(2, 1, 3), options: new() { Groups = 2 }), typeof(ArgumentException), "groups", "groups = 2", "[1, 3, 5]"),
        ["groups do not divide output channels"] = new(() => Convolution.Forward(Z(1, 2, 5), Z(3, 1, 3), options: new() { Groups = 2 }), typeof(ArgumentException), "groups", "groups = 2", "[3, 1, 3]"),
        ["groups zero"] = new(() => Convolution.Forward(Z(1, 2, 5), Z(2, 2, 3), options: new() { Groups = 0 }), typeof(ArgumentOutOfRangeException), "groups", "groups must be at least 1"),
        ["undefined mode"] = new(() => Convolution.Forward(Z(1, 1, 5), Z(1, 1, 3), options: new() { Mode = (ConvolutionMode)2 }), typeof(ArgumentOutOfRangeException), "mode", "Convolution or CrossCorrelation"),
        ["input rank 2"] = new(() => Convolution.Forward(Z(3, 5), Z(1, 3, 3)), typeof(ArgumentException), "x", "[3, 5]", "rank 2"),
        ["input rank 6"] = new(() => Convolution.Forward(Z(1, 1, 2, 2, 2, 2), Z(1, 1, 1, 1, 1, 1)), typeof(ArgumentException), "x", "[1, 1, 2, 2, 2, 2]", "rank 6"),
        ["filter rank mismatch"] = new(() => Convolution.Forward(Z(1, 1, 5, 5), Z(1, 1, 3)), typeof(ArgumentException), "w", "[1, 1, 3]", "[1, 1, 5, 5]"),
        ["wrong bias shape"] = new(() => Convolution.Forward(Z(1, 1, 5), Z(2, 1, 3), Z(3)), typeof(ArgumentException), "bias", "[3]", "expected [2]"),
        ["bias of rank 2"] = new(() => Convolution.Forward(Z(1, 1, 5), Z(2, 1, 3), Z(1, 2)), typeof(ArgumentException), "bias", "[1, 2]"),
        ["wrong dy shape (data)"] = new(() => Convolution.BackwardData(new Shape(1, 1, 5), Z(2, 1, 3), Z(1, 2, 4)), typeof(ArgumentException), "dy", "[1, 2, 4]", "[1, 2, 3]"),
        ["wrong dy shape (filter)"] = new(() => Convolution.BackwardFilter(Z(2, 1, 5), new Shape(2, 1, 3), Z(1, 2, 3)), typeof(ArgumentException), "dy", "[1, 2, 3]", "[2, 2, 3]"),
        ["too many per-axis values"] = new(() => Convolution.Forward(Z(1, 1, 5, 5), Z(1, 1, 3, 3), options: new() { Padding = new[] { 1, 1, 1 } }), typeof(ArgumentException), "padding", "[1, 1, 1]", "2 spatial dimension"),
        ["transposed output below 1"] = new(() => TransposedConvolution.Forward(Z(1, 1, 1), Z(1, 1, 1), options: new() { Padding = 1 }), typeof(ArgumentException), "padding", "would be -1", "[1, 1, 1]"),
        ["transposed channel mismatch"] = new(() => TransposedConvolution.Forward(Z(1, 2, 4), Z(3, 1, 3)), typeof(ArgumentException), "w", "[1, 2, 4]", "[3, 1, 3]"),
        ["transposed wrong bias"] = new(() => TransposedConvolution.Forward(Z(1, 2, 4), Z(2, 3, 3), Z(2)), typeof(ArgumentException), "bias", "[2]", "expected [3]"),
        ["transposed wrong dy"] = new(() => TransposedConvolution.BackwardData(new Shape(1, 2, 4), Z(2, 3, 3), Z(1, 3, 5)), typeof(ArgumentException), "dy", "[1, 3, 5]", "[1, 3, 6]"),
        ["im2col kernel rank"] = new(() => Im2Col.Forward(Z(1, 1, 5, 5), [3]), typeof(ArgumentException), "kernelSize", "[3]", "[1, 1, 5, 5]"),
        ["col2im wrong columns"] = new(() => Im2Col.Backward(Z(1, 3, 4), new Shape(1, 1, 7), [3]), typeof(ArgumentException), "cols", "[1, 3, 4]", "[1, 3, 5]"),
    };

    public static TheoryData<string> BadCaseNames => new(BadCases.Keys);

    [Theory]
    [MemberData(nameof(BadCaseNames))]
    public void BadArgumentsThrowNamingParameterAndShapes(string name)
    {
        var c = BadCases[name];
        var e = Assert.Throws(c.Exception, c.Act);
        var ae = Assert.IsAssignableFrom<ArgumentException>(e);
        Assert.Equal(c.Parameter, ae.ParamName);
        foreach (var fragment in c.Fragments) Assert.Contains(fragment, e.Message);
    }
}

/// <summary>A convolution's sizes and options; the random draws cover every feature from a seed.</summary>
public sealed record ConvCase(int N, int C, int O, int Groups, int[] X, int[] K, int[] S, int[] P, int[] D, ConvolutionMode Mode)
{
    public int Rank => X.Length;
    /// <summary>Y = 1 + floor((X + 2P - ((K-1)D + 1)) / S) per spatial dimension.</summary>
    public int[] Y => Enumerable.Range(0, Rank).Select(i => 1 + (X[i] + 2 * P[i] - ((K[i] - 1) * D[i] + 1)) / S[i]).ToArray();
    public Shape XShape => new([N, C, .. X]);
    public Shape WShape => new([O, C / Groups, .. K]);
    public Shape YShape => new([N, O, .. Y]);
    public ConvolutionOptions Options => new() { Padding = P, Stride = S, Dilation = D, Groups = Groups, Mode = Mode };

    public override string ToString() =>
        $"x{XShape} w{WShape} y{YShape} S{Shape.Format(S)} P{Shape.Format(P)} D{Shape.Format(D)} groups {Groups} {Mode}";

    /// <summary>
    /// A random convolution: rank cycles 1,2,3 with the seed, mode every 3 seeds, groups 1..3 every 6 seeds;
    /// sizes, stride (1..3), padding (0..2) and dilation (1..2) are random. <paramref name="small"/> keeps
    /// tensors small enough for finite differences.
    /// </summary>
    public static ConvCase Draw(int seed, bool small = false)
    {
        var rng = new Random(seed);
        int rank = 1 + seed % 3, groups = 1 + seed / 6 % 3;
        var mode = seed / 3 % 2 == 0 ? ConvolutionMode.Convolution : ConvolutionMode.CrossCorrelation;
        int cg = rng.Next(1, 3), og = rng.Next(1, 3), n = rng.Next(1, small ? 3 : 4);
        int[] x = new int[rank], k = new int[rank], s = new int[rank], p = new int[rank], d = new int[rank];
        int extra = small ? (rank == 3 ? 2 : 3) : (rank == 3 ? 3 : 6);
        for (int i = 0; i < rank; i++)
        {
            k[i] = rng.Next(1, rank == 3 ? 3 : 4);
            d[i] = rng.Next(1, 3);
            s[i] = rng.Next(1, 4);
            p[i] = rng.Next(0, 3);
            int span = (k[i] - 1) * d[i] + 1;
            x[i] = Math.Max(1, span - 2 * p[i]) + rng.Next(0, extra + 1);
        }
        return new ConvCase(n, cg * groups, og * groups, groups, x, k, s, p, d, mode);
    }

    /// <summary>
    /// A random transposed convolution, described by the convolution it is the adjoint of: its input is
    /// shaped <see cref="YShape"/>, its output <see cref="XShape"/>, with X = (Y-1)S + (K-1)D + 1 - 2P exactly.
    /// </summary>
    public static ConvCase DrawTransposed(int seed, bool small = false)
    {
        var c = Draw(seed, small);
        var rng = new Random(~seed);
        var x = new int[c.Rank];
        var p = (int[])c.P.Clone();
        for (int i = 0; i < c.Rank; i++)
        {
            int yt = rng.Next(1, small ? 4 : 6), span = (c.K[i] - 1) * c.D[i] + 1;
            while ((yt - 1) * c.S[i] + span - 2 * p[i] < 1) p[i]--;
            x[i] = (yt - 1) * c.S[i] + span - 2 * p[i];
        }
        return c with { X = x, P = p };
    }
}

/// <summary>The tests' own float64 convolution, written straight from the definition.</summary>
public static class NaiveConv
{
    /// <summary>
    /// y[n,o,i] = b[o] + sum over c in o's group and taps k of w[o,c,k] * x[n,c, i*S - P + k'*D],
    /// k' = K-1-k in Convolution mode (flipped kernel), k in CrossCorrelation mode; taps in padding add nothing.
    /// </summary>
    public static double[] Forward(ConvCase cs, double[] x, double[] w, double[]? b = null)
    {
        var ys = Grid(cs.Y); var ks = Grid(cs.K);
        int cg = cs.C / cs.Groups, og = cs.O / cs.Groups, xv = cs.XShape.SizeFrom(2);
        var y = new double[cs.N * cs.O * ys.Length];
        for (int n = 0; n < cs.N; n++)
            for (int o = 0; o < cs.O; o++)
                for (int iy = 0; iy < ys.Length; iy++)
                {
                    double sum = b is null ? 0 : b[o];
                    for (int c = 0; c < cg; c++)
                        for (int ik = 0; ik < ks.Length; ik++)
                        {
                            int src = InputCell(cs, ys[iy], ks[ik]);
                            if (src >= 0) sum += w[(o * cg + c) * ks.Length + ik] * x[(n * cs.C + o / og * cg + c) * xv + src];
                        }
                    y[(n * cs.O + o) * ys.Length + iy] = sum;
                }
        return y;
    }

    /// <summary>
    /// Transposed convolution as a scatter: every cell t[n,o,i] adds t * w[o,c,k] onto out[n,c, i*S - P + k'*D]
    /// (same k' rule), then b[c] is added. t is shaped like the convolution's output, out like its input.
    /// </summary>
    public static double[] Transposed(ConvCase cs, double[] t, double[] w, double[]? b = null)
    {
        var ys = Grid(cs.Y); var ks = Grid(cs.K);
        int cg = cs.C / cs.Groups, og = cs.O / cs.Groups, xv = cs.XShape.SizeFrom(2);
        var output = new double[cs.N * cs.C * xv];
        for (int n = 0; n < cs.N; n++)
        {
            if (b is not null)
                for (int c = 0; c < cs.C; c++)
                    for (int i = 0; i < xv; i++) output[(n * cs.C + c) * xv + i] = b[c];
            for (int o = 0; o < cs.O; o++)
                for (int iy = 0; iy < ys.Length; iy++)
                {
                    double v = t[(n * cs.O + o) * ys.Length + iy];
                    for (int c = 0; c < cg; c++)
                        for (int ik = 0; ik < ks.Length; ik++)
                        {
                            int dst = InputCell(cs, ys[iy], ks[ik]);
                            if (dst >= 0) output[(n * cs.C + o / og * cg + c) * xv + dst] += v * w[(o * cg + c) * ks.Length + ik];
                        }
                }
        }
        return output;
    }

    /// <summary>im2col from its definition: cols[n, c*prod(K) + k, i] = x[n, c, i*S - P + k'*D], 0 in padding.</summary>
    public static double[] Im2Col(ConvCase cs, double[] x)
    {
        var ys = Grid(cs.Y); var ks = Grid(cs.K);
        int xv = cs.XShape.SizeFrom(2);
        var cols = new double[cs.N * cs.C * ks.Length * ys.Length];
        for (int n = 0; n < cs.N; n++)
            for (int c = 0; c < cs.C; c++)
                for (int ik = 0; ik < ks.Length; ik++)
                    for (int iy = 0; iy < ys.Length; iy++)
                    {
                        int src = InputCell(cs, ys[iy], ks[ik]);
                        cols[((n * cs.C + c) * ks.Length + ik) * ys.Length + iy] = src < 0 ? 0 : x[(n * cs.C + c) * xv + src];
                    }
        return cols;
    }

    /// <summary>Flat spatial index of the input cell tap k meets at output position i, or -1 in padding.</summary>
    private static int InputCell(ConvCase cs, int[] i, int[] k)
    {
        int flat = 0;
        for (int d = 0; d < cs.Rank; d++)
        {
            int tap = cs.Mode == ConvolutionMode.Convolution ? cs.K[d] - 1 - k[d] : k[d];
            int at = i[d] * cs.S[d] - cs.P[d] + tap * cs.D[d];
            if (at < 0 || at >= cs.X[d]) return -1;
            flat = flat * cs.X[d] + at;
        }
        return flat;
    }

    /// <summary>Every multi-index of a box of the given sizes, last index fastest.</summary>
    private static int[][] Grid(int[] dims)
    {
        int count = dims.Aggregate(1, (a, v) => a * v);
        var all = new int[count][];
        for (int f = 0; f < count; f++)
        {
            var idx = new int[dims.Length];
            for (int d = dims.Length - 1, r = f; d >= 0; d--) { idx[d] = r % dims[d]; r /= dims[d]; }
            all[f] = idx;
        }
        return all;
    }
}
