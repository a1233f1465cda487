using Microsoft.ML;
using MLNet.ConvNet.Ops;
using MLNet.ConvNet.Transforms.Tests.TestKit;
using Xunit;

namespace MLNet.ConvNet.Transforms.Tests;

/// <summary>
/// ApplyConvolution: the seed's examples through a pipeline; random 1-D/2-D/3-D configurations (padding, stride,
/// dilation, groups, both modes, bias) equal to <see cref="Convolution.Forward"/> on the same rows, through the workout
/// (row mapper, Save/Load); shape errors naming the column and both shapes.
/// </summary>
public class ConvolutionTransformTests
{
    private readonly MLContext _ml = new(seed: 1);

    [Fact]
    public void SeedExamples1D()
    {
        // w = [1,2,3], x = [1..7]: conv4 gives [10,16,22,28,34]; padding 1: [4,10,16,22,28,34,32]; padding 1, stride 3: [4,22,32].
        var data = Rows.View(_ml, [[1, 2, 3, 4, 5, 6, 7]], 1, 7);
        var w = Tensor.FromHost([1f, 2, 3], 1, 1, 3);
        (ConvolutionOptions options, float[] want)[] cases =
        [
            (ConvolutionOptions.Default, [10, 16, 22, 28, 34]),
            (new ConvolutionOptions { Padding = 1 }, [4, 10, 16, 22, 28, 34, 32]),
            (new ConvolutionOptions { Padding = 1, Stride = 3 }, [4, 22, 32]),
        ];
        foreach (var (options, want) in cases)
        {
            var t = _ml.Transforms.ApplyConvolution("Y", w, inputColumnName: "Features", options: options).Fit(data);
            Assert.Equal(new Shape(1, want.Length), t.OutputShape);
            Assert.Equal(want, Rows.Read(t.Transform(data), "Y")[0]);
        }
    }

    [Fact]
    public void SeedExample2D()
    {
        // Knet: w = [1 3; 2 4] and x = reshape(1:9, 3, 3) give [23 53; 33 63]; column-major, so our memory is w = [1,2,3,4],
        // x = [1..9] and y = [23, 33, 53, 63].
        var data = Rows.View(_ml, [[1, 2, 3, 4, 5, 6, 7, 8, 9]], 1, 3, 3);
        var t = _ml.Transforms.ApplyConvolution("Y", Tensor.FromHost([1f, 2, 3, 4], 1, 1, 2, 2), inputColumnName: "Features").Fit(data);
        Assert.Equal([23f, 33, 53, 63], Rows.Read(t.Transform(data), "Y")[0]);
        using var loaded = Workout.SavedAndLoaded(_ml, t, data.Schema);
        // The exported kernel is flipped (ONNX Conv is a cross-correlation): the loaded model gives the same numbers.
        Assert.Equal([23f, 33, 53, 63], Rows.Read(loaded.Model.Transform(data), "Y")[0]);
    }

    public static TheoryData<string, int[], int[], ConvolutionOptions, bool> Configurations => new()
    {
        { "2-D padding, bias", [3, 9, 8], [4, 3, 3, 3], new ConvolutionOptions { Padding = 1 }, true },
        { "2-D groups, stride, dilation, cross-correlation", [4, 10, 11], [6, 2, 3, 2], new ConvolutionOptions { Groups = 2, Stride = new[] { 2, 1 }, Dilation = new[] { 1, 2 }, Mode = ConvolutionMode.CrossCorrelation }, false },
        { "1-D stride 3, padding 2", [2, 17], [3, 2, 4], new ConvolutionOptions { Padding = 2, Stride = 3 }, true },
        { "3-D per-axis padding", [2, 5, 6, 4], [2, 2, 2, 3, 2], new ConvolutionOptions { Padding = new[] { 1, 0, 1 } }, true },
        { "1x1 depthwise", [3, 5, 5], [3, 1, 1, 1], new ConvolutionOptions { Groups = 3 }, false },
    };

    [Theory, MemberData(nameof(Configurations))]
    public void EqualsEngine(string name, int[] rowDims, int[] filterDims, ConvolutionOptions options, bool withBias)
    {
        var rowShape = new Shape(rowDims);
        var w = Rows.RandomTensor(name.Length, filterDims);
        var b = withBias ? Rows.RandomTensor(name.Length + 1, filterDims[0]) : null;
        // 37 rows in batches of 8: four full batches and a partial one.
        var data = Rows.View(_ml, Rows.Random(11, 37, rowShape.Length), rowDims);
        var estimator = _ml.Transforms.ApplyConvolution(new ConvolutionEstimator.Options
        {
            OutputColumnName = "Conv", InputColumnName = "Features", Filter = w, Bias = b, Convolution = options, BatchSize = 8,
        });
        var t = Workout.Run(_ml, estimator, data, "Features", "Conv", rowShape, x => Convolution.Forward(x, w, b, options));
        Assert.Equal(w.Shape, t.FilterShape);
        Assert.Equal(w.ToHost(), t.GetFilter());
    }

