using MLNet.ConvNet.Layers;
using MLNet.ConvNet.Ops;
using Xunit;
using BatchNormLayer = MLNet.ConvNet.Layers.BatchNorm;
using Dense = MLNet.ConvNet.Layers.Dense;

namespace MLNet.ConvNet.Tests;

public class BatchNormFoldingTests
{
    /// <summary>Random running statistics, scales and shifts, so every term of the fold matters.</summary>
    private static void Randomize(Network network, Rng rng)
    {
        foreach (var b in network.Buffers)
            b.Value.CopyFromHost(Enumerable.Range(0, b.Value.Length).Select(_ => (float)(b.Name.EndsWith("var") ? 0.2 + 2 * rng.NextDouble() : rng.NextNormal())).ToArray());
        foreach (var norm in network.Layers.OfType<BatchNormLayer>())
            foreach (var t in norm.Parameters)
                t.Value.CopyFromHost(Enumerable.Range(0, t.Value.Length).Select(_ => (float)(0.5 + rng.NextDouble()) * (rng.NextDouble() < 0.5 ? -1 : 1)).ToArray());
    }

    [Fact]
    public void A_dense_layer_gets_the_scaled_weights_and_the_shifted_bias_by_the_formula()
    {
        var network = new Network([new Dense(2, bias: false), new BatchNormLayer(epsilon: 0.01f)]).Build(new Shape(3), seed: 1);
        var dense = (Dense)network.Layers[0];
        var norm = (BatchNormLayer)network.Layers[1];
        float[] w = [1, 2, 3, -4, 5, -6];
        float[] gamma = [2, -0.5f], beta = [0.25f, 1], mean = [1.5f, -2], variance = [3, 0.5f];
        dense.Weight!.Value.CopyFromHost(w);
        norm.Parameters[0].Value.CopyFromHost(gamma);
        norm.Parameters[1].Value.CopyFromHost(beta);
        norm.RunningMean!.CopyFromHost(mean);
        norm.RunningVariance!.CopyFromHost(variance);

        var folded = BatchNormFolding.Fold(network);

        var only = Assert.IsType<Dense>(Assert.Single(folded.Layers));
        Assert.True(only.HasBias);
        Assert.Equal(dense.Name, only.Name);
        var gotW = only.Weight!.Value.ToHost();
        var gotB = only.Bias!.Value.ToHost();
        for (int o = 0; o < 2; o++)
        {
            double s = gamma[o] / Math.Sqrt((double)variance[o] + 0.01f);
            for (int i = 0; i < 3; i++) Assert.Equal((float)(w[o * 3 + i] * s), gotW[o * 3 + i]);
            Assert.Equal((float)(-mean[o] * s + beta[o]), gotB[o]);
        }
    }

    [Theory]
    [InlineData("cnn2bn", new[] { 1, 12, 12 })]
    [InlineData("vgg", new[] { 3, 8, 8 })]
    public void A_folded_network_gives_the_logits_of_the_network_with_batch_norm(string name, int[] sample)
    {
        var network = Presets.ByName(name, classes: 5).Build(new Shape(sample), seed: 3);
        var rng = new Rng(8);
        Randomize(network, rng);

        var folded = BatchNormFolding.Fold(network);

        Assert.Empty(folded.AllLayers().OfType<BatchNormLayer>());
        Assert.Equal(network.Layers.Count - network.Layers.OfType<BatchNormLayer>().Count(), folded.Layers.Count);
        var shape = new Shape([3, .. sample]);
        var x = Enumerable.Range(0, shape.Length).Select(_ => (float)rng.NextNormal()).ToArray();
        var want = network.Forward(Tensor.FromHost(x, shape), training: false).ToHost();
        var got = folded.Forward(Tensor.FromHost(x, shape), training: false).ToHost();
        double tolerance = 1e-5 * want.Max(Math.Abs);
        for (int i = 0; i < want.Length; i++)
            Assert.True(Math.Abs(want[i] - got[i]) <= tolerance, $"{name} logit {i}: {got[i]} vs {want[i]}");
    }

    [Fact]
    public void A_network_with_nothing_to_fold_is_returned_as_it_is()
    {
        var network = Presets.LeNet5(classes: 3).Build(new Shape(1, 28, 28), seed: 1);
        Assert.Same(network, BatchNormFolding.Fold(network));
    }

    [Fact]
    public void An_unbuilt_network_is_refused()
    {
        var e = Assert.Throws<InvalidOperationException>(() => BatchNormFolding.Fold(Presets.Cnn2Bn()));
        Assert.Contains("not built", e.Message);
    }
}

public class BatchNormStatisticsTests
{
    [Theory]
    [InlineData(new[] { 4 })]
    [InlineData(new[] { 2, 3, 5 })]
    public void Fitted_statistics_are_the_per_channel_mean_and_biased_variance(int[] rowDims)
    {
        var shape = new Shape(rowDims);
        var rng = new Rng(4);
        // A large mean against the spread: the shifted sums must not cancel.
        var rows = Enumerable.Range(0, 7).Select(_ => Enumerable.Range(0, shape.Length).Select(_ => (float)(200 + 0.6 * rng.NextNormal())).ToArray()).ToArray();
        var statistics = new BatchNormStatistics(shape);
        statistics.AddBatch(rows.Take(3).SelectMany(r => r).ToArray(), 3);
        foreach (var row in rows.Skip(3)) statistics.Add(row);
        var (mean, variance) = statistics.Result();

        Assert.Equal(7, statistics.Rows);
        int c = shape[0], inner = shape.Length / c;
        for (int ch = 0; ch < c; ch++)
        {
            // The textbook two-pass definition in double.
            var values = rows.SelectMany(r => r.Skip(ch * inner).Take(inner)).Select(v => (double)v).ToArray();
            double m = values.Average(), v = values.Sum(x => (x - m) * (x - m)) / values.Length;
            AssertFloatOf(m, mean[ch], $"mean[{ch}]");
            AssertFloatOf(v, variance[ch], $"variance[{ch}]");
        }
    }

    [Fact]
    public void A_non_finite_value_throws_naming_the_row_and_channel_and_adds_nothing()
    {
        var statistics = new BatchNormStatistics(new Shape(2, 2));
        statistics.Add([1, 2, 3, 4]);
        var e = Assert.Throws<ArgumentException>(() => statistics.Add([1, 2, float.PositiveInfinity, 4]));
        Assert.Contains("row 1", e.Message);
        Assert.Contains("channel 1", e.Message);
        Assert.Equal(1, statistics.Rows);
        Assert.Equal(2, BatchNormStatistics.IndexOfNonFinite([0, 1, float.NaN]));
        Assert.Equal(-1, BatchNormStatistics.IndexOfNonFinite([0, 1]));
    }

    [Fact]
    public void No_rows_or_a_row_of_the_wrong_length_throw()
    {
        var statistics = new BatchNormStatistics(new Shape(3));
        Assert.Throws<InvalidOperationException>(() => statistics.Result());
        Assert.Throws<ArgumentException>(() => statistics.Add([1, 2]));
    }

    private static void AssertFloatOf(double want, float got, string what)
    {
        double ulp = MathF.BitIncrement(MathF.Abs(got)) - MathF.Abs(got);
        Assert.True(Math.Abs(got - want) <= ulp, $"{what}: {got:R}, expected {want:R} (more than one ulp {ulp:g3} apart)");
    }
}
