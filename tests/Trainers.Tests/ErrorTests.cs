using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ConvNet.Data;
using MLNet.ConvNet.Training;
using Xunit;

namespace MLNet.ConvNet.Trainers.Tests;

/// <summary>Every bad input is a clear exception naming the column, option, row or epoch.</summary>
public sealed class ErrorTests
{
    private readonly MLContext _ml = new(seed: 1);

    private static NumberRow[] Numbered(int count, Func<int, float>? label = null) =>
        FashionData.TrainRows(count).Select((r, i) => new NumberRow { Features = r.Features, Label = label?.Invoke(i) ?? i % 10 }).ToArray();

    private ConvNetTransformer Fit(IDataView data, ConvNetTrainer.Options? options = null) =>
        _ml.MulticlassClassification.Trainers.ConvNet(options ?? Tiny.Options()).Fit(data);

    [Fact]
    public void Missing_label_column_is_named()
    {
        var options = Tiny.Options();
        options.LabelColumnName = "Class";
        var e = Assert.ThrowsAny<ArgumentException>(() => Fit(Tiny.Data(_ml, 100), options));
        Assert.Contains("Label column 'Class' is not in the data", e.Message);
    }

    [Fact]
    public void Missing_label_column_is_named_by_the_pipeline_schema_check_too()
    {
        var options = Tiny.Options();
        options.LabelColumnName = "Class";
        var pipeline = _ml.Transforms.CopyColumns("Copy", "Features").Append(new ConvNetTrainer(options));
        var e = Assert.ThrowsAny<ArgumentException>(() => pipeline.Fit(Tiny.Data(_ml, 100)));
        Assert.Contains("'Class'", e.Message);
    }

    [Fact]
    public void NaN_label_is_named_with_its_row()
    {
        var rows = Numbered(60, i => i == 17 ? float.NaN : i % 10);
        var e = Assert.Throws<InvalidDataException>(() => Fit(_ml.Data.LoadFromEnumerable(rows)));
        Assert.Contains("Label column 'Label' is NaN in row 17", e.Message);
    }

    [Fact]
    public void Missing_key_label_is_named_with_its_row()
    {
        // MapValueToKey maps a value absent from its key data to key 0, ML.NET's missing key.
        var rows = FashionData.TrainRows(30);
        rows[4].Label = "Parka";
        var e = Assert.Throws<InvalidDataException>(() => Fit(FashionData.Keyed(_ml, rows)));
        Assert.Contains("Label column 'Label' is missing (key value 0", e.Message);
        Assert.Contains("row 4", e.Message);
    }

    [Fact]
    public void Label_that_is_neither_key_nor_number_is_named_with_its_type()
    {
        var text = _ml.Data.LoadFromEnumerable(FashionData.TrainRows(20)); // Label is text
        var e = Assert.ThrowsAny<ArgumentException>(() => Fit(text));
        Assert.Contains("Label column 'Label' has type", e.Message);
        Assert.Contains("MapValueToKey", e.Message);

        var flags = _ml.Data.LoadFromEnumerable(FashionData.TrainRows(20).Select(r => new { r.Features, Label = true }).ToArray(),
            SchemaDefinition.Create(typeof(BoolRow)));
        Assert.Contains("type Boolean", Assert.ThrowsAny<ArgumentException>(() => Fit(flags)).Message);
    }

    public sealed class BoolRow
    {
        [VectorType(1, 28, 28)]
        public float[] Features { get; set; } = [];
        public bool Label { get; set; }
    }

    [Fact]
    public void Numeric_label_that_is_not_a_class_index_is_refused()
    {
        var e = Assert.Throws<InvalidDataException>(() => Fit(_ml.Data.LoadFromEnumerable(Numbered(30, i => i == 3 ? 2.5f : i % 10))));
        Assert.Contains("holds 2.5 in row 3", e.Message);
        e = Assert.Throws<InvalidDataException>(() => Fit(_ml.Data.LoadFromEnumerable(Numbered(30, i => i == 5 ? -1f : i % 10))));
        Assert.Contains("holds -1 in row 5", e.Message);
    }

