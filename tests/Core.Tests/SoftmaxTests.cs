using MLNet.ConvNet.Backends.Cpu;
using MLNet.ConvNet.Ops;
using MLNet.ConvNet.Tests.TestKit;
using Xunit;

namespace MLNet.ConvNet.Tests;

public class SoftmaxTests
{
    /// <summary>Row-wise softmax or log-softmax of [n, k] in double, shifted by the row max so 1000 does not overflow.</summary>
    private static double[] Reference(double[] x, int n, int k, bool log)
    {
        var y = new double[x.Length];
        for (int r = 0; r < n; r++)
        {
            var row = x.AsSpan(r * k, k).ToArray();
            double max = row.Max();
            double logSum = Math.Log(row.Sum(v => Math.Exp(v - max)));
            for (int j = 0; j < k; j++) y[r * k + j] = log ? row[j] - max - logSum : Math.Exp(row[j] - max - logSum);
        }
        return y;
    }

    /// <summary>Mean over rows of -log softmax(x)[label].</summary>
    private static double MeanCrossEntropy(double[] x, int n, int k, int[] labels)
    {
        var logp = Reference(x, n, k, log: true);
        double sum = 0;
        for (int r = 0; r < n; r++) sum -= logp[r * k + labels[r]];
        return sum / n;
    }

    /// <summary>
    /// Per-sample smoothed cross-entropy, written from the definition: q = (1 - e) onehot(label) + e / K and
    /// loss = -sum_k q_k log softmax(x)_k, in double.
    /// </summary>
    private static double[] SmoothedLosses(double[] x, int n, int k, int[] labels, double e)
    {
        var logp = Reference(x, n, k, log: true);
        var loss = new double[n];
        for (int r = 0; r < n; r++)
            for (int j = 0; j < k; j++)
            {
                double q = (j == labels[r] ? 1 - e : 0) + e / k;
                loss[r] -= q * logp[r * k + j];
            }
        return loss;
    }

    public static TheoryData<int, int, float> Sizes => new()
    {
        { 1, 1, 1f },
        { 3, 5, 2f },
        { 7, 10, 5f },
        { 2, 100, 10f },
        { 33, 4, 30f },   // logits spread wide: most of the mass on one class
    };

    private static float[] Logits(int n, int k, float scale, int seed) => TestData.Uniform(new Random(seed), n * k, scale);

    [Theory]
    [MemberData(nameof(Sizes))]
    public void ForwardMatchesDefinitionAndRowsSumToOne(int n, int k, float scale)
    {
        var data = Logits(n, k, scale, n * 100 + k);
        var x = Tensor.FromHost(data, n, k);
        var y = Softmax.Forward(x).ToHost();
        var logY = Softmax.LogForward(x).ToHost();
        // One exp per value in double, rounded once: 1e-6 of the output's scale.
        GradCheck.AssertClose(y, Reference(TestData.ToDouble(data), n, k, log: false), "softmax", relTol: 1e-6);
        GradCheck.AssertClose(logY, Reference(TestData.ToDouble(data), n, k, log: true), "log-softmax", relTol: 1e-6);
        for (int r = 0; r < n; r++)
        {
            double sum = 0;
            for (int j = 0; j < k; j++) sum += y[r * k + j];
            Assert.True(Math.Abs(sum - 1) < 1e-6 * k, $"row {r} sums to {sum}");
        }
    }

    [Theory]
    [MemberData(nameof(Sizes))]
    public void BackwardMatchesFiniteDifferences(int n, int k, float scale)
    {
        var data = Logits(n, k, Math.Min(scale, 5f), n * 10 + k);
        var dyData = TestData.Uniform(new Random(k), n * k);
        var x = Tensor.FromHost(data, n, k);
        var dy = Tensor.FromHost(dyData, n, k);
        var xd = TestData.ToDouble(data); var dyd = TestData.ToDouble(dyData);
        // Default tolerance (1e-4 of the largest gradient): the kernels read the float y (~6e-8 relative) and
        // sum K <= 100 products in double.
        GradCheck.AssertClose(Softmax.Backward(Softmax.Forward(x), dy).ToHost(),
            GradCheck.Numeric(v => Reference(v, n, k, log: false), xd, dyd), "softmax dx");
        GradCheck.AssertClose(Softmax.LogBackward(Softmax.LogForward(x), dy).ToHost(),
            GradCheck.Numeric(v => Reference(v, n, k, log: true), xd, dyd), "log-softmax dx");
    }

