using MLNet.ConvNet.Backends.Cpu;
using MLNet.ConvNet.Layers;
using MLNet.ConvNet.Tests.TestKit;
using Xunit;
using ActivationKind = MLNet.ConvNet.Ops.ActivationKind;
using ConvolutionOptions = MLNet.ConvNet.Ops.ConvolutionOptions;
using PoolingMode = MLNet.ConvNet.Ops.PoolingMode;
using PoolingOptions = MLNet.ConvNet.Ops.PoolingOptions;

namespace MLNet.ConvNet.Tests;

public class LayerTests
{
    // ---- float64 reference of a residual block, written independently of the kernels ----

    /// <summary>Cross-correlation of x [N,C,H,W] with w [O,C,K,K], stride s, zero padding p.</summary>
    private static double[] RefConv(double[] x, int n, int c, int h, int wd, double[] w, int o, int k, int s, int p, out int ho, out int wo)
    {
        ho = (h + 2 * p - k) / s + 1; wo = (wd + 2 * p - k) / s + 1;
        var y = new double[n * o * ho * wo];
        for (int b = 0; b < n; b++)
            for (int oc = 0; oc < o; oc++)
                for (int i = 0; i < ho; i++)
                    for (int j = 0; j < wo; j++)
                    {
                        double sum = 0;
                        for (int ic = 0; ic < c; ic++)
                            for (int u = 0; u < k; u++)
                                for (int v = 0; v < k; v++)
                                {
                                    int r = i * s - p + u, q = j * s - p + v;
                                    if (r < 0 || r >= h || q < 0 || q >= wd) continue;
                                    sum += w[((oc * c + ic) * k + u) * k + v] * x[((b * c + ic) * h + r) * wd + q];
                                }
                        y[((b * o + oc) * ho + i) * wo + j] = sum;
                    }
        return y;
    }

    /// <summary>Training-mode batch norm per channel of [N,C,S] (biased variance, eps 1e-5).</summary>
    private static double[] Bn(double[] x, int n, int c, int s, double[] gamma, double[] beta)
    {
        var y = new double[x.Length];
        for (int ch = 0; ch < c; ch++)
        {
            double mean = 0, var = 0;
            for (int b = 0; b < n; b++) for (int i = 0; i < s; i++) mean += x[(b * c + ch) * s + i];
            mean /= n * s;
            for (int b = 0; b < n; b++) for (int i = 0; i < s; i++) var += Math.Pow(x[(b * c + ch) * s + i] - mean, 2);
            var /= n * s;
            double inv = 1 / Math.Sqrt(var + 1e-5);
            for (int b = 0; b < n; b++) for (int i = 0; i < s; i++)
                y[(b * c + ch) * s + i] = gamma[ch] * (x[(b * c + ch) * s + i] - mean) * inv + beta[ch];
        }
        return y;
    }

    private static double[] Relu(double[] x) => x.Select(v => Math.Max(0, v)).ToArray();

    /// <summary>y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); theta = x then the parameters in Residual.Parameters order.</summary>
    private static double[] ResidualReference(double[] theta, int n, int c, int h, int w, int o, int stride, bool projection)
    {
        int at = 0;
        double[] Take(int count) { var a = theta[at..(at + count)]; at += count; return a; }
        var x = Take(n * c * h * w);
        var w1 = Take(o * c * 9); var g1 = Take(o); var b1 = Take(o);
        var w2 = Take(o * o * 9); var g2 = Take(o); var b2 = Take(o);
        var a = RefConv(x, n, c, h, w, w1, o, 3, stride, 1, out int ho, out int wo);
        a = Relu(Bn(a, n, o, ho * wo, g1, b1));
        a = Bn(RefConv(a, n, o, ho, wo, w2, o, 3, 1, 1, out _, out _), n, o, ho * wo, g2, b2);
        var shortcut = x;
        if (projection)
        {
            var wp = Take(o * c); var gp = Take(o); var bp = Take(o);
            shortcut = Bn(RefConv(x, n, c, h, w, wp, o, 1, stride, 0, out _, out _), n, o, ho * wo, gp, bp);
        }
        return Relu(a.Zip(shortcut, (p, q) => p + q).ToArray());
    }