    [Fact]
    public void FlatVectorWithInputShape()
    {
        var w = Rows.RandomTensor(3, 2, 1, 3, 3);
        var data = Rows.View(_ml, Rows.Random(5, 10, 64), 64);
        var t = _ml.Transforms.ApplyConvolution("Conv", w, inputColumnName: "Features", inputShape: [1, 8, 8]).Fit(data);
        Assert.Equal(new Shape(2, 6, 6), t.OutputShape);
        var want = Rows.Engine(x => Convolution.Forward(x, w), Rows.Read(data, "Features"), new Shape(1, 8, 8));
        Rows.AssertSame(want, Rows.Read(t.Transform(data), "Conv"), "flat input");
    }

    [Fact]
    public void FilterIsCopied()
    {
        var w = Tensor.FromHost([1f, 2, 3], 1, 1, 3);
        var data = Rows.View(_ml, [[1, 2, 3, 4, 5, 6, 7]], 1, 7);
        var estimator = _ml.Transforms.ApplyConvolution("Y", w, inputColumnName: "Features");
        w.CopyFromHost([0f, 0, 0]);
        Assert.Equal([10f, 16, 22, 28, 34], Rows.Read(estimator.Fit(data).Transform(data), "Y")[0]);
    }

    [Fact]
    public void FilterChannelsMustMatchInputChannels()
    {
        var data = Rows.View(_ml, Rows.Random(1, 2, 3 * 8 * 8), 3, 8, 8);
        var estimator = _ml.Transforms.ApplyConvolution("Conv", Rows.RandomTensor(1, 4, 2, 3, 3), inputColumnName: "Features");
        var e = Assert.ThrowsAny<ArgumentException>(() => estimator.Fit(data));
        Assert.Contains("'Features'", e.Message);
        Assert.Contains("[3, 8, 8]", e.Message);
        Assert.Contains("[4, 2, 3, 3]", e.Message);
    }

    [Fact]
    public void OutputShrinkingBelowOneIsRejected()
    {
        var data = Rows.View(_ml, Rows.Random(1, 2, 9), 1, 3, 3);
        var estimator = _ml.Transforms.ApplyConvolution("Conv", Rows.RandomTensor(1, 1, 1, 5, 5), inputColumnName: "Features");
        var e = Assert.ThrowsAny<ArgumentException>(() => estimator.Fit(data));
        Assert.Contains("'Features'", e.Message);
        Assert.Contains("[1, 3, 3]", e.Message);
        Assert.Contains("[1, 1, 5, 5]", e.Message);
    }

    [Fact]
    public void FilterRankMustMatchRowRank()
    {
        var data = Rows.View(_ml, Rows.Random(1, 2, 20), 2, 10);
        var estimator = _ml.Transforms.ApplyConvolution("Conv", Rows.RandomTensor(1, 1, 2, 3, 3), inputColumnName: "Features");
        var e = Assert.ThrowsAny<ArgumentException>(() => estimator.Fit(data));
        Assert.Contains("'Features'", e.Message);
        Assert.Contains("[2, 10]", e.Message);
    }

    [Fact]
    public void BadFilterOrBiasIsRejectedAtConstruction()
    {
        var e = Assert.ThrowsAny<ArgumentException>(() => _ml.Transforms.ApplyConvolution("Conv", Rows.RandomTensor(1, 4, 3, 3, 3), bias: Rows.RandomTensor(2, 3)));
        Assert.Contains("Bias", e.Message);
        Assert.Contains("[3]", e.Message);
        Assert.Contains("[4, 3, 3, 3]", e.Message);
        e = Assert.ThrowsAny<ArgumentException>(() => _ml.Transforms.ApplyConvolution("Conv", Rows.RandomTensor(1, 4, 3)));
        Assert.Contains("[4, 3]", e.Message);
        Assert.ThrowsAny<ArgumentException>(() => _ml.Transforms.ApplyConvolution(new ConvolutionEstimator.Options { OutputColumnName = "Conv" }));
    }
}
