using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ConvNet.Data;

namespace MLNet.ConvNet.Trainers.Tests;

/// <summary>One Fashion-MNIST image as an ML.NET row: the normalized pixels as [1, 28, 28] and the class name.</summary>
public sealed class ImageRow
{
    [VectorType(1, 28, 28)]
    public float[] Features { get; set; } = [];
    public string Label { get; set; } = "";
}

/// <summary>Small Fashion-MNIST subsets as IDataViews (read once per test run), and ways to build them.</summary>
public static class FashionData
{
    private static readonly Lazy<InMemoryDataset> Train = new(() => FashionMnist.LoadTrain(limit: 6000));
    private static readonly Lazy<InMemoryDataset> Test = new(() => FashionMnist.LoadTest(limit: 2000));

    /// <summary>The first <paramref name="count"/> training images.</summary>
    public static ImageRow[] TrainRows(int count) => Rows(Train.Value, 0, count);

    /// <summary>The first <paramref name="count"/> test images.</summary>
    public static ImageRow[] TestRows(int count) => Rows(Test.Value, 0, count);

    public static ImageRow[] Rows(InMemoryDataset d, int start, int count) =>
        Enumerable.Range(start, count).Select(i => new ImageRow
        {
            Features = d.Features.Slice(i * 784, 784).ToArray(),
            Label = FashionMnist.ClassNames[d.Labels[i]],
        }).ToArray();

    /// <summary>
    /// <paramref name="rows"/> as an IDataView whose Label is a key in Fashion-MNIST's class order (KeyValues = the
    /// class names), as MapValueToKey with keyData makes it.
    /// </summary>
    public static IDataView Keyed(MLContext ml, IEnumerable<ImageRow> rows)
    {
        var data = ml.Data.LoadFromEnumerable(rows);
        var keys = ml.Data.LoadFromEnumerable(FashionMnist.ClassNames.Select(n => new { Label = n }));
        return ml.Transforms.Conversion.MapValueToKey("Label", keyData: keys).Fit(data).Transform(data);
    }
}
