using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ConvNet.Ops;
using MLNet.ConvNet.Transforms.Tests.TestKit;
using Xunit;

namespace MLNet.ConvNet.Transforms.Tests;

/// <summary>
/// Whole pipelines: PNG files (Fashion-MNIST test images and a colour image) through LoadImages, ResizeImages,
/// ExtractPixels, Convolution, Pooling and LRN equal the engine run directly, with the right dimensions in the schema;
/// Save/Load in this process and in a process without our assemblies; PredictionEngine on the fitted and the loaded
/// model; 8 threads at once equal a serial run.
/// </summary>
public class PipelineTests
{
    private readonly MLContext _ml = new(seed: 1);

    public sealed class ImagePath
    {
        public string Path { get; set; } = "";
    }

    public sealed class LrnPrediction
    {
        public float[] Lrn { get; set; } = [];
    }

    private static readonly Tensor ImageFilter = Rows.RandomTensor(21, 4, 3, 3, 3);
    private static readonly Tensor ImageBias = Rows.RandomTensor(22, 4);
    private static readonly ConvolutionOptions ImageConv = new() { Padding = 1 };
    // Alpha = 1 on pixels in [0, 1]: large enough that LRN changes the values.
    private static readonly LrnOptions ImageLrn = new() { Size = 3, Alpha = 1, Beta = 0.75f, K = 1 };

    private IEstimator<ITransformer> ConvPoolLrn(string input) =>
        _ml.Transforms.ApplyConvolution("Conv", ImageFilter, ImageBias, input, ImageConv)
            .Append(_ml.Transforms.ApplyPooling("Pool", "Conv"))
            .Append(_ml.Transforms.NormalizeLocalResponse("Lrn", "Pool", ImageLrn));

    [Fact]
    public void ImageFilesThroughConvolutionPoolingLrn()
    {
        FashionMnist.SkipIfMissing();
        using var folder = ImageFolder.Create(6);
        var data = _ml.Data.LoadFromEnumerable(folder.Files.Select(f => new ImagePath { Path = f }));
        var pipeline = _ml.Transforms.LoadImages("Image", folder.Path, "Path")
            .Append(_ml.Transforms.ResizeImages("Image", 28, 28, "Image"))
            .Append(_ml.Transforms.ExtractPixels("Pixels", "Image", scaleImage: 1f / 255))
            .Append(ConvPoolLrn("Pixels"));
        var model = pipeline.Fit(data);
        var output = model.Transform(data);

        Assert.Equal(new VectorDataViewType(NumberDataViewType.Single, 3, 28, 28), output.Schema["Pixels"].Type);
        Assert.Equal(new VectorDataViewType(NumberDataViewType.Single, 4, 28, 28), output.Schema["Conv"].Type);
        Assert.Equal(new VectorDataViewType(NumberDataViewType.Single, 4, 14, 14), output.Schema["Pool"].Type);
        Assert.Equal(new VectorDataViewType(NumberDataViewType.Single, 4, 14, 14), output.Schema["Lrn"].Type);

        // The pixels really are the files: planes R, G, B of the grey Fashion-MNIST images equal the IDX bytes / 255.
        var pixels = Rows.Read(output, "Pixels");
        var images = FashionMnist.TestImages(6);
        for (int i = 0; i < 6; i++)
            for (int c = 0; c < 3; c++)
                Assert.Equal(images[i].Select(b => b * (1f / 255)), pixels[i].Skip(c * 784).Take(784));
        Assert.NotEqual(pixels[6].Take(784), pixels[6].Skip(784).Take(784));   // the colour image's R and G differ

        var conv = Rows.Engine(x => Convolution.Forward(x, ImageFilter, ImageBias, ImageConv), pixels, new Shape(3, 28, 28));
        var pool = Rows.Engine(x => Pooling.Forward(x), conv, new Shape(4, 28, 28));
        var lrn = Rows.Engine(x => Lrn.Forward(x, ImageLrn), pool, new Shape(4, 14, 14));
        Rows.AssertSame(conv, Rows.Read(output, "Conv"), "Conv vs engine");
        Rows.AssertSame(pool, Rows.Read(output, "Pool"), "Pool vs engine");
        Rows.AssertSame(lrn, Rows.Read(output, "Lrn"), "Lrn vs engine");

        // PredictionEngine on the fitted model: one row at a time, the same bits.
        var predictor = _ml.Model.CreatePredictionEngine<ImagePath, LrnPrediction>(model);
        for (int i = 0; i < folder.Files.Count; i++)
            Rows.AssertSame([lrn[i]], [predictor.Predict(new ImagePath { Path = folder.Files[i] }).Lrn], $"PredictionEngine row {i}");

        // Save, then Load with a new MLContext: the same function within 1e-5 of each row's scale.
        using var loaded = Workout.SavedAndLoaded(_ml, model, data.Schema);
        var reloaded = loaded.Model.Transform(data);
        Assert.Equal(output.Schema["Lrn"].Type, reloaded.Schema["Lrn"].Type);
        Rows.AssertClose(conv, Rows.Read(reloaded, "Conv"), "loaded Conv");
        Rows.AssertClose(pool, Rows.Read(reloaded, "Pool"), "loaded Pool");
        Rows.AssertClose(lrn, Rows.Read(reloaded, "Lrn"), "loaded Lrn");
        Assert.DoesNotContain(loaded.Model is TransformerChain<ITransformer> chain ? chain : [], t => t is TensorTransformer);

        var loadedPredictor = _ml.Model.CreatePredictionEngine<ImagePath, LrnPrediction>(loaded.Model, loaded.InputSchema);
        for (int i = 0; i < folder.Files.Count; i++)
            Rows.AssertClose([lrn[i]], [loadedPredictor.Predict(new ImagePath { Path = folder.Files[i] }).Lrn], $"loaded PredictionEngine row {i}");
    }