    [Theory]
    [InlineData(2, 3, 5, 6, 3, 1, false)]   // identity shortcut
    [InlineData(2, 2, 6, 5, 4, 1, true)]    // more channels: 1x1 projection
    [InlineData(3, 2, 7, 6, 3, 2, true)]    // stride 2: projection, odd size rounds up
    public void ResidualBackwardMatchesFiniteDifferences(int n, int c, int h, int w, int o, int stride, bool projection)
    {
        var rng = new Random(100 + c * 10 + o);
        var block = new Residual(o, stride) { Name = "res" };
        var outShape = block.Build(new Shape(n, c, h, w), CpuBackend.Default);
        Assert.Equal(projection, block.HasProjection);
        var x = TestData.Uniform(rng, n * c * h * w, 1f);
        var theta = new List<double>(TestData.ToDouble(x));
        foreach (var p in block.Parameters)
        {
            // Scales around 1, shifts and weights around 0: a generic point, away from degenerate batch statistics.
            var v = TestData.Uniform(rng, p.Value.Length, 0.5f);
            if (p.Role == ParameterRole.Scale) for (int i = 0; i < v.Length; i++) v[i] += 1f;
            p.Value.CopyFromHost(v);
            theta.AddRange(TestData.ToDouble(v));
        }
        var xt = Tensor.FromHost(x, n, c, h, w);
        var y = block.Forward(xt, training: true);
        Assert.Equal(outShape, y.Shape);
        var want = ResidualReference([.. theta], n, c, h, w, o, stride, projection);
        GradCheck.AssertClose(y.ToHost(), want, "Residual forward");

        var dy = TestData.Uniform(rng, y.Length, 1f);
        var dx = block.Backward(Tensor.FromHost(dy, y.Shape));
        var numeric = GradCheck.Numeric(t => ResidualReference(t, n, c, h, w, o, stride, projection), [.. theta], TestData.ToDouble(dy));
        // Tolerance 1e-4 of the largest gradient (GradCheck's default): batch norm's backward subtracts two sums of
        // ~N*H*W float32 terms, which loses a few more bits than a plain sum, still far below 1e-4 at these sizes.
        int at = x.Length;
        GradCheck.AssertClose(dx.ToHost(), numeric[..at], "Residual dx");
        foreach (var p in block.Parameters)
        {
            GradCheck.AssertClose(p.Gradient.ToHost(), numeric[at..(at + p.Value.Length)], $"Residual d{p.Name}");
            at += p.Value.Length;
        }
    }

    [Fact]
    public void BackwardAccumulatesIntoTheGradients()
    {
        var rng = new Random(3);
        var conv = new Conv(3, 3, Conv.DefaultOptions with { Padding = 1 }) { Name = "c" };
        conv.Build(new Shape(2, 2, 5, 5), CpuBackend.Default);
        conv.Initialize(new Rng(1), WeightInit.He);
        var x = Tensor.FromHost(TestData.Uniform(rng, 100, 1f), 2, 2, 5, 5);
        var dy = Tensor.FromHost(TestData.Uniform(rng, 150, 1f), 2, 3, 5, 5);
        conv.Forward(x, training: true);
        conv.Backward(dy);
        var once = conv.Parameters.Select(p => p.Gradient.ToHost()).ToArray();
        conv.Backward(dy);
        var twice = conv.Parameters.Select(p => p.Gradient.ToHost()).ToArray();
        for (int k = 0; k < once.Length; k++)
            for (int i = 0; i < once[k].Length; i++) Assert.Equal(2 * once[k][i], twice[k][i]);
    }

    [Fact]
    public void DropoutDrawsANewReproducibleMaskEachTrainingStep()
    {
        var x = Tensor.FromHost(Enumerable.Repeat(1f, 1000).ToArray(), 10, 100);
        Dropout Make() { var d = new Dropout(0.5f) { Name = "d" }; d.Build(x.Shape, CpuBackend.Default); d.Initialize(new Rng(9), WeightInit.He); return d; }
        var a = Make();
        var first = a.Forward(x, training: true).ToHost();
        var second = a.Forward(x, training: true).ToHost();
        Assert.NotEqual(first, second);
        Assert.Equal(2UL, a.Step);
        Assert.Equal(x.ToHost(), a.Forward(x, training: false).ToHost());
        Assert.Equal(2UL, a.Step); // inference does not advance the step

        var b = Make();
        Assert.Equal(first, b.Forward(x, training: true).ToHost());
        var c = Make();
        c.RandomState = [a.RandomState[0], 1];
        Assert.Equal(second, c.Forward(x, training: true).ToHost());
    }

