using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.OnnxRuntime;
using MLNet.ConvNet.Data;
using MLNet.ConvNet.Ops;
using Xunit;

namespace MLNet.ConvNet.Trainers.Tests;

/// <summary>LeNet-5 trained once through the catalog: 4,000 Fashion-MNIST images, 2 epochs, Adam 1e-3, batch 64, seed 1.</summary>
public sealed class TrainedModel
{
    public TrainedModel()
    {
        Train = FashionData.Keyed(Ml, FashionData.TrainRows(4000));
        Test = FashionData.Keyed(Ml, FashionData.TestRows(1000));
        Model = Ml.MulticlassClassification.Trainers.ConvNet(new ConvNetTrainer.Options { Network = "lenet5", Epochs = 2, Seed = 1 }).Fit(Train);
        Metrics = Ml.MulticlassClassification.Evaluate(Model.Transform(Test));
    }

    public MLContext Ml { get; } = new(seed: 1);
    public IDataView Train { get; }
    public IDataView Test { get; }
    public ConvNetTransformer Model { get; }
    public MulticlassClassificationMetrics Metrics { get; }
}

public sealed class Prediction
{
    public float[] Score { get; set; } = [];
    public uint PredictedLabel { get; set; }
}

public sealed class TrainedModelTests(TrainedModel trained) : IClassFixture<TrainedModel>
{
    [Fact]
    public void Evaluate_gives_accuracy_well_above_chance()
    {
        // 10 classes: chance is 0.1; two short epochs of LeNet-5 reach about 0.75 on these images.
        Assert.InRange(trained.Metrics.MicroAccuracy, 0.6, 1.0);
        Assert.InRange(trained.Metrics.MacroAccuracy, 0.5, 1.0);
        Assert.True(trained.Metrics.LogLoss < Math.Log(10), $"log-loss {trained.Metrics.LogLoss} is not below chance's ln 10");
        Assert.Equal(10, trained.Metrics.ConfusionMatrix.NumberOfClasses);
    }

    [Fact]
    public void History_has_one_entry_per_epoch_with_falling_loss()
    {
        var h = trained.Model.History;
        Assert.Equal([1, 2], h.Select(m => m.Epoch));
        Assert.True(h[1].TrainLoss < h[0].TrainLoss);
        Assert.All(h, m => Assert.False(m.HasValidation));
        Assert.Null(trained.Model.BestEpoch);
    }

    [Fact]
    public void Output_schema_has_Score_with_SlotNames_and_PredictedLabel_key_with_the_labels_KeyValues()
    {
        var schema = trained.Model.Transform(trained.Test).Schema;
        var score = schema["Score"];
        Assert.Equal(new VectorDataViewType(NumberDataViewType.Single, 10), score.Type);
        VBuffer<ReadOnlyMemory<char>> names = default;
        score.GetSlotNames(ref names);
        Assert.Equal(FashionMnist.ClassNames, names.DenseValues().Select(m => m.ToString()));

        var predicted = schema["PredictedLabel"];
        Assert.Equal(new KeyDataViewType(typeof(uint), 10), predicted.Type);
        VBuffer<ReadOnlyMemory<char>> keyValues = default, labelValues = default;
        predicted.GetKeyValues(ref keyValues);
        trained.Test.Schema["Label"].GetKeyValues(ref labelValues);
        Assert.Equal(labelValues.DenseValues().Select(m => m.ToString()), keyValues.DenseValues().Select(m => m.ToString()));
        Assert.Equal(FashionMnist.ClassNames, trained.Model.ClassNames);

        // Helper columns of the ONNX route do not leak; the input columns pass through.
        Assert.DoesNotContain(schema, c => c.Name.StartsWith("ConvNet.", StringComparison.Ordinal));
        Assert.Equal(trained.Test.Schema.Where(c => !c.IsHidden).Select(c => c.Name).Concat(["Score", "PredictedLabel"]), schema.Where(c => !c.IsHidden).Select(c => c.Name));
    }

