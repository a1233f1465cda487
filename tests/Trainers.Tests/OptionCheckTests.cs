using Microsoft.ML;
using MLNet.ConvNet.Training;
using Xunit;

namespace MLNet.ConvNet.Trainers.Tests;

/// <summary>
/// Options that can only be checked against the file system or the data (checkpoint directory, resume target) are
/// checked before the first epoch, and a diverging loss is caught even while it is finite; each error names the option.
/// </summary>
public sealed class OptionCheckTests
{
    private readonly MLContext _ml = new(seed: 1);

    [Theory]
    [InlineData("under /proc")]
    [InlineData("a file in its place")]
    [InlineData("under a file")]
    public void An_unusable_CheckpointDirectory_fails_before_the_first_epoch_naming_the_option(string kind)
    {
        string temp = Tiny.TempDirectory();
        try
        {
            string file = Path.Combine(temp, "not-a-directory");
            File.WriteAllText(file, "x");
            string dir = kind switch
            {
                "under /proc" => $"/proc/convnet-ckpt-{Guid.NewGuid():N}", // not writable, even by root
                "a file in its place" => file,
                _ => Path.Combine(file, "ckpt"),
            };
            int epochs = 0;
            var o = Tiny.Options(epochs: 2);
            o.CheckpointDirectory = dir;
            o.OnEpoch = _ => epochs++;
            var e = Assert.ThrowsAny<ArgumentException>(() => _ml.MulticlassClassification.Trainers.ConvNet(o).Fit(Tiny.Data(_ml, 200)));
            Assert.Equal(0, epochs);
            Assert.Contains($"option CheckpointDirectory = '{dir}'", e.Message);
            Assert.Equal("CheckpointDirectory", e.ParamName);
        }
        finally { Directory.Delete(temp, recursive: true); }
    }

    [Fact]
    public void A_writable_CheckpointDirectory_is_created_and_left_without_probe_files()
    {
        string temp = Tiny.TempDirectory();
        try
        {
            string dir = Path.Combine(temp, "a", "b");
            var o = Tiny.Options(epochs: 1);
            o.CheckpointDirectory = dir;
            _ml.MulticlassClassification.Trainers.ConvNet(o).Fit(Tiny.Data(_ml, 100));
            Assert.Equal([ConvNetTrainer.Defaults.CheckpointFileName], Directory.GetFiles(dir).Select(Path.GetFileName));
        }
        finally { Directory.Delete(temp, recursive: true); }
    }