    [Fact]
    public void BatchNormUpdatesRunningStatisticsAndUsesThemInInference()
    {
        var rng = new Random(5);
        var bn = new BatchNorm(momentum: 0.1f) { Name = "bn" };
        bn.Build(new Shape(4, 3), CpuBackend.Default); // per feature on [N, F]
        bn.Initialize(new Rng(0), WeightInit.He);
        var xs = TestData.Uniform(rng, 12, 2f);
        bn.Forward(Tensor.FromHost(xs, 4, 3), training: true);
        var mean = bn.RunningMean!.ToHost();
        var variance = bn.RunningVariance!.ToHost();
        for (int f = 0; f < 3; f++)
        {
            var col = Enumerable.Range(0, 4).Select(i => (double)xs[i * 3 + f]).ToArray();
            double m = col.Average(), unbiased = col.Sum(v => (v - m) * (v - m)) / 3;
            Assert.Equal(0.1 * m, mean[f], 1e-6);
            Assert.Equal(0.9 + 0.1 * unbiased, variance[f], 1e-5);
        }
        var y = bn.Forward(Tensor.FromHost(xs, 4, 3), training: false).ToHost();
        for (int i = 0; i < 12; i++)
            Assert.Equal((xs[i] - mean[i % 3]) / Math.Sqrt(variance[i % 3] + 1e-5), y[i], 1e-5);
    }

    public static TheoryData<string, int[], int[]> Shapes => new()
    {
        { "conv1d", [2, 3, 17], [2, 5, 8] },            // k 3, stride 2: (17 - 3) / 2 + 1
        { "conv2d", [1, 4, 9, 10], [1, 6, 4, 4] },      // k 3 dilation 2 spans 5, pad 1, stride 2: (9 + 2 - 5) / 2 + 1, (10 + 2 - 5) / 2 + 1; groups 2
        { "conv3d", [1, 2, 5, 6, 7], [1, 4, 3, 4, 5] }, // k 3
        { "pool", [2, 3, 7, 7], [2, 3, 3, 3] },         // window 3, stride 2
        { "global", [2, 8, 5, 3], [2, 8, 1, 1] },
        { "flatten", [2, 3, 4, 5], [2, 60] },
        { "dense", [2, 3, 4], [2, 7] },
        { "residual", [2, 3, 9, 8], [2, 6, 5, 4] },
        { "lrn", [2, 6, 3, 3], [2, 6, 3, 3] },
        { "batchnorm3d", [2, 3, 2, 3, 4], [2, 3, 2, 3, 4] },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void OutputShapesFollowTheOptions(string kind, int[] input, int[] output)
    {
        Layer layer = kind switch
        {
            "conv1d" => new Conv(5, 3, Conv.DefaultOptions with { Stride = 2 }),
            "conv2d" => new Conv(6, 3, new ConvolutionOptions { Padding = 1, Dilation = 2, Stride = 2, Groups = 2 }),
            "conv3d" => new Conv(4, 3),
            "pool" => new Pool(new PoolingOptions { Window = 3, Stride = 2 }),
            "global" => Pool.Global(),
            "flatten" => new Flatten(),
            "dense" => new Dense(7),
            "lrn" => new Lrn(),
            "batchnorm3d" => new BatchNorm(),
            _ => new Residual(6, stride: 2),
        };
        Assert.Equal(new Shape(output), layer.OutputShape(new Shape(input)));
        layer.Name = kind;
        Assert.Equal(new Shape(output), layer.Build(new Shape(input), CpuBackend.Default));
        var x = Tensor.FromHost(new float[new Shape(input).Length], new Shape(input));
        Assert.Equal(new Shape(output), layer.Forward(x, training: false).Shape);
    }

    [Fact]
    public void GlobalAveragePoolAveragesEachChannel()
    {
        var pool = Pool.Global(PoolingMode.AverageIncludingPadding);
        pool.Build(new Shape(1, 2, 2, 3), CpuBackend.Default);
        var y = pool.Forward(Tensor.FromHost([1, 2, 3, 4, 5, 6, 10, 20, 30, 40, 50, 60], 1, 2, 2, 3), training: false).ToHost();
        Assert.Equal([3.5f, 35f], y);
    }

    [Fact]
    public void MisuseThrowsClearly()
    {
        var dense = new Dense(4) { Name = "fc" };
        var x = Tensor.FromHost(new float[6], 2, 3);
        Assert.Contains("not built", Assert.Throws<InvalidOperationException>(() => dense.Forward(x, true)).Message);
        dense.Build(x.Shape, CpuBackend.Default);
        Assert.Contains("[N, 3] but got [2, 5]", Assert.Throws<ArgumentException>(() => dense.Forward(Tensor.FromHost(new float[10], 2, 5), true)).Message);
        dense.Forward(x, training: false);
        Assert.Contains("training-mode Forward", Assert.Throws<InvalidOperationException>(() => dense.Backward(Tensor.FromHost(new float[8], 2, 4))).Message);
        Assert.Throws<InvalidOperationException>(() => dense.Build(new Shape(2, 5), CpuBackend.Default));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Dropout(1f));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Conv(0, 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Activation((ActivationKind)99));
    }
}