    [Fact]
    public void PredictedLabel_is_the_argmax_of_Score()
    {
        var scored = trained.Model.Transform(trained.Test);
        var scores = scored.GetColumn<float[]>("Score").ToArray();
        var keys = scored.GetColumn<uint>("PredictedLabel").ToArray();
        for (int i = 0; i < scores.Length; i++)
        {
            Assert.Equal(1.0, scores[i].Sum(), 4);
            Assert.Equal((uint)Array.IndexOf(scores[i], scores[i].Max()) + 1, keys[i]);
        }
    }

    [Fact]
    public void Save_then_Load_in_a_new_MLContext_gives_identical_accuracy_and_log_loss_within_1e_6()
    {
        string path = Path.Combine(Path.GetTempPath(), $"convnet-{Guid.NewGuid():N}.zip");
        try
        {
            trained.Ml.Model.Save(trained.Model, trained.Train.Schema, path);
            var ml2 = new MLContext(seed: 7);
            var loaded = ml2.Model.Load(path, out var inputSchema);
            Assert.IsType<TransformerChain<ITransformer>>(loaded); // the ML.NET-native twin, not our type
            Assert.NotNull(inputSchema.GetColumnOrNull("Features"));
            var test2 = FashionData.Keyed(ml2, FashionData.TestRows(1000));
            var m2 = ml2.MulticlassClassification.Evaluate(loaded.Transform(test2));
            Assert.Equal(trained.Metrics.MicroAccuracy, m2.MicroAccuracy);
            Assert.Equal(trained.Metrics.MacroAccuracy, m2.MacroAccuracy);
            // The fitted model scores with the engine, the loaded one with ONNX Runtime: probabilities differ by float
            // rounding (a few 1e-7), so the log-loss does in its last digits; the predictions are the same.
            Assert.Equal(trained.Metrics.LogLoss, m2.LogLoss, 1e-6);
            Assert.Equal(trained.Metrics.ConfusionMatrix.Counts, m2.ConfusionMatrix.Counts);
        }
        finally { File.Delete(path); }
    }

    /// <summary>
    /// For metrics equal to the last bit before and after Save/Load, score the fitted model through its ONNX twin
    /// (<see cref="ConvNetTransformer.ToMLNetTransformer"/>): the same graph the saved model holds, run by the same ONNX Runtime.
    /// </summary>
    [Fact]
    public void The_fitted_models_onnx_twin_and_the_loaded_model_give_bit_identical_metrics()
    {
        var stream = new MemoryStream();
        trained.Ml.Model.Save(trained.Model, trained.Train.Schema, stream);
        stream.Position = 0;
        var ml2 = new MLContext(seed: 7);
        var loaded = ml2.Model.Load(stream, out _);
        var before = trained.Ml.MulticlassClassification.Evaluate(trained.Model.ToMLNetTransformer().Transform(trained.Test));
        var after = ml2.MulticlassClassification.Evaluate(loaded.Transform(FashionData.Keyed(ml2, FashionData.TestRows(1000))));
        Assert.Equal(before.MicroAccuracy, after.MicroAccuracy);
        Assert.Equal(before.MacroAccuracy, after.MacroAccuracy);
        Assert.Equal(BitConverter.DoubleToInt64Bits(before.LogLoss), BitConverter.DoubleToInt64Bits(after.LogLoss));
        Assert.Equal(before.PerClassLogLoss, after.PerClassLogLoss);
        Assert.Equal(before.ConfusionMatrix.Counts, after.ConfusionMatrix.Counts);
        // and the twin agrees with the engine-scored fitted model as the test above allows: same predictions
        Assert.Equal(trained.Metrics.ConfusionMatrix.Counts, before.ConfusionMatrix.Counts);
    }

