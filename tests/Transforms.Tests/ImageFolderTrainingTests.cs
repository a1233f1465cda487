using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms.Image;
using MLNet.ConvNet.Data;
using MLNet.ConvNet.Trainers;
using Xunit;

namespace MLNet.ConvNet.Transforms.Tests;

/// <summary>
/// The design card's flow on image files, end to end (samples/ImageFolder as a test): a folder per class ->
/// LoadImages -> ResizeImages -> ExtractPixels -> normalize -> ConvNet -> Evaluate -> Save -> Load in a new
/// MLContext -> PredictionEngine on one file. It lives here because ImageAnalytics cannot share a process with
/// the trainer's plotting assembly (docs/dependencies.md).
/// </summary>
public sealed class ImageFolderTrainingTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "convnet-imagefolder-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    private sealed class ImageFile
    {
        public string ImagePath { get; set; } = "";
        public string Label { get; set; } = "";
    }

    private sealed class Prediction
    {
        public float[] Score { get; set; } = [];
        public string PredictedClass { get; set; } = "";
    }

    [Fact]
    public void TrainsFromImageFilesAndServesTheSavedModel()
    {
        TestKit.FashionMnist.SkipIfMissing();
        // 40 images of each of 4 classes, written as PNG files in a folder per class.
        var data = FashionMnist.LoadTest(limit: 1000, normalize: false);
        string[] classes = ["Trouser", "Bag", "Sneaker", "Pullover"];
        var files = new List<ImageFile>();
        var counts = new int[10];
        for (int i = 0; i < data.Count; i++)
        {
            int label = data.Labels[i];
            string name = FashionMnist.ClassNames[label];
            if (!classes.Contains(name) || counts[label] == 40) continue;
            counts[label]++;
            var pixels = data.Features.Slice(i * 784, 784).ToArray();
            string rel = Path.Combine(name, $"{i:D4}.png");
            Directory.CreateDirectory(Path.Combine(_dir, name));
            TestKit.ImageFolder.WritePng(Path.Combine(_dir, rel), 28, 28, (y, x) =>
            {
                byte v = (byte)Math.Round(pixels[y * 28 + x] * 255);
                return (v, v, v);
            });
            files.Add(new ImageFile { ImagePath = rel, Label = name });
        }
        Assert.Equal(160, files.Count);

        var ml = new MLContext(seed: 1);
        var all = ml.Data.LoadFromEnumerable(files);
        var keyed = ml.Transforms.Conversion.MapValueToKey("Label").Fit(all).Transform(all);
        var pipeline = ml.Transforms.LoadImages("Image", _dir, "ImagePath")
            .Append(ml.Transforms.ResizeImages("Image", 28, 28))
            .Append(ml.Transforms.ExtractPixels("Pixels", "Image", ImagePixelExtractingEstimator.ColorBits.Red, scaleImage: 1f / 255))
            .Append(ml.Transforms.NormalizeMeanVariance("Features", "Pixels", fixZero: false))
            .Append(ml.MulticlassClassification.Trainers.ConvNet(new ConvNetTrainer.Options { Network = "lenet5", Epochs = 4, BatchSize = 16, Seed = 3 }))
            .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedClass", "PredictedLabel"));
        var model = pipeline.Fit(keyed);

        var scored = model.Transform(keyed);
        var featureType = (VectorDataViewType)scored.Schema["Features"].Type;
        Assert.Equal([1, 28, 28], featureType.Dimensions.ToArray());
        var metrics = ml.MulticlassClassification.Evaluate(scored);
        // Four visually distinct classes: a trained LeNet separates its own training images far above chance (0.25).
        Assert.True(metrics.MicroAccuracy > 0.6, $"training accuracy {metrics.MicroAccuracy:F3}");

        string zip = Path.Combine(_dir, "model.zip");
        ml.Model.Save(model, keyed.Schema, zip);
        var ml2 = new MLContext();
        var loaded = ml2.Model.Load(zip, out _);
        var reloaded = ml2.MulticlassClassification.Evaluate(loaded.Transform(keyed));
        Assert.Equal(metrics.MicroAccuracy, reloaded.MicroAccuracy, 6);

        using var engine = ml2.Model.CreatePredictionEngine<ImageFile, Prediction>(loaded);
        // GetColumn may hand out one buffer for every row: copy each row's values as it goes by.
        var scores = scored.GetColumn<VBuffer<float>>("Score").Select(v => v.DenseValues().ToArray()).ToArray();
        var predicted = scored.GetColumn<ReadOnlyMemory<char>>("PredictedClass").Select(p => p.ToString()).ToArray();
        for (int i = 0; i < files.Count; i += 37)
        {
            var p = engine.Predict(new ImageFile { ImagePath = files[i].ImagePath });
            Assert.Equal(predicted[i], p.PredictedClass);
            var want = scores[i];
            Assert.True(want.Zip(p.Score).All(t => Math.Abs(t.First - t.Second) < 1e-4), $"row {i}: fitted [{string.Join(", ", want)}] vs loaded [{string.Join(", ", p.Score)}] label {files[i].Label} predicted {p.PredictedClass}");
        }
    }
}
