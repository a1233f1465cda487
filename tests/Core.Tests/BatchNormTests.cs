using MLNet.ConvNet.Backends.Cpu;
using MLNet.ConvNet.Ops;
using MLNet.ConvNet.Tests.TestKit;
using Xunit;

namespace MLNet.ConvNet.Tests;

public class BatchNormTests
{
    /// <summary>Per-channel batch statistics of x [N, C, inner...] by the textbook definition, in double.</summary>
    private static (double[] Mean, double[] BiasedVar, double[] UnbiasedVar) Statistics(double[] x, int[] shape)
    {
        int n = shape[0], c = shape[1], inner = x.Length / (n * c), m = n * inner;
        var mean = new double[c]; var biased = new double[c]; var unbiased = new double[c];
        for (int ch = 0; ch < c; ch++)
        {
            var values = new List<double>();
            for (int s = 0; s < n; s++)
                for (int i = 0; i < inner; i++) values.Add(x[(s * c + ch) * inner + i]);
            mean[ch] = values.Average();
            double squares = values.Sum(v => (v - mean[ch]) * (v - mean[ch]));
            biased[ch] = squares / m;
            unbiased[ch] = squares / (m - 1);
        }
        return (mean, biased, unbiased);
    }

    /// <summary>y = gamma (x - mean) / sqrt(var + eps) + beta with the given per-channel statistics.</summary>
    private static double[] Normalize(double[] x, int[] shape, double[] gamma, double[] beta, double[] mean, double[] variance, double eps)
    {
        int n = shape[0], c = shape[1], inner = x.Length / (n * c);
        var y = new double[x.Length];
        for (int s = 0; s < n; s++)
            for (int ch = 0; ch < c; ch++)
                for (int i = 0; i < inner; i++)
                {
                    int at = (s * c + ch) * inner + i;
                    y[at] = gamma[ch] * (x[at] - mean[ch]) / Math.Sqrt(variance[ch] + eps) + beta[ch];
                }
        return y;
    }

    /// <summary>Training-mode forward: normalize with the batch's own mean and biased variance.</summary>
    private static double[] TrainingReference(double[] x, int[] shape, double[] gamma, double[] beta, double eps)
    {
        var (mean, biased, _) = Statistics(x, shape);
        return Normalize(x, shape, gamma, beta, mean, biased, eps);
    }

    public static TheoryData<int[], float> Shapes => new()
    {
        { new[] { 6, 4 }, 0.1f },             // [N, F]: per feature
        { new[] { 2, 3, 7 }, 0.1f },          // [N, C, X]
        { new[] { 3, 2, 4, 5 }, 0.3f },       // [N, C, H, W]
        { new[] { 2, 2, 3, 2, 3 }, 1f },      // [N, C, D, H, W]; momentum 1 keeps only the batch
        { new[] { 1, 3, 3, 3 }, 0f },         // one sample, statistics over space; momentum 0 keeps the old
        { new[] { 2, 5 }, 0.5f },             // two values per feature: the smallest batch allowed
    };

    private sealed record Inputs(float[] X, float[] Gamma, float[] Beta, float[] RunningMean, float[] RunningVar);

