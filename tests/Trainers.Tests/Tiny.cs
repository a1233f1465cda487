using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ConvNet.Layers;

namespace MLNet.ConvNet.Trainers.Tests;

/// <summary>A tiny network and options for the tests that exercise plumbing rather than accuracy.</summary>
public static class Tiny
{
    /// <summary>conv3x3 4, relu, maxpool2, dense: trains 1,000 images in well under a second.</summary>
    public static Network Network(int classes, Backends.IBackend? backend = null) => new(NetworkLayers(classes), backend);

    public static Layer[] NetworkLayers(int classes) => [new Conv(4, 3), Activation.Relu(), new Pool(), new Flatten(), new Dense(classes)];

    public static ConvNetTrainer.Options Options(int epochs = 1, int seed = 3) => new()
    {
        NetworkFactory = (k, backend) => Network(k, backend), Epochs = epochs, Seed = seed, BatchSize = 50,
    };

    private static readonly Lazy<ImageRow[]> Rows = new(() => FashionData.TrainRows(1000));

    /// <summary>The first 1,000 training images with a key label.</summary>
    public static IDataView Data(MLContext ml, int count = 1000) => FashionData.Keyed(ml, Rows.Value.Take(count));

    public static string TempDirectory()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"convnet-test-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        return dir;
    }
}

/// <summary>A row with a numeric label (class index).</summary>
public sealed class NumberRow
{
    [VectorType(1, 28, 28)]
    public float[] Features { get; set; } = [];
    public float Label { get; set; }
}
