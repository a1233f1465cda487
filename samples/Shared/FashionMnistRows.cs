using Microsoft.ML.Data;
using MLNet.ConvNet.Data;

/// <summary>
/// Fashion-MNIST as ML.NET rows, for the programs that train through the ML.NET trainer (samples/FashionMnist.MLNet,
/// benchmarks/Gpu); linked into each, as CommandLineArgs.cs is.
/// </summary>
sealed class ImageRow
{
    [VectorType(1, 28, 28)]
    public float[] Features { get; set; } = [];
    public string Label { get; set; } = "";

    /// <summary>One row per image of <paramref name="d"/>: its standardised pixels and its class name.</summary>
    public static IEnumerable<ImageRow> From(InMemoryDataset d) => Enumerable.Range(0, d.Count).Select(i => new ImageRow
    {
        Features = d.Features.Slice(i * 784, 784).ToArray(),
        Label = FashionMnist.ClassNames[d.Labels[i]],
    });
}

/// <summary>A class name: the rows of the key data that fix the label keys' order (MapValueToKey's keyData).</summary>
sealed class ClassName { public string Label { get; set; } = ""; }