    [Fact]
    public void Exported_onnx_in_OnnxRuntime_matches_the_engine_within_1e_4()
    {
        var network = trained.Model.Network;
        var rows = FashionData.TestRows(200);
        var x = rows.SelectMany(r => r.Features).ToArray();
        var engine = Softmax.Forward(network.Forward(Tensor.FromHost(x, new Shape(200, 1, 28, 28), network.Backend), training: false)).ToHost();

        var stream = new MemoryStream();
        trained.Model.ExportOnnx(stream);
        using var session = new InferenceSession(stream.ToArray());
        using var input = OrtValue.CreateTensorValueFromMemory(x, [200, 1, 28, 28]);
        using var outputs = session.Run(new RunOptions(), ["Features"], [input], ["Score", "PredictedClassIndex"]);
        var ort = outputs[0].GetTensorDataAsSpan<float>().ToArray();
        var index = outputs[1].GetTensorDataAsSpan<long>().ToArray();
        // Float32 rounding differs between the two implementations (summation order in conv/GEMM): probabilities
        // in [0, 1] agree to a few 1e-7; 1e-4 is the bound.
        Assert.Equal(engine.Length, ort.Length);
        for (int i = 0; i < engine.Length; i++) Assert.True(Math.Abs(engine[i] - ort[i]) <= 1e-4, $"value {i}: engine {engine[i]} vs ORT {ort[i]}");
        for (int r = 0; r < 200; r++)
        {
            var row = ort.AsSpan(r * 10, 10);
            Assert.Equal(row.IndexOf(row.ToArray().Max()), (int)index[r]);
        }

        // The fitted ML.NET transformer (the engine in mini-batches behind a cursor) gives the same scores.
        var mlScores = trained.Model.Transform(trained.Ml.Data.LoadFromEnumerable(rows)).GetColumn<float[]>("Score").SelectMany(s => s).ToArray();
        for (int i = 0; i < engine.Length; i++) Assert.True(Math.Abs(engine[i] - mlScores[i]) <= 1e-4, $"value {i}: engine {engine[i]} vs ML.NET {mlScores[i]}");
    }

    [Fact]
    public void PredictionEngine_works_on_the_fitted_and_the_loaded_model_alike()
    {
        var rows = FashionData.TestRows(20);
        using var fitted = trained.Ml.Model.CreatePredictionEngine<ImageRow, Prediction>(trained.Model);
        var stream = new MemoryStream();
        trained.Ml.Model.Save(trained.Model, trained.Train.Schema, stream);
        stream.Position = 0;
        var ml2 = new MLContext();
        using var loaded = ml2.Model.CreatePredictionEngine<ImageRow, Prediction>(ml2.Model.Load(stream, out _));
        var batch = trained.Model.Transform(trained.Ml.Data.LoadFromEnumerable(rows)).GetColumn<uint>("PredictedLabel").ToArray();
        for (int i = 0; i < rows.Length; i++)
        {
            var a = fitted.Predict(rows[i]);
            var b = loaded.Predict(rows[i]);
            Assert.Equal(10, a.Score.Length);
            // Engine vs ONNX Runtime: float rounding only (see Exported_onnx_in_OnnxRuntime_matches_the_engine_within_1e_4).
            for (int k = 0; k < 10; k++) Assert.Equal(a.Score[k], b.Score[k], 1e-5);
            Assert.InRange(a.PredictedLabel, 1u, 10u);
            Assert.Equal(a.PredictedLabel, b.PredictedLabel);
            Assert.Equal(batch[i], a.PredictedLabel);
        }
    }

    [Fact]
    public void Transform_names_a_missing_or_misshapen_feature_column()
    {
        var ml = trained.Ml;
        var wrong = ml.Data.LoadFromEnumerable(new[] { new { Pixels = new float[784] } });
        var e = Assert.ThrowsAny<ArgumentException>(() => trained.Model.Transform(wrong));
        Assert.Contains("'Features'", e.Message);
    }
}
