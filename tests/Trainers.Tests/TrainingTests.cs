using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ConvNet.Data;
using MLNet.ConvNet.Optimizers;
using MLNet.ConvNet.Training;
using Xunit;

namespace MLNet.ConvNet.Trainers.Tests;

/// <summary>Reproducibility, resume, validation, early stopping, callbacks, label kinds and pipelines.</summary>
public sealed class TrainingTests
{
    private readonly MLContext _ml = new(seed: 1);

    private ConvNetTransformer Fit(IDataView data, ConvNetTrainer.Options options) => new ConvNetTrainer(options).Fit(data);

    [Fact]
    public void Same_seed_gives_identical_weights_whatever_the_thread_count_and_another_seed_does_not()
    {
        var data = Tiny.Data(_ml, 600);
        ConvNetTrainer.Options Options(int seed, int threads)
        {
            var o = Tiny.Options(epochs: 1, seed: seed);
            o.MaxThreads = threads;
            o.NetworkFactory = (k, backend) => new Layers.Network(Tiny.NetworkLayers(k), backend); // MaxThreads sets the backend's threads
            o.RandomHorizontalFlip = true;
            o.RandomCropPadding = 2;
            return o;
        }
        string a = Fit(data, Options(5, 2)).Network.ComputeHash();
        string b = Fit(data, Options(5, 1)).Network.ComputeHash();
        string c = Fit(data, Options(6, 2)).Network.ComputeHash();
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
    }