    private static int[] Labels(int n, int k, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => rng.Next(k)).ToArray();
    }

    [Theory]
    [MemberData(nameof(Sizes))]
    public void CrossEntropyMatchesDefinition(int n, int k, float scale)
    {
        var data = Logits(n, k, scale, n + k);
        var labels = Labels(n, k, n * k);
        var result = CrossEntropy.Forward(Tensor.FromHost(data, n, k), labels);
        var xd = TestData.ToDouble(data);
        var logp = Reference(xd, n, k, log: true);
        GradCheck.AssertClose(result.LossPerSample.ToHost(), Enumerable.Range(0, n).Select(r => -logp[r * k + labels[r]]).ToArray(), "loss per sample", relTol: 1e-6);
        GradCheck.AssertClose([result.MeanLoss], [MeanCrossEntropy(xd, n, k, labels)], "mean loss", relTol: 1e-6);
        GradCheck.AssertClose(result.Probabilities.ToHost(), Reference(xd, n, k, log: false), "probabilities", relTol: 1e-6);
    }

    [Theory]
    [MemberData(nameof(Sizes))]
    public void CrossEntropyGradientMatchesFiniteDifferences(int n, int k, float scale)
    {
        var data = Logits(n, k, Math.Min(scale, 5f), n * 3 + k);
        var labels = Labels(n, k, n + 2 * k);
        var dlogits = CrossEntropy.Backward(CrossEntropy.Forward(Tensor.FromHost(data, n, k), labels));
        // The gradient of the mean loss: a one-output function, projected with dy = [1].
        var want = GradCheck.Numeric(v => [MeanCrossEntropy(v, n, k, labels)], TestData.ToDouble(data), [1.0]);
        // Default tolerance: (p - onehot) / N from float probabilities, error ~1e-7 of the scale.
        GradCheck.AssertClose(dlogits.ToHost(), want, "cross-entropy dlogits");
    }

    /// <summary>Every size of <see cref="Sizes"/> with several smoothing values, including 0 and values near 1.</summary>
    public static TheoryData<int, int, float, float> SmoothedSizes
    {
        get
        {
            var data = new TheoryData<int, int, float, float>();
            foreach (var row in Sizes)
            {
                var (n, k, scale) = row.Data;
                foreach (float e in new[] { 0f, 0.05f, 0.1f, 0.5f, 0.95f }) data.Add(n, k, scale, e);
            }
            return data;
        }
    }

    [Theory]
    [MemberData(nameof(SmoothedSizes))]
    public void SmoothedCrossEntropyMatchesDefinition(int n, int k, float scale, float e)
    {
        var data = Logits(n, k, scale, 7 * n + k);
        var labels = Labels(n, k, n * k + 1);
        var x = Tensor.FromHost(data, n, k);
        var result = CrossEntropy.Forward(x, labels, e);
        var xd = TestData.ToDouble(data);
        var want = SmoothedLosses(xd, n, k, labels, e);
        // The loss is logsumexp (double) minus a q-weighted sum of K <= 100 logits in double, rounded once: 1e-6 of its scale.
        GradCheck.AssertClose(result.LossPerSample.ToHost(), want, "smoothed loss per sample", relTol: 1e-6);
        GradCheck.AssertClose([result.MeanLoss], [want.Average()], "smoothed mean loss", relTol: 1e-6);
        GradCheck.AssertClose(result.Probabilities.ToHost(), Reference(xd, n, k, log: false), "probabilities", relTol: 1e-6);
        Assert.Equal(e, result.LabelSmoothing);

        // The caller-owned overload computes the same values bit for bit.
        var (loss, probabilities) = (Tensor.Zeros(new Shape(n)), Tensor.Zeros(new Shape(n, k)));
        float mean = CrossEntropy.Forward(x, result.Labels, loss, probabilities, e);
        Assert.Equal(result.MeanLoss, mean);
        Assert.Equal(result.LossPerSample.ToHost(), loss.ToHost());
        Assert.Equal(result.Probabilities.ToHost(), probabilities.ToHost());
    }

    [Theory]
    [MemberData(nameof(SmoothedSizes))]
    public void SmoothedGradientMatchesFiniteDifferences(int n, int k, float scale, float e)
    {
        var data = Logits(n, k, Math.Min(scale, 5f), 5 * n + k);
        var labels = Labels(n, k, 3 * n + k);
        var result = CrossEntropy.Forward(Tensor.FromHost(data, n, k), labels, e);
        var dlogits = CrossEntropy.Backward(result).ToHost();
        var want = GradCheck.Numeric(v => [SmoothedLosses(v, n, k, labels, e).Average()], TestData.ToDouble(data), [1.0]);
        // Default tolerance: (p - q) / N from float probabilities and a float q, error ~1e-7 of the scale.
        GradCheck.AssertClose(dlogits, want, "smoothed dlogits");

        // The caller-owned overload, given the same smoothing, writes the same gradient bit for bit.
        var d = Tensor.Zeros(new Shape(n, k));
        CrossEntropy.Backward(result.Probabilities, result.Labels, d, e);
        Assert.Equal(dlogits, d.ToHost());
    }

    [Theory]
    [MemberData(nameof(Sizes))]
    public void ZeroSmoothingKeepsThePlainArithmeticBitForBit(int n, int k, float scale)
    {
        var data = Logits(n, k, scale, 11 * n + k);
        var labels = Labels(n, k, n + 5 * k);
        var x = Tensor.FromHost(data, n, k);
        var plain = CrossEntropy.Forward(x, labels);
        var zero = CrossEntropy.Forward(x, labels, labelSmoothing: 0f);
        Assert.Equal(plain.LossPerSample.ToHost(), zero.LossPerSample.ToHost());
        Assert.Equal(plain.MeanLoss, zero.MeanLoss);
        var dPlain = CrossEntropy.Backward(plain).ToHost();
        Assert.Equal(dPlain, CrossEntropy.Backward(zero).ToHost());

        // The arithmetic before label smoothing existed, replayed here: float32 loss = (float)(log sum exp(x - max) - (x[label] - max))
        // with the sum in double in index order, and dlogits = (1/N) * (p - 1f) at the label, (1/N) * p elsewhere.
        var p = plain.Probabilities.ToHost();
        var loss = plain.LossPerSample.ToHost();
        float invN = 1f / n;
        for (int r = 0; r < n; r++)
        {
            var row = data.AsSpan(r * k, k);
            double max = row.ToArray().Max(), sum = 0;
            foreach (float v in row) sum += Math.Exp(v - max);
            Assert.Equal((float)(Math.Log(sum) - (row[labels[r]] - max)), loss[r]);
            for (int j = 0; j < k; j++)
                Assert.Equal(invN * (j == labels[r] ? p[r * k + j] - 1f : p[r * k + j]), dPlain[r * k + j]);
        }
    }

    [Fact]
    public void SmoothedLossIsStableForHugeLogits()
    {
        float[] data = [1000f, -1000f, 0f, -1000f, 1000f, 999f];
        int[] labels = [0, 2];
        const int n = 2, k = 3;
        const float e = 0.1f;
        var result = CrossEntropy.Forward(Tensor.FromHost(data, n, k), labels, e);
        var loss = result.LossPerSample.ToHost();
        Assert.All(loss, v => Assert.True(float.IsFinite(v)));
        GradCheck.AssertClose(loss, SmoothedLosses(TestData.ToDouble(data), n, k, labels, e), "smoothed loss", relTol: 1e-6);
        Assert.All(CrossEntropy.Backward(result).ToHost(), v => Assert.True(float.IsFinite(v)));
    }

    [Fact]
    public void StableForHugeLogits()
    {
        float[] data =
        [
            1000f, -1000f, 0f,
            -1000f, -1000f, -1000f,
            1000f, 1000f, 999f,
            -1000f, 1000f, -1000f,
        ];
        const int n = 4, k = 3;
        var x = Tensor.FromHost(data, n, k);
        var xd = TestData.ToDouble(data);
        var y = Softmax.Forward(x).ToHost();
        var logY = Softmax.LogForward(x).ToHost();
        Assert.All(y, v => Assert.True(float.IsFinite(v)));
        Assert.All(logY, v => Assert.True(float.IsFinite(v)));
        GradCheck.AssertClose(y, Reference(xd, n, k, log: false), "softmax", relTol: 1e-6);
        GradCheck.AssertClose(logY, Reference(xd, n, k, log: true), "log-softmax", relTol: 1e-6);
        Assert.Equal(1f, y[0]);
        Assert.Equal(-2000f, logY[1]);                   // log softmax of -1000 next to 1000
        Assert.Equal(1f / 3, y[3], 1e-7f);

        int[] labels = [1, 0, 2, 1];
        var result = CrossEntropy.Forward(x, labels);
        var loss = result.LossPerSample.ToHost();
        Assert.Equal(2000f, loss[0]);                    // -log softmax = 1000 - (-1000)
        Assert.Equal(MathF.Log(3), loss[1], 1e-6f);
        Assert.Equal(1 + Math.Log(2 + Math.Exp(-1)), loss[2], 1e-5);
        Assert.Equal(0f, loss[3]);
        var grad = CrossEntropy.Backward(result).ToHost();
        Assert.All(grad, v => Assert.True(float.IsFinite(v)));
        Assert.Equal(-0.25f, grad[1]);                   // (0 - 1) / N at the label of row 0
    }

    [Fact]
    public void ThreadCountDoesNotChangeResults()
    {
        const int n = 64, k = 37;
        var data = Logits(n, k, 8f, 5);
        var labels = Labels(n, k, 6);
        float[][] Run(CpuBackend b)
        {
            var x = Tensor.FromHost(data, new Shape(n, k), b);
            var ce = CrossEntropy.Forward(x, labels);
            var smoothed = CrossEntropy.Forward(x, labels, 0.2f);
            return [Softmax.Forward(x).ToHost(), Softmax.LogForward(x).ToHost(), ce.LossPerSample.ToHost(), CrossEntropy.Backward(ce).ToHost(),
                smoothed.LossPerSample.ToHost(), CrossEntropy.Backward(smoothed).ToHost()];
        }
        var one = Run(new CpuBackend(maxThreads: 1));
        var many = Run(new CpuBackend(maxThreads: 4));
        for (int i = 0; i < one.Length; i++) Assert.Equal(one[i], many[i]);
    }

    [Fact]
    public void NaNStaysInItsRow()
    {
        var y = Softmax.Forward(Tensor.FromHost([1f, float.NaN, 2f, 1f, 2f, 3f], 2, 3)).ToHost();
        Assert.All(y.AsSpan(0, 3).ToArray(), v => Assert.True(float.IsNaN(v)));
        Assert.All(y.AsSpan(3, 3).ToArray(), v => Assert.False(float.IsNaN(v)));
    }

    // ---- bad arguments ----

    [Theory]
    [InlineData(new[] { 6 })]
    [InlineData(new[] { 2, 3, 4 })]
    public void RejectsLogitsNotRankTwo(int[] shape)
    {
        var x = Tensor.Zeros(new Shape(shape));
        string printed = new Shape(shape).ToString();
        var e = Assert.Throws<ArgumentException>(() => Softmax.Forward(x));
        Assert.Equal("x", e.ParamName);
        Assert.Contains(printed, e.Message);
        e = Assert.Throws<ArgumentException>(() => CrossEntropy.Forward(x, [0, 0]));
        Assert.Equal("logits", e.ParamName);
        Assert.Contains(printed, e.Message);
    }

    [Theory]
    [InlineData(3)]
    [InlineData(-1)]
    public void RejectsLabelOutOfRange(int label)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => CrossEntropy.Forward(Tensor.Zeros(new Shape(2, 3)), [0, label]));
        Assert.Equal("labels", e.ParamName);
        Assert.Contains("[2, 3]", e.Message);
        Assert.Contains($"label {label} at row 1", e.Message);
    }

    [Fact]
    public void RejectsWrongLabelCount()
    {
        var e = Assert.Throws<ArgumentException>(() => CrossEntropy.Forward(Tensor.Zeros(new Shape(4, 3)), [0, 1, 2]));
        Assert.Equal("labels", e.ParamName);
        Assert.Contains("[4, 3]", e.Message);
        Assert.Contains("3 labels", e.Message);
    }

    [Theory]
    [InlineData(1.5f)]
    [InlineData(-1f)]
    [InlineData(3f)]
    [InlineData(float.NaN)]
    public void KernelRejectsLabelThatIsNotAClassIndex(float label)
    {
        // The kernel reads labels as indices, so it refuses bad ones itself rather than read a wrong element.
        var b = CpuBackend.Default;
        var logits = Tensor.Zeros(new Shape(2, 3));
        var labels = Tensor.FromHost([0f, label], 2);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => b.SoftmaxCrossEntropyForward(logits, labels, 0f, Tensor.Zeros(new Shape(2)), Tensor.Zeros(new Shape(2, 3))));
        Assert.Equal("labels", e.ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => b.SoftmaxCrossEntropyBackward(logits, labels, 0f, 1f, Tensor.Zeros(new Shape(2, 3))));
    }

    [Theory]
    [InlineData(-0.1f)]
    [InlineData(-float.Epsilon)]         // the smallest negative float
    [InlineData(1f)]
    [InlineData(1.5f)]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    public void RejectsLabelSmoothingOutsideZeroToOne(float e)
    {
        var x = Tensor.Zeros(new Shape(2, 3));
        var labels = Tensor.FromHost([0f, 2f], 2);
        void Check(Action call)
        {
            var error = Assert.Throws<ArgumentOutOfRangeException>(call);
            Assert.Equal("labelSmoothing", error.ParamName);
            Assert.Contains($"labelSmoothing = {e}", error.Message);
            Assert.Contains("[0, 1)", error.Message);
        }
        Check(() => CrossEntropy.Forward(x, [0, 2], e));
        Check(() => CrossEntropy.Forward(x, labels, Tensor.Zeros(new Shape(2)), Tensor.Zeros(new Shape(2, 3)), e));
        Check(() => CrossEntropy.Backward(x, labels, Tensor.Zeros(new Shape(2, 3)), e));
    }

    [Fact]
    public void BackwardRejectsMismatchedGradient()
    {
        var y = Tensor.Zeros(new Shape(2, 3));
        var e = Assert.Throws<ArgumentException>(() => Softmax.Backward(y, Tensor.Zeros(new Shape(3, 2))));
        Assert.Equal("dy", e.ParamName);
        Assert.Contains("[3, 2]", e.Message);
        Assert.Contains("[2, 3]", e.Message);
    }

    [Fact]
    public void LossAndCorrect_checks_its_shapes_and_row_before_the_kernel()
    {
        var p = Tensor.FromHost([0.1f, 0.9f, 0.8f, 0.2f, 0.5f, 0.5f], 3, 2);
        var loss = Tensor.FromHost([1f, 2f, 3f], 3);
        var labels = Tensor.FromHost([1f, 1f, 0f], 3);
        var stats = Tensor.Zeros(new Shape(2, 2));
        CrossEntropy.LossAndCorrect(loss, p, labels, stats, 1);
        // Row 1 holds the loss sum and the rows whose first maximum is the label (rows 0 and 2; row 1 predicts 0).
        Assert.Equal(new[] { 0f, 0f, 6f, 2f }, stats.ToHost());
        var e = Assert.Throws<ArgumentException>(() => CrossEntropy.LossAndCorrect(Tensor.FromHost([1f, 2f], 2), p, labels, stats, 0));
        Assert.Contains("need 3 rows", e.Message);
        var r = Assert.Throws<ArgumentOutOfRangeException>(() => CrossEntropy.LossAndCorrect(loss, p, labels, stats, 2));
        Assert.Contains("has no row 2", r.Message);
    }
}
