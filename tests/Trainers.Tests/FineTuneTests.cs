using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ConvNet.Layers;
using MLNet.ConvNet.Onnx;
using Xunit;

namespace MLNet.ConvNet.Trainers.Tests;

/// <summary>A colour image of 3 x 16 x 16 with a class index.</summary>
public sealed class ColourRow
{
    [VectorType(3, 16, 16)]
    public float[] Features { get; set; } = [];
    public uint Label { get; set; }
}

/// <summary>
/// Transfer learning through the ML.NET trainer: a PyTorch-exported network (tests/Core.Tests/OnnxModels/opszoo.onnx:
/// batch norm, a concatenating block, a transposed convolution, a 5-class Gemm head) gets a new 3-class head that is
/// trained alone (everything else frozen), then the whole network trains from that run's checkpoint with a smaller body
/// learning rate. Each stage goes through Fit, Evaluate, Save and Load.
/// </summary>
public sealed class FineTuneTests
{
    private static readonly string Zoo = Path.Combine(AppContext.BaseDirectory, "OnnxModels", "opszoo.onnx");

    /// <summary>Noise in [0, 1] with a brighter square in the channel of the row's class (3 classes).</summary>
    private static ColourRow[] Rows(int count, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, count).Select(i =>
        {
            uint k = (uint)(i % 3);
            var f = new float[3 * 16 * 16];
            for (int j = 0; j < f.Length; j++) f[j] = (float)rng.NextDouble() * 0.5f;
            for (int y = 4; y < 12; y++) for (int x = 4; x < 12; x++) f[k * 256 + y * 16 + x] += 0.5f;
            return new ColourRow { Features = f, Label = k };
        }).ToArray();
    }

    private static IDataView Data(MLContext ml, int count, int seed) =>
        ml.Transforms.Conversion.MapValueToKey("Label").Fit(ml.Data.LoadFromEnumerable(Rows(30, 99))).Transform(ml.Data.LoadFromEnumerable(Rows(count, seed)));

    [Fact]
    public void Head_then_all_through_Fit_Evaluate_Save_and_Load_with_frozen_layers_bit_identical()
    {
        var ml = new MLContext(seed: 1);
        var train = Data(ml, 240, 1);
        var test = Data(ml, 60, 2);
        string dir = Tiny.TempDirectory();
        try
        {
            // Stage 1: new head, everything before it frozen; ImageNet-style normalization in front.
            var logs = new List<string>();
            var headOnly = new ConvNetTrainer(new ConvNetTrainer.Options
            {
                PretrainedModel = Zoo, FreezeThrough = "body", InputMean = [0.3f, 0.3f, 0.3f], InputStd = [0.25f, 0.25f, 0.25f],
                Epochs = 3, BatchSize = 16, LearningRate = 1e-2, Seed = 4, CheckpointDirectory = dir, Log = logs.Add,
            }).Fit(train);
            var net = headOnly.Network;
            Assert.Equal("normalize", net.Layers[0].Name);
            Assert.Equal(Transfer.HeadName, net.Layers[^1].Name);
            Assert.Equal(new Shape(3), net.OutputShape);
            Assert.Equal(net.Layers.Count - 1, net.FrozenLayerCount);
            Assert.Contains(logs, l => l.Contains("frozen"));

            // Every parameter and running statistic of the frozen layers is the imported file's, bit for bit.
            var source = OnnxImporter.Import(Zoo).Network.StateTensors().ToDictionary(t => t.Name, t => t.Value.ToHost());
            int compared = 0;
            foreach (var (name, value) in net.StateTensors())
            {
                if (name.StartsWith(Transfer.HeadName + ".", StringComparison.Ordinal) || name.StartsWith("normalize.", StringComparison.Ordinal)) continue;
                Assert.Equal(source[name], value.ToHost());
                compared++;
            }
            Assert.Equal(source.Count - 2, compared);   // all but the old head's weight and bias
            var stage1 = AssertEvaluatesSavesAndLoads(ml, headOnly, train, test, 0.4);   // chance: 1/3

            // Stage 2: from stage 1's checkpoint (its architecture includes the Normalize layer and the new head), train all.
            var all = new ConvNetTrainer(new ConvNetTrainer.Options
            {
                PretrainedModel = Path.Combine(dir, ConvNetTrainer.Defaults.CheckpointFileName), ReplaceHead = false, BodyLearningRateScale = 0.5,
                Epochs = 5, BatchSize = 16, LearningRate = 1e-2, Seed = 5,
            }).Fit(train);
            Assert.Equal(0, all.Network.FrozenLayerCount);
            var after = all.Network.StateTensors().ToDictionary(t => t.Name, t => t.Value.ToHost());
            Assert.NotEqual(source["/conv/Conv.weight"], after["/conv/Conv.weight"]);              // the body trained
            Assert.NotEqual(source["/bn/BatchNormalization.running_mean"], after["/bn/BatchNormalization.running_mean"]);
            Assert.Equal(net.StateTensors().First(t => t.Name == "normalize.scale").Value.ToHost(), after["normalize.scale"]);
            AssertEvaluatesSavesAndLoads(ml, all, train, test, stage1 + 0.1);   // training all does better than the head alone
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    /// <summary>Evaluates <paramref name="model"/> (accuracy above <paramref name="minimum"/>), saves and loads it; the loaded model scores the same.</summary>
    private static double AssertEvaluatesSavesAndLoads(MLContext ml, ConvNetTransformer model, IDataView train, IDataView test, double minimum)
    {
        var metrics = ml.MulticlassClassification.Evaluate(model.Transform(test));
        Assert.True(metrics.MicroAccuracy > minimum, $"accuracy {metrics.MicroAccuracy} <= {minimum}");
        var stream = new MemoryStream();
        ml.Model.Save(model, train.Schema, stream);
        stream.Position = 0;
        var loaded = new MLContext(seed: 2).Model.Load(stream, out _);
        var before = model.Transform(test).GetColumn<float[]>("Score").SelectMany(s => s).ToArray();
        var again = loaded.Transform(test).GetColumn<float[]>("Score").SelectMany(s => s).ToArray();
        InferenceTests.AssertClose(before, again, 1e-5, "loaded vs fitted");
        return metrics.MicroAccuracy;
    }

    [Fact]
    public void A_freeze_point_that_is_not_a_layer_is_named()
    {
        var ml = new MLContext(seed: 1);
        var e = Assert.Throws<ArgumentException>(() => new ConvNetTrainer(new ConvNetTrainer.Options { PretrainedModel = Zoo, FreezeThrough = "conv9", Epochs = 1 }).Fit(Data(ml, 30, 3)));
        Assert.Contains("FreezeThrough = 'conv9'", e.Message);
        Assert.Contains("/conv/Conv", e.Message);
    }
}