    private static Inputs RandomInputs(Random rng, int[] shape)
    {
        int length = new Shape(shape).Length, c = shape[1];
        var x = TestData.Uniform(rng, length, 2f);
        // A different offset per channel, so centering is exercised.
        int inner = length / (shape[0] * c);
        for (int i = 0; i < length; i++) x[i] += (i / inner % c) * 1.5f - 2f;
        var gamma = TestData.Uniform(rng, c, 2f);
        var beta = TestData.Uniform(rng, c);
        var runningMean = TestData.Uniform(rng, c);
        var runningVar = Array.ConvertAll(TestData.Uniform(rng, c), v => 1f + v * 0.5f);
        return new Inputs(x, gamma, beta, runningMean, runningVar);
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void TrainingForwardMatchesFormulaAndUpdatesRunningStatistics(int[] shape, float momentum)
    {
        var rng = new Random(shape.Length * 100 + shape[1]);
        var input = RandomInputs(rng, shape);
        int c = shape[1];
        var runningMean = Tensor.FromHost(input.RunningMean, c);
        var runningVar = Tensor.FromHost(input.RunningVar, c);
        const float eps = 1e-3f;
        var y = BatchNorm.ForwardTraining(Tensor.FromHost(input.X, shape), Tensor.FromHost(input.Gamma, c), Tensor.FromHost(input.Beta, c),
            runningMean, runningVar, out var cache, eps, momentum);

        var x = TestData.ToDouble(input.X);
        var (mean, biased, unbiased) = Statistics(x, shape);
        // Every output is a few double operations rounded once: 1e-6 of the scale is ~10 float ulps.
        GradCheck.AssertClose(y.ToHost(), TrainingReference(x, shape, TestData.ToDouble(input.Gamma), TestData.ToDouble(input.Beta), eps), "BN y", relTol: 1e-6);
        GradCheck.AssertClose(cache.SavedMean.ToHost(), mean, "saved mean", relTol: 1e-6);
        GradCheck.AssertClose(cache.SavedInvStd.ToHost(), biased.Select(v => 1 / Math.Sqrt(v + eps)).ToArray(), "saved invstd", relTol: 1e-6);
        var wantMean = new double[c]; var wantVar = new double[c];
        for (int ch = 0; ch < c; ch++)
        {
            wantMean[ch] = (1 - momentum) * (double)input.RunningMean[ch] + momentum * mean[ch];
            wantVar[ch] = (1 - momentum) * (double)input.RunningVar[ch] + momentum * unbiased[ch];
        }
        GradCheck.AssertClose(runningMean.ToHost(), wantMean, "running mean", relTol: 1e-6);
        GradCheck.AssertClose(runningVar.ToHost(), wantVar, "running variance (unbiased)", relTol: 1e-6);
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void TrainingOutputIsStandardizedPerChannel(int[] shape, float momentum)
    {
        // With gamma = 1 and beta = 0 each channel of y has mean 0 and biased variance var / (var + eps).
        var rng = new Random(shape.Length * 7 + 1);
        var input = RandomInputs(rng, shape);
        int c = shape[1];
        var ones = Tensor.FromHost(Enumerable.Repeat(1f, c).ToArray(), c);
        var y = BatchNorm.ForwardTraining(Tensor.FromHost(input.X, shape), ones, Tensor.Zeros(new Shape(c)),
            Tensor.Zeros(new Shape(c)), Tensor.Zeros(new Shape(c)), out _, 1e-5f, momentum);
        var (_, biasedX, _) = Statistics(TestData.ToDouble(input.X), shape);
        var (meanY, biasedY, _) = Statistics(TestData.ToDouble(y), shape);
        for (int ch = 0; ch < c; ch++)
        {
            Assert.True(Math.Abs(meanY[ch]) < 1e-6, $"channel {ch}: mean {meanY[ch]}");
            Assert.True(Math.Abs(biasedY[ch] - biasedX[ch] / (biasedX[ch] + 1e-5)) < 1e-5, $"channel {ch}: variance {biasedY[ch]}");
        }
    }

    public static TheoryData<int[]> InferenceShapes => new() { new[] { 6, 4 }, new[] { 2, 3, 7 }, new[] { 3, 2, 4, 5 }, new[] { 2, 2, 3, 2, 3 }, new[] { 1, 3 } };

    [Theory]
    [MemberData(nameof(InferenceShapes))]
    public void InferenceUsesGivenStatistics(int[] shape)
    {
        var rng = new Random(shape.Length * 13 + shape[0]);
        var input = RandomInputs(rng, shape);
        int c = shape[1];
        const float eps = 1e-5f;
        var meanT = Tensor.FromHost(input.RunningMean, c);
        var varT = Tensor.FromHost(input.RunningVar, c);
        var y = BatchNorm.ForwardInference(Tensor.FromHost(input.X, shape), Tensor.FromHost(input.Gamma, c), Tensor.FromHost(input.Beta, c), meanT, varT, eps);
        var want = Normalize(TestData.ToDouble(input.X), shape, TestData.ToDouble(input.Gamma), TestData.ToDouble(input.Beta),
            TestData.ToDouble(input.RunningMean), TestData.ToDouble(input.RunningVar), eps);
        GradCheck.AssertClose(y.ToHost(), want, "BN inference y", relTol: 1e-6);
        // Inference leaves the statistics alone.
        Assert.Equal(input.RunningMean, meanT.ToHost());
        Assert.Equal(input.RunningVar, varT.ToHost());
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void BackwardMatchesFiniteDifferences(int[] shape, float momentum)
    {
        var rng = new Random(shape.Length * 29 + shape[1]);
        var input = RandomInputs(rng, shape);
        int c = shape[1];
        const float eps = 1e-3f;
        var dyData = TestData.Uniform(rng, input.X.Length);
        var x = Tensor.FromHost(input.X, shape);
        var gamma = Tensor.FromHost(input.Gamma, c);
        BatchNorm.ForwardTraining(x, gamma, Tensor.FromHost(input.Beta, c), Tensor.FromHost(input.RunningMean, c),
            Tensor.FromHost(input.RunningVar, c), out var cache, eps, momentum);
        var (dx, dgamma, dbeta) = BatchNorm.Backward(x, Tensor.FromHost(dyData, shape), gamma, cache);

        var xd = TestData.ToDouble(input.X); var gd = TestData.ToDouble(input.Gamma); var bd = TestData.ToDouble(input.Beta);
        var dy = TestData.ToDouble(dyData);
        // Default tolerance (1e-4 of the largest gradient): dx = k (m dy - sum dy - xhat sum dy xhat) cancels,
        // but in double; the float32 error left is the saved mean and invstd (~6e-8 relative each, times
        // |mean|/std <= ~10 here) and the final rounding, well below 1e-5.
        GradCheck.AssertClose(dx.ToHost(), GradCheck.Numeric(v => TrainingReference(v, shape, gd, bd, eps), xd, dy), "BN dx");
        GradCheck.AssertClose(dgamma.ToHost(), GradCheck.Numeric(g => TrainingReference(xd, shape, g, bd, eps), gd, dy), "BN dgamma");
        GradCheck.AssertClose(dbeta.ToHost(), GradCheck.Numeric(b => TrainingReference(xd, shape, gd, b, eps), bd, dy), "BN dbeta");
    }

    [Fact]
    public void ThreadCountDoesNotChangeResults()
    {
        int[] shape = [4, 6, 9, 7];
        var rng = new Random(8);
        var input = RandomInputs(rng, shape);
        var dyData = TestData.Uniform(rng, input.X.Length);
        int c = shape[1];
        float[][] Run(CpuBackend b)
        {
            var x = Tensor.FromHost(input.X, new Shape(shape), b);
            var gamma = Tensor.FromHost(input.Gamma, new Shape(c), b);
            var rm = Tensor.FromHost(input.RunningMean, new Shape(c), b);
            var rv = Tensor.FromHost(input.RunningVar, new Shape(c), b);
            var y = BatchNorm.ForwardTraining(x, gamma, Tensor.FromHost(input.Beta, new Shape(c), b), rm, rv, out var cache);
            var (dx, dg, db) = BatchNorm.Backward(x, Tensor.FromHost(dyData, new Shape(shape), b), gamma, cache);
            var yi = BatchNorm.ForwardInference(x, gamma, gamma, rm, rv);
            return [y.ToHost(), rm.ToHost(), rv.ToHost(), cache.SavedMean.ToHost(), cache.SavedInvStd.ToHost(), dx.ToHost(), dg.ToHost(), db.ToHost(), yi.ToHost()];
        }
        var one = Run(new CpuBackend(maxThreads: 1));
        foreach (var backend in new[] { CpuBackend.Default, new CpuBackend(maxThreads: 4) })
        {
            var other = Run(backend);
            for (int i = 0; i < one.Length; i++) Assert.Equal(one[i], other[i]);
        }
    }

    [Fact]
    public void NaNInOneChannelStaysInThatChannel()
    {
        int[] shape = [2, 3, 4];
        var data = TestData.Uniform(new Random(9), 24);
        data[4 + 2] = float.NaN; // sample 0, channel 1
        var y = BatchNorm.ForwardTraining(Tensor.FromHost(data, shape), Tensor.FromHost([1f, 1, 1], 3), Tensor.Zeros(new Shape(3)),
            Tensor.Zeros(new Shape(3)), Tensor.FromHost([1f, 1, 1], 3), out var cache).ToHost();
        for (int i = 0; i < 24; i++) Assert.Equal(i / 4 % 3 == 1, float.IsNaN(y[i]));
        Assert.True(float.IsNaN(cache.SavedMean.ToHost()[1]));
    }

    // ---- bad arguments ----

    private static Tensor Vec(int c) => Tensor.FromHost(Enumerable.Repeat(1f, c).ToArray(), c);

    [Fact]
    public void RejectsGammaOfWrongLength()
    {
        var x = Tensor.Zeros(new Shape(2, 3, 4, 4));
        var e = Assert.Throws<ArgumentException>(() => BatchNorm.ForwardTraining(x, Vec(4), Vec(3), Vec(3), Vec(3), out _));
        Assert.Equal("gamma", e.ParamName);
        Assert.Contains("[4]", e.Message);
        Assert.Contains("[2, 3, 4, 4]", e.Message);
        e = Assert.Throws<ArgumentException>(() => BatchNorm.ForwardInference(x, Vec(3), Vec(3), Vec(3), Vec(2)));
        Assert.Equal("variance", e.ParamName);
        Assert.Contains("[2]", e.Message);
    }

    [Theory]
    [InlineData(0f)]
    [InlineData(-1e-5f)]
    [InlineData(float.NaN)]
    public void RejectsEpsilonNotPositive(float eps)
    {
        var x = Tensor.Zeros(new Shape(2, 3));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => BatchNorm.ForwardTraining(x, Vec(3), Vec(3), Vec(3), Vec(3), out _, eps));
        Assert.Equal("epsilon", e.ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => BatchNorm.ForwardInference(x, Vec(3), Vec(3), Vec(3), Vec(3), eps));
    }

    [Theory]
    [InlineData(-0.1f)]
    [InlineData(1.5f)]
    [InlineData(float.NaN)]
    public void RejectsMomentumOutsideUnitInterval(float momentum)
    {
        var x = Tensor.Zeros(new Shape(2, 3));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => BatchNorm.ForwardTraining(x, Vec(3), Vec(3), Vec(3), Vec(3), out _, momentum: momentum));
        Assert.Equal("momentum", e.ParamName);
        Assert.Contains(momentum.ToString(), e.Message);
    }

    [Theory]
    [InlineData(new[] { 1, 3 }, "[1, 3]")]
    [InlineData(new[] { 1, 3, 1, 1 }, "[1, 3, 1, 1]")]
    public void RejectsTrainingWithOneValuePerChannel(int[] shape, string printed)
    {
        var e = Assert.Throws<ArgumentException>(() => BatchNorm.ForwardTraining(Tensor.Zeros(new Shape(shape)), Vec(3), Vec(3), Vec(3), Vec(3), out _));
        Assert.Equal("x", e.ParamName);
        Assert.Contains(printed, e.Message);
        // Inference with fixed statistics is fine on a single value.
        Assert.Equal(3, BatchNorm.ForwardInference(Tensor.Zeros(new Shape(shape)), Vec(3), Vec(3), Vec(3), Vec(3)).Length);
    }

    [Theory]
    [InlineData(new[] { 6 })]
    [InlineData(new[] { 1, 2, 1, 1, 1, 2 })]
    public void RejectsUnsupportedRank(int[] shape)
    {
        var e = Assert.Throws<ArgumentException>(() => BatchNorm.ForwardInference(Tensor.Zeros(new Shape(shape)), Vec(2), Vec(2), Vec(2), Vec(2)));
        Assert.Equal("x", e.ParamName);
        Assert.Contains(new Shape(shape).ToString(), e.Message);
    }

    [Fact]
    public void BackwardRejectsMismatchedGradient()
    {
        var x = Tensor.FromHost(TestData.Uniform(new Random(1), 12), 2, 3, 2);
        BatchNorm.ForwardTraining(x, Vec(3), Vec(3), Vec(3), Vec(3), out var cache);
        var e = Assert.Throws<ArgumentException>(() => BatchNorm.Backward(x, Tensor.Zeros(new Shape(2, 3, 3)), Vec(3), cache));
        Assert.Equal("dy", e.ParamName);
        Assert.Contains("[2, 3, 3]", e.Message);
        Assert.Contains("[2, 3, 2]", e.Message);
        e = Assert.Throws<ArgumentException>(() => BatchNorm.Backward(x, x, Vec(2), cache));
        Assert.Equal("gamma", e.ParamName);
        // A cache from a batch with another channel count.
        BatchNorm.ForwardTraining(Tensor.Zeros(new Shape(2, 4)), Vec(4), Vec(4), Vec(4), Vec(4), out var otherCache);
        e = Assert.Throws<ArgumentException>(() => BatchNorm.Backward(x, x, Vec(3), otherCache));
        Assert.Equal("cache", e.ParamName);
        Assert.Contains("[4]", e.Message);
    }
}