    [Theory]
    [InlineData("lenet")]
    [InlineData("LeNet")]
    [InlineData("resnet18")]
    [InlineData("")]
    public void A_preset_name_that_is_not_one_of_the_presets_is_refused_listing_them(string name)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new ConvNetTrainer(new ConvNetTrainer.Options { Network = name }));
        Assert.Equal("options.Network", e.ParamName);
        Assert.Contains("lenet5, cnn2bn, vgg, resnet", e.Message);
        // The catalog's short overload goes through the same check.
        Assert.Throws<ArgumentOutOfRangeException>(() => _ml.MulticlassClassification.Trainers.ConvNet(network: name));
    }

    [Fact]
    public void Preset_names_are_case_insensitive()
    {
        Assert.NotNull(new ConvNetTrainer(new ConvNetTrainer.Options { Network = "LeNet5" }));
        Assert.NotNull(new ConvNetTrainer(new ConvNetTrainer.Options { Network = "VGG" }));
    }

    [Fact]
    public void Resuming_from_a_checkpoint_beyond_Epochs_is_refused_naming_both()
    {
        string dir = Tiny.TempDirectory();
        try
        {
            var data = Tiny.Data(_ml, 100);
            var o = Tiny.Options(epochs: 3);
            o.CheckpointDirectory = dir;
            _ml.MulticlassClassification.Trainers.ConvNet(o).Fit(data);

            int epochs = 0;
            o.Epochs = 2;
            o.Resume = true;
            o.OnEpoch = _ => epochs++;
            var e = Assert.ThrowsAny<ArgumentException>(() => _ml.MulticlassClassification.Trainers.ConvNet(o).Fit(data));
            Assert.Equal(0, epochs);
            Assert.Contains("option Epochs = 2", e.Message);
            Assert.Contains("3 epochs", e.Message);
            Assert.Contains(dir, e.Message);

            // Resuming with Epochs equal to the checkpoint's epoch trains nothing more and returns its model.
            o.Epochs = 3;
            var model = _ml.MulticlassClassification.Trainers.ConvNet(o).Fit(data);
            Assert.Equal(0, epochs);
            Assert.Equal(3, model.History.Count);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    private static ConvNetTrainer.Options Diverging(int epochs = 2)
    {
        // Plain SGD at a learning rate of 10 drives the loss up by orders of magnitude within the first steps while it stays finite.
        var o = Tiny.Options(epochs);
        o.Optimizer = ConvNetOptimizer.Sgd;
        o.Momentum = 0;
        o.LearningRate = 10;
        o.ProgressInterval = 2;
        return o;
    }

    [Fact]
    public void A_finite_but_diverging_loss_stops_training_naming_epoch_batch_and_options()
    {
        string dir = Tiny.TempDirectory();
        try
        {
            var losses = new List<double>();
            var o = Diverging();
            o.CheckpointDirectory = dir;
            o.OnBatch = p => losses.Add(p.Loss);
            var e = Assert.Throws<DivergingLossException>(() => _ml.MulticlassClassification.Trainers.ConvNet(o).Fit(Tiny.Data(_ml, 1000)));
            Assert.True(double.IsFinite(e.Loss), $"loss {e.Loss}: the NaN check would have caught it");
            Assert.True(e.Loss > e.Bound);
            // DivergenceFactor (10) x the larger of ln(10 classes) and the first loss read back (the first OnBatch's).
            Assert.Equal(10 * Math.Max(Math.Log(10), losses[0]), e.Bound, 1e-9);
            Assert.Contains($"epoch {e.Epoch}, batch {e.Batch}", e.Message);
            Assert.Contains("option LearningRate = 10", e.Message);
            Assert.Contains("Divergence", e.Message);
            // The check ran before the user's OnBatch saw the diverged step; every loss reported was within the bound.
            Assert.All(losses, l => Assert.True(l <= e.Bound));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void A_diverging_loss_with_Divergence_Warn_logs_once_per_epoch_and_trains_on()
    {
        // After epoch 1 the last layer's weights are multiplied by 1000: the logits become huge, so the loss jumps far
        // above the bound while staying finite (softmax cross-entropy is computed stably), and Adam at 1e-3 trains on.
        var log = new List<string>();
        Layers.Network? network = null;
        var o = Tiny.Options(epochs: 2);
        o.NetworkFactory = (k, backend) => network = Tiny.Network(k, backend);
        o.ProgressInterval = 2;
        o.Divergence = DivergenceAction.Warn;
        o.Log = log.Add;
        o.OnEpoch = m =>
        {
            if (m.Epoch != 1) return;
            var weight = network!.Parameters[^2].Value; // the Dense layer's weight (its bias is last)
            var host = weight.ToHost();
            weight.CopyFromHost(host.Select(v => v * 1000).ToArray());
        };
        var model = _ml.MulticlassClassification.Trainers.ConvNet(o).Fit(Tiny.Data(_ml, 1000));
        Assert.Equal(2, model.History.Count);
        Assert.True(model.History[1].TrainLoss > 10 * Math.Log(10), $"epoch 2 loss {model.History[1].TrainLoss}: the test did not make it diverge");
        var warnings = log.Where(l => l.Contains("diverging", StringComparison.Ordinal)).ToArray();
        Assert.Single(warnings); // epoch 1 is below the bound; epoch 2 warns once however many of its reads are above
        Assert.Contains("epoch 2", warnings[0]);
        Assert.Contains("option Divergence = Warn", warnings[0]);
    }

    [Fact]
    public void Divergence_options_are_checked()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new ConvNetTrainer(new ConvNetTrainer.Options { DivergenceFactor = 1 }));
        Assert.Equal("options.DivergenceFactor", e.ParamName);
        e = Assert.Throws<ArgumentOutOfRangeException>(() => new ConvNetTrainer(new ConvNetTrainer.Options { Divergence = DivergenceAction.Warn }));
        Assert.Equal("options.Divergence", e.ParamName);
        Assert.Contains("Log", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new ConvNetTrainer(new ConvNetTrainer.Options { Divergence = (DivergenceAction)7 }));
    }

    [Fact]
    public void Ordinary_training_is_not_flagged_as_diverging()
    {
        var o = Tiny.Options(epochs: 2);
        o.ProgressInterval = 1;
        var model = _ml.MulticlassClassification.Trainers.ConvNet(o).Fit(Tiny.Data(_ml, 1000));
        Assert.Equal(2, model.History.Count);
    }
}
