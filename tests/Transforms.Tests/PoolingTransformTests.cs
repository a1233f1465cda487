using Microsoft.ML;
using MLNet.ConvNet.Ops;
using MLNet.ConvNet.Transforms.Tests.TestKit;
using Xunit;

namespace MLNet.ConvNet.Transforms.Tests;

/// <summary>
/// ApplyPooling: the seed's examples; every mode on 1-D, 2-D and 3-D rows with padding and strides, equal to
/// <see cref="Pooling.Forward"/> through the workout; windows that do not fit, naming the column and shape.
/// </summary>
public class PoolingTransformTests
{
    private readonly MLContext _ml = new(seed: 1);

    [Fact]
    public void SeedExamples()
    {
        // x = [1..6]: pool(x) = [2,4,6]; padding 1: max [1,3,5,6], average with padding [0.5,2.5,4.5,3], without [1,2.5,4.5,6].
        var data = Rows.View(_ml, [[1, 2, 3, 4, 5, 6]], 1, 6);
        (PoolingOptions options, float[] want)[] cases =
        [
            (PoolingOptions.Default, [2, 4, 6]),
            (new PoolingOptions { Padding = 1 }, [1, 3, 5, 6]),
            (new PoolingOptions { Padding = 1, Mode = PoolingMode.AverageIncludingPadding }, [0.5f, 2.5f, 4.5f, 3]),
            (new PoolingOptions { Padding = 1, Mode = PoolingMode.AverageExcludingPadding }, [1, 2.5f, 4.5f, 6]),
        ];
        foreach (var (options, want) in cases)
        {
            var t = _ml.Transforms.ApplyPooling("Y", "Features", options).Fit(data);
            Assert.Equal(want, Rows.Read(t.Transform(data), "Y")[0]);
        }
        // 2-D: the 4x4 image 1..16 (Knet column-major) max-pools to Knet's [6 14; 8 16], our memory [6, 8, 14, 16].
        var image = Rows.View(_ml, [Enumerable.Range(1, 16).Select(v => (float)v).ToArray()], 1, 4, 4);
        Assert.Equal([6f, 8, 14, 16], Rows.Read(_ml.Transforms.ApplyPooling("Y", "Features").Fit(image).Transform(image), "Y")[0]);
    }

    public static TheoryData<int[], PoolingOptions> Configurations => new()
    {
        { [3, 9, 8], new PoolingOptions() },
        { [3, 9, 8], new PoolingOptions { Window = 3, Stride = 2, Padding = 1, Mode = PoolingMode.AverageIncludingPadding } },
        { [2, 11], new PoolingOptions { Window = 4, Stride = 3, Padding = 2, Mode = PoolingMode.AverageExcludingPadding } },
        { [2, 5, 6, 7], new PoolingOptions { Window = new[] { 2, 3, 2 }, Padding = new[] { 1, 1, 0 }, Stride = new[] { 1, 2, 3 } } },
    };

    [Theory, MemberData(nameof(Configurations))]
    public void EqualsEngine(int[] rowDims, PoolingOptions options)
    {
        var rowShape = new Shape(rowDims);
        var data = Rows.View(_ml, Rows.Random(rowDims.Sum(), 21, rowShape.Length), rowDims);
        var estimator = _ml.Transforms.ApplyPooling(new PoolingEstimator.Options
        {
            OutputColumnName = "Pool", InputColumnName = "Features", Pooling = options, BatchSize = 5,
        });
        var t = Workout.Run(_ml, estimator, data, "Features", "Pool", rowShape, x => Pooling.Forward(x, options));
        Assert.Equal(options, t.Pooling);
    }

    [Fact]
    public void WindowLargerThanInputIsRejected()
    {
        var data = Rows.View(_ml, Rows.Random(1, 2, 2 * 3 * 5), 2, 3, 5);
        var e = Assert.ThrowsAny<ArgumentException>(() => _ml.Transforms.ApplyPooling("Pool", "Features", new PoolingOptions { Window = 4 }).Fit(data));
        Assert.Contains("'Features'", e.Message);
        Assert.Contains("[2, 3, 5]", e.Message);
        Assert.Contains("window 4", e.Message);
    }

    [Fact]
    public void PaddingAsLargeAsTheWindowIsRejected()
    {
        var data = Rows.View(_ml, Rows.Random(1, 2, 2 * 6 * 6), 2, 6, 6);
        var e = Assert.ThrowsAny<ArgumentException>(() => _ml.Transforms.ApplyPooling("Pool", "Features", new PoolingOptions { Window = 2, Padding = 2 }).Fit(data));
        Assert.Contains("'Features'", e.Message);
        Assert.Contains("padding 2", e.Message);
    }
}
