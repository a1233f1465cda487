using Microsoft.ML;
using MLNet.ConvNet.Ops;
using MLNet.ConvNet.Transforms.Tests.TestKit;
using Xunit;

namespace MLNet.ConvNet.Transforms.Tests;

/// <summary>
/// ApplyBatchNormalization: given statistics equal to <see cref="BatchNorm.ForwardInference"/>; statistics fitted per
/// channel equal to a float64 computation in this file; per-feature flat rows; replacing the input column (the saved
/// twin then copies and drops a helper column); errors for mismatched lengths and NaN while fitting.
/// </summary>
public class BatchNormTransformTests
{
    private readonly MLContext _ml = new(seed: 1);

    [Fact]
    public void GivenStatisticsEqualEngine()
    {
        var rowShape = new Shape(3, 4, 5);
        var data = Rows.View(_ml, Rows.Random(2, 23, rowShape.Length), 3, 4, 5);
        float[] mean = [0.1f, -0.2f, 0.3f], variance = [0.5f, 2f, 0.01f], scale = [1.5f, -1f, 0.7f], bias = [0f, 0.25f, -3f];
        var estimator = _ml.Transforms.ApplyBatchNormalization(new BatchNormEstimator.Options
        {
            OutputColumnName = "BN", InputColumnName = "Features", Mean = mean, Variance = variance, Scale = scale, Bias = bias, Epsilon = 1e-3f, BatchSize = 6,
        });
        Workout.Run(_ml, estimator, data, "Features", "BN", rowShape,
            x => BatchNorm.ForwardInference(x, T(scale), T(bias), T(mean), T(variance), 1e-3f));
    }

    [Theory]
    [InlineData(new[] { 3, 4, 5 })]
    [InlineData(new[] { 6 })]
    [InlineData(new[] { 2, 3, 2, 2 })]
    public void FittedStatisticsArePerChannelMeanAndBiasedVariance(int[] rowDims)
    {
        var rowShape = new Shape(rowDims);
        int c = rowDims[0], inner = rowShape.SizeFrom(1);
        // An offset of 100 per channel checks the shifted sums keep precision when the mean dwarfs the spread.
        var rows = Rows.Random(rowDims.Length, 31, rowShape.Length).Select(r => r.Select((v, i) => v + 100f * (i / inner)).ToArray()).ToArray();
        var data = Rows.View(_ml, rows, rowDims);
        var t = _ml.Transforms.ApplyBatchNormalization("BN", "Features").Fit(data);
        for (int ch = 0; ch < c; ch++)
        {
            var values = rows.SelectMany(r => r.Skip(ch * inner).Take(inner)).Select(v => (double)v).ToArray();
            double mean = values.Average(), variance = values.Select(v => (v - mean) * (v - mean)).Average();
            AssertFloatOf(mean, t.GetMean()[ch], $"mean of channel {ch}");
            AssertFloatOf(variance, t.GetVariance()[ch], $"variance of channel {ch}");
        }
        // The fitted transform standardizes the data it was fitted on (float32 rounding of x - mean near 300: ~3e-5).
        var output = Rows.Read(t.Transform(data), "BN");
        for (int ch = 0; ch < c; ch++)
        {
            var values = output.SelectMany(r => r.Skip(ch * inner).Take(inner)).Select(v => (double)v).ToArray();
            Assert.Equal(0, values.Average(), 4);
            Assert.Equal(1, values.Select(v => v * v).Average(), 4);
        }
    }

    [Fact]
    public void FittedTransformEqualsEngine()
    {
        var rowShape = new Shape(3, 4, 5);
        var data = Rows.View(_ml, Rows.Random(8, 17, rowShape.Length).Select(r => r.Select(v => 2 * v + 0.5f).ToArray()).ToArray(), 3, 4, 5);
        var fitted = _ml.Transforms.ApplyBatchNormalization("BN", "Features").Fit(data);
        Workout.Run(_ml, _ml.Transforms.ApplyBatchNormalization("BN", "Features"), data, "Features", "BN", rowShape,
            x => BatchNorm.ForwardInference(x, T(fitted.GetScale()), T(fitted.GetBias()), T(fitted.GetMean()), T(fitted.GetVariance())));
    }

    [Fact]
    public void ReplacingTheInputColumnSavesAndLoads()
    {
        var data = Rows.View(_ml, Rows.Random(4, 9, 2 * 3 * 3), 2, 3, 3);
        var t = _ml.Transforms.ApplyBatchNormalization("Features", mean: [0.5f, -0.5f], variance: [1f, 4f]).Fit(data);
        var output = t.Transform(data);
        Assert.Equal(1, output.Schema.Count(c => c.Name == "Features" && !c.IsHidden));
        var want = Rows.Read(output, "Features");
        using var loaded = Workout.SavedAndLoaded(_ml, t, data.Schema);
        var reloaded = loaded.Model.Transform(data);
        Rows.AssertClose(want, Rows.Read(reloaded, "Features"), "in-place batch norm after Load");
        // The helper column the ONNX output needed (ONNX names are unique) is dropped again.
        Assert.DoesNotContain(reloaded.Schema, c => c.Name == "Features__ConvNetOutput");
    }

    [Fact]
    public void StatisticsMustHaveOneValuePerChannel()
    {
        var data = Rows.View(_ml, Rows.Random(1, 3, 3 * 2 * 2), 3, 2, 2);
        var e = Assert.ThrowsAny<ArgumentException>(() => _ml.Transforms.ApplyBatchNormalization("BN", "Features", mean: [0, 0], variance: [1, 1]).Fit(data));
        Assert.Contains("'Features'", e.Message);
        Assert.Contains("[3, 2, 2]", e.Message);
        Assert.Contains("2 values", e.Message);
        Assert.ThrowsAny<ArgumentException>(() => _ml.Transforms.ApplyBatchNormalization("BN", "Features", mean: [0, 0, 0]));
        Assert.ThrowsAny<ArgumentException>(() => _ml.Transforms.ApplyBatchNormalization("BN", "Features", mean: [0, 0], variance: [1, -1]));
        Assert.ThrowsAny<ArgumentException>(() => _ml.Transforms.ApplyBatchNormalization("BN", "Features", epsilon: 0));
    }

    [Fact]
    public void NaNWhileFittingThrowsNamingColumnAndRow()
    {
        var rows = Rows.Random(1, 4, 2 * 2 * 2);
        rows[2][5] = float.NaN;
        var data = Rows.View(_ml, rows, 2, 2, 2);
        var e = Assert.Throws<InvalidOperationException>(() => _ml.Transforms.ApplyBatchNormalization("BN", "Features").Fit(data));
        Assert.Contains("'Features'", e.Message);
        Assert.Contains("row 2", e.Message);
        Assert.Contains("NaN", e.Message);
    }

    private static Tensor T(float[] values) => Tensor.FromHost(values, values.Length);

    /// <summary>The fitted statistics are computed in double and rounded once to float: within one float32 ulp.</summary>
    private static void AssertFloatOf(double want, float got, string what)
    {
        double ulp = MathF.BitIncrement(MathF.Abs(got)) - MathF.Abs(got);
        Assert.True(Math.Abs(got - want) <= ulp, $"{what}: {got:R}, expected {want:R} (more than one ulp {ulp:g3} apart)");
    }
}
