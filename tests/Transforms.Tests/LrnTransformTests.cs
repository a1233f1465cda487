using Microsoft.ML;
using MLNet.ConvNet.Ops;
using MLNet.ConvNet.Transforms.Tests.TestKit;
using Xunit;

namespace MLNet.ConvNet.Transforms.Tests;

/// <summary>
/// NormalizeLocalResponse on 1-D, 2-D and 3-D rows equal to <see cref="Lrn.Forward"/> through the workout (the saved
/// model runs ONNX LRN on a 4-D view of 1-D and 3-D rows); a hand-computed value; option errors.
/// </summary>
public class LrnTransformTests
{
    private readonly MLContext _ml = new(seed: 1);

    public static TheoryData<int[], LrnOptions> Configurations => new()
    {
        { [6, 5, 4], new LrnOptions() },
        { [7, 9], new LrnOptions { Size = 3, Alpha = 0.5f, Beta = 0.6f, K = 1 } },
        { [4, 3, 3, 2], new LrnOptions { Size = 3, Alpha = 2f, Beta = 1f, K = 1.5f } },
    };

    [Theory, MemberData(nameof(Configurations))]
    public void EqualsEngine(int[] rowDims, LrnOptions options)
    {
        var rowShape = new Shape(rowDims);
        // Values in [-3, 3): large enough that Alpha matters.
        var rows = Rows.Random(rowDims.Length, 19, rowShape.Length).Select(r => r.Select(v => 3 * v).ToArray()).ToArray();
        var data = Rows.View(_ml, rows, rowDims);
        var estimator = _ml.Transforms.NormalizeLocalResponse(new LrnEstimator.Options
        {
            OutputColumnName = "Lrn", InputColumnName = "Features", Lrn = options, BatchSize = 4,
        });
        var t = Workout.Run(_ml, estimator, data, "Features", "Lrn", rowShape, x => Lrn.Forward(x, options));
        Assert.Equal(rowShape, t.OutputShape);
    }

    [Fact]
    public void HandComputedValue()
    {
        // Two channels, one position, Size 2 (window c-0 .. c+1): y0 = 3 / (1 + 1/2 * (9 + 16))^1 = 3 / 13.5;
        // channel 1's window holds channel 1 alone: y1 = 4 / (1 + 1/2 * 16) = 4 / 9.
        var data = Rows.View(_ml, [[3, 4]], 2, 1);
        var t = _ml.Transforms.NormalizeLocalResponse("Y", "Features", new LrnOptions { Size = 2, Alpha = 1, Beta = 1, K = 1 }).Fit(data);
        var y = Rows.Read(t.Transform(data), "Y")[0];
        Assert.Equal(3 / 13.5, y[0], 6);
        Assert.Equal(4 / 9.0, y[1], 6);
    }

    [Fact]
    public void EvenSizeRunsButSavingSaysWhyNot()
    {
        var options = new LrnOptions { Size = 4, Alpha = 2f, Beta = 1f, K = 1.5f };
        var rows = Rows.Random(3, 5, 5 * 3 * 2);
        var data = Rows.View(_ml, rows, 5, 3, 2);
        var t = _ml.Transforms.NormalizeLocalResponse("Lrn", "Features", options).Fit(data);
        Rows.AssertSame(Rows.Engine(x => Lrn.Forward(x, options), rows, new Shape(5, 3, 2)), Rows.Read(t.Transform(data), "Lrn"), "even size");
        var e = Assert.Throws<NotSupportedException>(() => _ml.Model.Save(t, data.Schema, new MemoryStream()));
        Assert.Contains("'Lrn'", e.Message);
        Assert.Contains("odd", e.Message);
        t.ExportOnnx(new MemoryStream());
    }

    [Fact]
    public void OptionsOutOfRangeAreRejected()
    {
        var e = Assert.ThrowsAny<ArgumentException>(() => _ml.Transforms.NormalizeLocalResponse("Y", "Features", new LrnOptions { Size = 17 }));
        Assert.Equal("size", e.ParamName);
        e = Assert.ThrowsAny<ArgumentException>(() => _ml.Transforms.NormalizeLocalResponse("Y", "Features", new LrnOptions { K = 0 }));
        Assert.Equal("k", e.ParamName);
    }
}