    [Fact]
    public void Resuming_from_a_mid_training_checkpoint_gives_the_uninterrupted_weights()
    {
        var data = Tiny.Data(_ml, 500);
        ConvNetTrainer.Options Options(int epochs, string? dir)
        {
            var o = Tiny.Options(epochs);
            o.Optimizer = ConvNetOptimizer.Sgd;
            o.Nesterov = true;
            o.LearningRate = 0.05;
            o.Schedule = new WarmupSchedule(1, new CosineSchedule(3));
            o.RandomHorizontalFlip = true;
            o.RandomCropPadding = 1;
            o.ValidationFraction = 0.2;
            o.CheckpointDirectory = dir;
            o.Resume = dir is not null;
            return o;
        }
        var straight = Fit(data, Options(3, null));
        string dir = Tiny.TempDirectory();
        try
        {
            var first = Fit(data, Options(1, dir));
            Assert.Single(first.History);
            var resumed = Fit(data, Options(3, dir));
            Assert.Equal(straight.Network.ComputeHash(), resumed.Network.ComputeHash());
            Assert.Equal([1, 2, 3], resumed.History.Select(m => m.Epoch));
            Assert.Equal(straight.History.Select(m => m.ValidationLoss), resumed.History.Select(m => m.ValidationLoss));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void Label_smoothing_reaches_the_training_loss_and_zero_is_the_default()
    {
        var data = Tiny.Data(_ml, 300);
        (string Hash, double FirstLoss) Run(double? smoothing)
        {
            var losses = new List<double>();
            var o = Tiny.Options();
            o.OnBatch = b => losses.Add(b.Loss);
            if (smoothing is { } e) o.LabelSmoothing = e;
            return (Fit(data, o).Network.ComputeHash(), losses[0]);
        }
        var plain = Run(null);
        Assert.Equal(plain, Run(0));
        // Same seed, so the same initial weights and first batch: only the smoothed target changes the first loss.
        var smoothed = Run(0.1);
        Assert.NotEqual(plain.FirstLoss, smoothed.FirstLoss);
        Assert.NotEqual(plain.Hash, smoothed.Hash);
    }

    [Fact]
    public void Validation_data_is_evaluated_every_epoch_and_callbacks_report_progress()
    {
        var batches = new List<BatchProgress>();
        var epochs = new List<EpochMetrics>();
        var o = Tiny.Options(epochs: 2);
        o.ValidationSet = FashionData.Keyed(_ml, FashionData.TestRows(200));
        o.OnBatch = batches.Add;
        o.ProgressInterval = 3;
        o.OnEpoch = epochs.Add;
        var model = Fit(Tiny.Data(_ml, 400), o);
        Assert.Equal(2, model.History.Count);
        Assert.All(model.History, m => Assert.True(m.HasValidation && m.ValidationAccuracy > 0.2, $"epoch {m.Epoch}: validation accuracy {m.ValidationAccuracy}"));
        Assert.Equal(model.History, epochs);
        // 400 rows in batches of 50: 8 steps per epoch, reported after steps 3, 6 and the last.
        Assert.Equal([3, 6, 8, 3, 6, 8], batches.Select(b => b.Batch));
        Assert.All(batches, b => Assert.True(b.BatchCount == 8 && b.SampleCount == 400 && double.IsFinite(b.Loss)));
        Assert.Equal([150, 300, 400], batches.Take(3).Select(b => b.SamplesDone));
    }

    [Fact]
    public void Validation_fraction_holds_out_rows()
    {
        var batches = new List<BatchProgress>();
        var o = Tiny.Options();
        o.ValidationFraction = 0.25;
        o.OnBatch = batches.Add;
        o.Optimizer = ConvNetOptimizer.AdamW;
        o.WeightDecay = 0.05;
        o.Schedule = new StepSchedule(1, gamma: 0.5);
        var model = Fit(Tiny.Data(_ml, 400), o);
        Assert.Equal(300, batches[^1].SampleCount);
        Assert.True(model.History[0].HasValidation);
        Assert.True(model.History[0].ValidationAccuracy > 0.2, $"validation accuracy {model.History[0].ValidationAccuracy}");
    }

    [Fact]
    public void Early_stopping_stops_after_patience_and_restores_the_best_weights()
    {
        // Validation rows whose labels are shifted by one class: the better the network learns, the worse they score,
        // so the best validation loss comes early and patience runs out.
        var rows = FashionData.TestRows(200);
        var names = FashionMnist.ClassNames.ToList();
        foreach (var r in rows) r.Label = names[(names.IndexOf(r.Label) + 1) % 10];
        string dir = Tiny.TempDirectory();
        try
        {
            var o = Tiny.Options(epochs: 8);
            o.ValidationSet = FashionData.Keyed(_ml, rows);
            o.EarlyStoppingPatience = 2;
            o.CheckpointDirectory = dir;
            o.Resume = true; // nothing to resume the first time
            var model = Fit(Tiny.Data(_ml, 500), o);
            Assert.True(model.StoppedEarly);
            int best = model.BestEpoch!.Value;
            var losses = model.History.Select(m => m.ValidationLoss).ToArray();
            Assert.Equal(losses.Min(), losses[best - 1]);
            Assert.Equal(best + 2, model.History[^1].Epoch);
            // The network holds the best epoch's weights (the ones saved in the best checkpoint).
            var saved = Checkpoint.Load(Path.Combine(dir, ConvNetTrainer.Defaults.BestCheckpointFileName));
            Assert.Equal(best, saved.Epoch);
            Assert.Equal(saved.NetworkTensors.Select(t => t.Data), model.Network.Parameters.Select(p => p.Value.ToHost()));

            // Resuming a run that stopped early trains no further and gives the same best weights.
            var again = Fit(Tiny.Data(_ml, 500), o);
            Assert.True(again.StoppedEarly);
            Assert.Equal(best, again.BestEpoch);
            Assert.Equal(model.History, again.History);
            Assert.Equal(model.Network.ComputeHash(), again.Network.ComputeHash());
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void Cancellation_token_stops_training()
    {
        using var cts = new CancellationTokenSource();
        var o = Tiny.Options(epochs: 3);
        o.CancellationToken = cts.Token;
        o.ProgressInterval = 2;
        o.OnBatch = b => { if (b.Batch == 2) cts.Cancel(); };
        Assert.ThrowsAny<OperationCanceledException>(() => Fit(Tiny.Data(_ml, 300), o));
    }

    [Fact]
    public void Numeric_label_gives_PredictedLabel_keys_whose_values_are_the_label_values()
    {
        var rows = FashionData.TrainRows(500).Select(r => new NumberRow { Features = r.Features, Label = FashionMnist.ClassNames.ToList().IndexOf(r.Label) }).ToArray();
        var data = _ml.Data.LoadFromEnumerable(rows);
        var model = Fit(data, Tiny.Options(epochs: 2));
        var scored = model.Transform(data);
        // MapValue with treatValuesAsKeyType stores KeyValues as text, so they are the numbers written out.
        VBuffer<ReadOnlyMemory<char>> keyValues = default;
        scored.Schema["PredictedLabel"].GetKeyValues(ref keyValues);
        Assert.Equal(Enumerable.Range(0, 10).Select(i => i.ToString()), keyValues.DenseValues().Select(v => v.ToString()));
        var metrics = _ml.MulticlassClassification.Evaluate(scored);
        Assert.True(metrics.MicroAccuracy > 0.5, $"accuracy {metrics.MicroAccuracy}");
    }

    [Fact]
    public void In_a_pipeline_with_MapValueToKey_and_MapKeyToValue_it_fits_saves_and_loads()
    {
        var rows = FashionData.TrainRows(400);
        var data = _ml.Data.LoadFromEnumerable(rows);
        var pipeline = _ml.Transforms.Conversion.MapValueToKey("Label")
            .Append(_ml.MulticlassClassification.Trainers.ConvNet(Tiny.Options(epochs: 2)))
            .Append(_ml.Transforms.Conversion.MapKeyToValue("PredictedText", "PredictedLabel"));
        var model = pipeline.Fit(data);
        var stream = new MemoryStream();
        _ml.Model.Save(model, data.Schema, stream);
        stream.Position = 0;
        var ml2 = new MLContext();
        var loaded = ml2.Model.Load(stream, out _);
        var a = model.Transform(data).GetColumn<string>("PredictedText").ToArray();
        var b = loaded.Transform(ml2.Data.LoadFromEnumerable(rows)).GetColumn<string>("PredictedText").ToArray();
        Assert.Equal(a, b);
        Assert.All(a, p => Assert.Contains(p, FashionMnist.ClassNames));
        Assert.True(a.Zip(rows).Count(p => p.First == p.Second.Label) > 200, "the pipeline's text predictions should mostly match the labels");
    }

    [Fact]
    public void Key_label_without_KeyValues_gets_class_indices_as_names()
    {
        var rows = FashionData.TrainRows(300).Select(r => new KeyRow { Features = r.Features, Label = (uint)FashionMnist.ClassNames.ToList().IndexOf(r.Label) }).ToArray(); // LoadFromEnumerable stores key = value + 1
        var model = Fit(_ml.Data.LoadFromEnumerable(rows), Tiny.Options());
        Assert.Equal(Enumerable.Range(0, 10).Select(i => i.ToString()), model.ClassNames);
    }

    public sealed class KeyRow
    {
        [VectorType(1, 28, 28)]
        public float[] Features { get; set; } = [];
        [KeyType(10)]
        public uint Label { get; set; }
    }

    [Fact]
    public void Flat_features_train_with_InputShape()
    {
        var rows = FashionData.TrainRows(300).Select(r => new FlatImageRow { Features = r.Features, Label = r.Label }).ToArray();
        var raw = _ml.Data.LoadFromEnumerable(rows);
        var flat = _ml.Transforms.Conversion.MapValueToKey("Label").Fit(raw).Transform(raw);
        Assert.Equal(new VectorDataViewType(NumberDataViewType.Single, 784), flat.Schema["Features"].Type);
        var o = Tiny.Options();
        o.InputShape = [1, 28, 28];
        var model = Fit(flat, o);
        Assert.Equal(new Shape(1, 28, 28), model.InputShape);
        Assert.Equal(300, model.Transform(flat).GetColumn<float[]>("Score").Count());
    }

    public sealed class FlatImageRow
    {
        [VectorType(784)]
        public float[] Features { get; set; } = [];
        public string Label { get; set; } = "";
    }
}