    [Fact]
    public void Class_absent_from_training_is_an_error_unless_allowed()
    {
        // Key label with all ten Fashion-MNIST classes, but no "Ankle boot" (class 9) row.
        var rows = FashionData.TrainRows(300).Where(r => r.Label != "Ankle boot").ToArray();
        var data = FashionData.Keyed(_ml, rows);
        var e = Assert.ThrowsAny<ArgumentException>(() => Fit(data));
        Assert.Contains("no training row of class 'Ankle boot' (index 9)", e.Message);
        Assert.Contains("AllowMissingClasses", e.Message);

        var options = Tiny.Options();
        options.AllowMissingClasses = true;
        var model = Fit(data, options);
        Assert.Equal(10, model.ClassNames.Count);
        Assert.Equal(new VectorDataViewType(NumberDataViewType.Single, 10), model.Transform(data).Schema["Score"].Type);
    }

    public sealed class FlatRow
    {
        [VectorType(100)]
        public float[] Features { get; set; } = [];
        public float Label { get; set; }
    }

    private IDataView Flat(int count) =>
        _ml.Data.LoadFromEnumerable(Enumerable.Range(0, count).Select(i => new FlatRow { Features = Enumerable.Range(0, 100).Select(j => (float)Math.Sin(i + j)).ToArray(), Label = i % 2 }).ToArray());

    [Fact]
    public void Feature_size_not_matching_the_network_names_column_and_layer()
    {
        // A flat vector into LeNet-5: its first convolution needs [N, C, H, W].
        var lenet = new ConvNetTrainer.Options { Network = "lenet5", Epochs = 1 };
        var e = Assert.ThrowsAny<ArgumentException>(() => Fit(Flat(10), lenet));
        Assert.Contains("feature column 'Features'", e.Message);
        Assert.Contains("set option InputShape", e.Message);
        Assert.Contains("layer 0 'conv1'", e.Message);

        // 10x10 images shrink below 1 pixel in LeNet-5's second pooling.
        lenet.InputShape = [1, 10, 10];
        e = Assert.ThrowsAny<ArgumentException>(() => Fit(Flat(10), lenet));
        Assert.Contains("option InputShape", e.Message);
        Assert.Contains("'pool2'", e.Message);

        // InputShape must hold the column's values.
        lenet.InputShape = [1, 28, 28];
        e = Assert.ThrowsAny<ArgumentException>(() => Fit(Flat(10), lenet));
        Assert.Contains("InputShape = [1, 28, 28] holds 784 values but feature column 'Features'", e.Message);

        // A feature column that is not a vector of Single.
        var text = _ml.Data.LoadFromEnumerable(new[] { new { Features = "x", Label = 1f } });
        Assert.Contains("Feature column 'Features' has type", Assert.ThrowsAny<ArgumentException>(() => Fit(text)).Message);
    }

    [Fact]
    public void Empty_data_is_refused()
    {
        var e = Assert.ThrowsAny<ArgumentException>(() => Fit(_ml.Data.LoadFromEnumerable(Array.Empty<NumberRow>())));
        Assert.Contains("training data has no rows", e.Message);
    }

    [Theory]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    [InlineData(float.NegativeInfinity)]
    public void Non_finite_feature_is_named_with_row_and_slot(float bad)
    {
        var rows = Numbered(40);
        rows[12].Features = (float[])rows[12].Features.Clone();
        rows[12].Features[345] = bad;
        var e = Assert.Throws<InvalidDataException>(() => Fit(_ml.Data.LoadFromEnumerable(rows)));
        Assert.Contains($"Feature column 'Features' holds {bad} at slot 345 of row 12", e.Message);
    }

