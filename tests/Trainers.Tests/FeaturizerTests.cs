using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ConvNet.Layers;
using Xunit;

namespace MLNet.ConvNet.Trainers.Tests;

/// <summary>LeNet-5 trained for one epoch on 1,000 images, and the featurizer over it (its 84-wide penultimate layer).</summary>
public sealed class FeaturizerTests
{
    private readonly MLContext _ml = new(seed: 1);
    private static readonly Lazy<ConvNetTransformer> Lenet = new(() =>
        new MLContext(seed: 1).MulticlassClassification.Trainers.ConvNet(new ConvNetTrainer.Options { Network = "lenet5", Epochs = 1, Seed = 2 })
            .Fit(Tiny.Data(new MLContext(seed: 1))));

    /// <summary>The engine's penultimate activations computed layer by layer on the trained network itself (no copy, no folding, no ML.NET).</summary>
    private static float[][] Reference(Network network, IReadOnlyList<float[]> images)
    {
        var x = Tensor.FromHost(images.SelectMany(i => i).ToArray(), new Shape(images.Count, 1, 28, 28), network.Backend);
        for (int l = 0; l < network.Layers.Count - 1; l++) x = network.Layers[l].Forward(x, training: false);
        var host = x.ToHost();
        int d = host.Length / images.Count;
        return Enumerable.Range(0, images.Count).Select(i => host.AsSpan(i * d, d).ToArray()).ToArray();
    }

    [Fact]
    public void Features_are_the_penultimate_activations_and_the_loaded_model_gives_them_too()
    {
        var data = Tiny.Data(_ml, 300);
        var featurizer = _ml.Transforms.ConvNetFeaturizer(Lenet.Value).Fit(data);
        var output = featurizer.Transform(data);
        Assert.Equal(new VectorDataViewType(NumberDataViewType.Single, 84), output.Schema["CnnFeatures"].Type);
        Assert.Equal(84, featurizer.FeatureCount);

        var features = output.GetColumn<float[]>("CnnFeatures").ToArray();
        var images = data.GetColumn<float[]>("Features").ToArray();
        var expected = Reference(Lenet.Value.Network, images);
        Assert.Contains(expected.SelectMany(f => f), v => v > 0.1f); // relu features that are not all zero
        for (int i = 0; i < images.Length; i++)
            for (int j = 0; j < 84; j++) Assert.Equal(expected[i][j], features[i][j], 1e-4f * (1 + Math.Abs(expected[i][j])));

        // PredictionEngine's one-row path, and the saved model (ONNX Runtime), give the same features.
        string dir = Tiny.TempDirectory();
        try
        {
            string path = Path.Combine(dir, "featurizer.zip");
            _ml.Model.Save(featurizer, data.Schema, path);
            var loaded = new MLContext(seed: 1).Model.Load(path, out _);
            var fromOnnx = loaded.Transform(data).GetColumn<float[]>("CnnFeatures").ToArray();
            for (int i = 0; i < images.Length; i++)
                for (int j = 0; j < 84; j++) Assert.Equal(expected[i][j], fromOnnx[i][j], 1e-4f * (1 + Math.Abs(expected[i][j])));
        }
        finally { Directory.Delete(dir, true); }
        var engine = _ml.Model.CreatePredictionEngine<ImageRow, FeatureRow>(featurizer);
        var one = engine.Predict(new ImageRow { Features = images[7], Label = "Coat" });
        for (int j = 0; j < 84; j++) Assert.Equal(expected[7][j], one.CnnFeatures[j], 1e-4f * (1 + Math.Abs(expected[7][j])));
    }

    [Fact]
    public void Featurizer_then_SDCA_trains_evaluates_saves_and_loads_with_the_same_scores()
    {
        var train = Tiny.Data(_ml, 1000);
        var test = FashionData.Keyed(_ml, FashionData.TestRows(500));
        var pipeline = _ml.Transforms.ConvNetFeaturizer(Lenet.Value)
            .Append(_ml.Transforms.NormalizeMinMax("CnnFeatures"))
            .AppendCacheCheckpoint(_ml)
            .Append(_ml.MulticlassClassification.Trainers.SdcaMaximumEntropy(featureColumnName: "CnnFeatures", maximumNumberOfIterations: 10));
        var model = pipeline.Fit(train);
        var metrics = _ml.MulticlassClassification.Evaluate(model.Transform(test));
        // One epoch of LeNet-5 on 1,000 images gives features a linear model separates far above chance (0.1).
        Assert.InRange(metrics.MicroAccuracy, 0.5, 1.0);

        string dir = Tiny.TempDirectory();
        try
        {
            string path = Path.Combine(dir, "sdca.zip");
            _ml.Model.Save(model, train.Schema, path);
            var loaded = new MLContext(seed: 1).Model.Load(path, out _);
            var expected = model.Transform(test).GetColumn<float[]>("Score").ToArray();
            var actual = loaded.Transform(test).GetColumn<float[]>("Score").ToArray();
            for (int i = 0; i < expected.Length; i++)
                for (int k = 0; k < 10; k++) Assert.Equal(expected[i][k], actual[i][k], 1e-4);
            var reloaded = _ml.MulticlassClassification.Evaluate(loaded.Transform(test));
            Assert.Equal(metrics.LogLoss, reloaded.LogLoss, 1e-4);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Bad_columns_and_networks_are_named()
    {
        var data = Tiny.Data(_ml, 50);
        var missing = Assert.ThrowsAny<ArgumentException>(() => _ml.Transforms.ConvNetFeaturizer(Lenet.Value.Network, "Pixels").Fit(data));
        Assert.Contains("'Pixels'", missing.Message);
        var same = Assert.ThrowsAny<ArgumentException>(() => _ml.Transforms.ConvNetFeaturizer(Lenet.Value.Network, "Features", "Features"));
        Assert.Equal("outputColumnName", same.ParamName);
        var unbuilt = Assert.ThrowsAny<ArgumentException>(() => _ml.Transforms.ConvNetFeaturizer(Presets.LeNet5(), "Features"));
        Assert.Contains("not built", unbuilt.Message);
        var wrongSize = _ml.Data.LoadFromEnumerable(new[] { new SmallRow() });
        var shape = Assert.ThrowsAny<ArgumentException>(() => _ml.Transforms.ConvNetFeaturizer(Lenet.Value).Fit(data).Transform(wrongSize));
        Assert.Contains("[1, 28, 28]", shape.Message);
    }

    private sealed class FeatureRow
    {
        public float[] CnnFeatures { get; set; } = [];
    }

    private sealed class SmallRow
    {
        [VectorType(1, 10, 10)]
        public float[] Features { get; set; } = new float[100];
    }
}