    [Fact]
    public void SavedModelRunsInAProcessWithoutOurAssemblies()
    {
        var rows = Rows.Random(5, 9, 3 * 28 * 28).Select(r => r.Select(v => (v + 1) / 2).ToArray()).ToArray();
        var data = Rows.View(_ml, rows, 3, 28, 28);
        var model = ConvPoolLrn("Features").Fit(data);
        var want = Rows.Read(model.Transform(data), "Lrn");
        string path = Path.Combine(Path.GetTempPath(), $"mlnet-convnet-{Guid.NewGuid():N}.zip");
        try
        {
            _ml.Model.Save(model, data.Schema, path);
            var (got, dims, assemblies, modelType) = ModelConsumer.Run(path, rows, [3, 28, 28], "Features", "Lrn");
            Assert.Equal([4, 14, 14], dims);
            Rows.AssertClose(want, got, "Lrn in a separate process");
            Assert.Contains("Microsoft.ML.OnnxTransformer", assemblies);
            Assert.DoesNotContain(assemblies, a => a.StartsWith("MLNet.ConvNet", StringComparison.Ordinal) && a != "MLNet.ConvNet.ModelConsumer");
            Assert.StartsWith("Microsoft.ML.Data.TransformerChain", modelType);
        }
        finally { File.Delete(path); }
    }

    public sealed class PixelRow
    {
        [VectorType(3, 12, 12)]
        public float[] Features { get; set; } = [];
    }

    public sealed class ActPrediction
    {
        public float[] Act { get; set; } = [];
    }

    [Fact]
    public void EightThreadsAtOnceEqualASerialRun()
    {
        const int n = 1000;
        var rows = Rows.Random(9, n, 3 * 12 * 12);
        var data = Rows.View(_ml, rows, 3, 12, 12);
        var model = _ml.Transforms.ApplyConvolution("Conv", Rows.RandomTensor(10, 6, 3, 3, 3), Rows.RandomTensor(11, 6), "Features", new ConvolutionOptions { Padding = 1 })
            .Append(_ml.Transforms.ApplyPooling("Pool", "Conv"))
            .Append(_ml.Transforms.NormalizeLocalResponse("Lrn", "Pool", new LrnOptions { Size = 3 }))
            .Append(_ml.Transforms.ApplyBatchNormalization("BN", "Lrn"))
            .Append(_ml.Transforms.ApplyActivation("Act", ActivationKind.ReLU, "BN"))
            .Fit(data);
        var output = model.Transform(data);
        var serial = Rows.Read(output, "Act");

        // Threads 0-3 each read the shared view with their own cursor; threads 4-7 each run their own PredictionEngine.
        var results = new float[8][][];
        using var start = new Barrier(8);
        var threads = Enumerable.Range(0, 8).Select(k => new Thread(() =>
        {
            start.SignalAndWait();
            if (k < 4) { results[k] = Rows.Read(output, "Act"); return; }
            var predictor = _ml.Model.CreatePredictionEngine<PixelRow, ActPrediction>(model);
            results[k] = rows.Select(r => predictor.Predict(new PixelRow { Features = r }).Act).ToArray();
        })).ToArray();
        foreach (var t in threads) t.Start();
        foreach (var t in threads) t.Join();
        for (int k = 0; k < 8; k++)
            Rows.AssertSame(serial, results[k], $"thread {k} ({(k < 4 ? "cursor" : "PredictionEngine")})");
    }
}