    [Theory]
    [InlineData("LearningRate", 0.0)]
    [InlineData("LearningRate", -1e-3)]
    [InlineData("LearningRate", double.NaN)]
    [InlineData("BatchSize", 0.0)]
    [InlineData("BatchSize", -5.0)]
    [InlineData("Epochs", 0.0)]
    [InlineData("ValidationFraction", 1.0)]
    [InlineData("Momentum", 1.0)]
    [InlineData("RandomCropPadding", -1.0)]
    [InlineData("LabelSmoothing", -0.1)]
    [InlineData("LabelSmoothing", 1.0)]
    [InlineData("LabelSmoothing", 0.99999999)]   // rounds to 1 as the float the trainer uses
    [InlineData("LabelSmoothing", double.NaN)]
    public void Out_of_range_option_is_named(string option, double value)
    {
        var o = Tiny.Options();
        switch (option)
        {
            case "LearningRate": o.LearningRate = value; break;
            case "BatchSize": o.BatchSize = (int)value; break;
            case "Epochs": o.Epochs = (int)value; break;
            case "ValidationFraction": o.ValidationFraction = value; break;
            case "Momentum": o.Momentum = value; break;
            case "RandomCropPadding": o.RandomCropPadding = (int)value; break;
            case "LabelSmoothing": o.LabelSmoothing = value; break;
        }
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => _ml.MulticlassClassification.Trainers.ConvNet(o));
        Assert.Equal($"options.{option}", e.ParamName);
        Assert.Contains($"option {option} =", e.Message);
    }

    [Fact]
    public void Unknown_preset_and_early_stopping_without_validation_are_named()
    {
        Assert.Contains("option Network = alexnet", Assert.ThrowsAny<ArgumentException>(() => new ConvNetTrainer(new ConvNetTrainer.Options { Network = "alexnet" })).Message);
        Assert.Contains("EarlyStoppingPatience", Assert.ThrowsAny<ArgumentException>(() => new ConvNetTrainer(new ConvNetTrainer.Options { EarlyStoppingPatience = 2 })).Message);
        Assert.Contains("Resume", Assert.ThrowsAny<ArgumentException>(() => new ConvNetTrainer(new ConvNetTrainer.Options { Resume = true })).Message);
    }

    [Fact]
    public void Cuda_backend_without_a_gpu_fails_in_Fit_with_the_factory_message_naming_option_Backend()
    {
        // This build has no CUDA backend (BackendFactory's probe says so), so Cuda cannot run here. Auto and Cpu train on the
        // CPU, and the log names the choice and its reason.
        var trainer = new ConvNetTrainer(new ConvNetTrainer.Options { Backend = ConvNetBackend.Cuda, Epochs = 1 });
        var e = Assert.Throws<Backends.BackendUnavailableException>(() => trainer.Fit(Tiny.Data(_ml, 50)));
        Assert.Contains("Backend = Cuda", e.Message);
        var log = new List<string>();
        var o = Tiny.Options();
        o.Backend = ConvNetBackend.Auto;
        o.Log = log.Add;
        var model = Fit(Tiny.Data(_ml, 100), o);
        Assert.Equal("cpu", model.Network.Backend.Name);
        Assert.Contains(log, l => l.Contains("backend 'cpu'") && l.Contains("option Backend = Auto") && l.Contains("Auto chose the CPU"));
    }

    [Fact]
    public void Bad_backend_options_are_named()
    {
        Assert.Contains("DeviceIndex", Assert.ThrowsAny<ArgumentException>(() => new ConvNetTrainer(new ConvNetTrainer.Options { DeviceIndex = -1 })).Message);
        Assert.Contains("ProgressInterval", Assert.ThrowsAny<ArgumentException>(() => new ConvNetTrainer(new ConvNetTrainer.Options { ProgressInterval = 0 })).Message);
        // A NetworkFactory that ignores the backend it is given.
        var o = Tiny.Options();
        o.NetworkFactory = (k, _) => Tiny.Network(k, new Backends.Reference.ReferenceBackend());
        var e = Assert.ThrowsAny<ArgumentException>(() => Fit(Tiny.Data(_ml, 50), o));
        Assert.Contains("NetworkFactory", e.Message);
        Assert.Contains("backend 'reference'", e.Message);
    }

    [Fact]
    public void Network_whose_output_does_not_match_the_classes_is_named()
    {
        var o = Tiny.Options();
        o.NetworkFactory = (_, backend) => Tiny.Network(3, backend);
        var e = Assert.ThrowsAny<ArgumentException>(() => Fit(Tiny.Data(_ml, 50), o));
        Assert.Contains("10 classes but the network from NetworkFactory outputs [3]", e.Message);
    }

    [Fact]
    public void Loss_turning_NaN_names_epoch_and_batch_and_keeps_the_last_good_checkpoint()
    {
        string dir = Tiny.TempDirectory();
        try
        {
            Layers.Network? network = null;
            var o = Tiny.Options(epochs: 3);
            o.CheckpointDirectory = dir;
            o.NetworkFactory = (k, backend) => network = Tiny.Network(k, backend);
            // After epoch 1 a weight becomes NaN, so the first batch of epoch 2 has a NaN loss.
            o.OnEpoch = m => { if (m.Epoch == 1) network!.Parameters[0].Value.CopyFromHost(Enumerable.Repeat(float.NaN, network.Parameters[0].Value.Length).ToArray()); };
            var e = Assert.Throws<NonFiniteLossException>(() => Fit(Tiny.Data(_ml, 200), o));
            Assert.Equal(2, e.Epoch);
            Assert.Equal(1, e.Batch);
            Assert.Contains("epoch 2, batch 1", e.Message);
            string path = Path.Combine(dir, ConvNetTrainer.Defaults.CheckpointFileName);
            Assert.Contains(path, e.Message);
            var kept = Checkpoint.Load(path);
            Assert.Equal(1, kept.Epoch);
            Assert.All(kept.NetworkTensors, t => Assert.All(t.Data, v => Assert.True(float.IsFinite(v))));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Theory]
    [InlineData("corrupted")]
    [InlineData("truncated")]
    [InlineData("architecture")]
    public void Damaged_checkpoint_is_refused_naming_file_and_option(string damage)
    {
        string dir = Tiny.TempDirectory();
        try
        {
            var o = Tiny.Options(epochs: 1);
            o.CheckpointDirectory = dir;
            var data = Tiny.Data(_ml, 100);
            Fit(data, o);
            string path = Path.Combine(dir, ConvNetTrainer.Defaults.CheckpointFileName);
            var bytes = File.ReadAllBytes(path);
            if (damage == "corrupted") { bytes[bytes.Length / 2] ^= 0x40; File.WriteAllBytes(path, bytes); }
            if (damage == "truncated") File.WriteAllBytes(path, bytes[..(bytes.Length - 100)]);
            o.Epochs = 2;
            o.Resume = true;
            if (damage == "architecture") o.NetworkFactory = (k, backend) => new Layers.Network([new Layers.Flatten(), new Layers.Dense(k)], backend);
            var e = Assert.Throws<InvalidDataException>(() => Fit(data, o));
            Assert.Contains("option CheckpointDirectory", e.Message);
            Assert.Contains(damage == "architecture" ? "another architecture" : damage, e.Message);
            if (damage != "architecture") Assert.Contains(path, e.Message);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void Validation_set_with_an_unknown_class_is_named()
    {
        var o = Tiny.Options();
        o.ValidationSet = _ml.Data.LoadFromEnumerable(Numbered(20, i => 12));
        var e = Assert.Throws<InvalidDataException>(() => Fit(_ml.Data.LoadFromEnumerable(Numbered(40)), o));
        Assert.Contains("holds 12 in row 0 of the validation data", e.Message);
    }
}
