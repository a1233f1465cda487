using MLNet.ConvNet.Backends.Cpu;
using MLNet.ConvNet.Data;
using MLNet.ConvNet.Layers;
using MLNet.ConvNet.Optimizers;
using MLNet.ConvNet.Training;
using Xunit;

namespace MLNet.ConvNet.Tests;

public class TrainerTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>
    /// 1x8x8 images of 3 classes: a bright 3x3 square in the top-left, centre or bottom-right on uniform noise.
    /// </summary>
    private static InMemoryDataset Squares(int count, int seed)
    {
        var rng = new Random(seed);
        var x = new float[count * 64];
        var y = new int[count];
        for (int i = 0; i < count; i++)
        {
            y[i] = i % 3;
            for (int p = 0; p < 64; p++) x[i * 64 + p] = (float)(rng.NextDouble() - 0.5);
            int at = y[i] * 2 + 1;
            for (int r = 0; r < 3; r++) for (int c = 0; c < 3; c++) x[i * 64 + (at + r) * 8 + at + c] += 1.5f;
        }
        return new InMemoryDataset(x, y, new Shape(1, 8, 8), 3);
    }

    private static (Network Net, Trainer Trainer) Setup(TrainerOptions options, ulong seed = 1, CpuBackend? backend = null)
    {
        var net = CheckpointTests.SmallNet(seed, backend);
        return (net, new Trainer(net, new Adam(net.Parameters, 1e-2), options));
    }

    [Fact]
    public void TrainingOnFashionMnistLowersTheLossClearly()
    {
        var train = FashionMnist.LoadTrain(limit: 500);
        var test = FashionMnist.LoadTest(limit: 500);
        var net = Presets.LeNet5().Build(train.SampleShape, seed: 42);
        var before = Trainer.Evaluate(net, test, cancellation: Ct);
        var history = new Trainer(net, new Adam(net.Parameters, 2e-3), new TrainerOptions { Epochs = 4, BatchSize = 32, Seed = 42 }).Fit(train, cancellation: Ct);
        var after = Trainer.Evaluate(net, test, cancellation: Ct);
        // Untrained: loss around ln 10 = 2.3 and accuracy near 0.1. Four epochs over 500 images take LeNet to roughly
        // 70% on unseen images; the thresholds leave room for any reasonable seed.
        Assert.InRange(before.Accuracy, 0.0, 0.3);
        Assert.True(history[^1].TrainLoss < 0.6 * history[0].TrainLoss, $"train loss {history[0].TrainLoss:F3} -> {history[^1].TrainLoss:F3}");
        Assert.True(after.Loss < 0.6 * before.Loss, $"test loss {before.Loss:F3} -> {after.Loss:F3}");
        Assert.True(after.Accuracy > 0.6, $"test accuracy {after.Accuracy:F3}");
        Assert.Equal(500, after.Confusion.Sum(row => row.Sum()));
        Assert.Equal((int)Math.Round(after.Accuracy * 500), Enumerable.Range(0, 10).Sum(k => after.Confusion[k][k]));
    }

    [Fact]
    public void SameSeedAndDataGiveBitIdenticalWeightsOnAnyThreadCount()
    {
        var data = Squares(90, 1);
        var options = new TrainerOptions { Epochs = 2, BatchSize = 16, Seed = 7 };
        string Run(CpuBackend b, TrainerOptions o)
        {
            var (net, trainer) = Setup(o, backend: b);
            trainer.Fit(data, cancellation: Ct);
            return net.ComputeHash();
        }
        string a = Run(new CpuBackend(maxThreads: 4), options);
        Assert.Equal(a, Run(new CpuBackend(maxThreads: 4), options));
        Assert.Equal(a, Run(new CpuBackend(maxThreads: 1), options));
        Assert.NotEqual(a, Run(new CpuBackend(maxThreads: 4), options with { Seed = 8 }));
    }

    [Fact]
    public void ResumingFromACheckpointReproducesTheUninterruptedRun()
    {
        using var dir = new TempDir();
        var data = Squares(90, 2);
        var validation = Squares(30, 3);
        var options = new TrainerOptions { Epochs = 3, BatchSize = 16, Seed = 11, Schedule = new CosineSchedule(3) };
        var (straight, t1) = Setup(options);
        var full = t1.Fit(data, validation, Ct);

        string path = dir.File("run.ckpt");
        var (_, t2) = Setup(options with { Epochs = 1, CheckpointPath = path });
        t2.Fit(data, validation, Ct);
        // Resume into objects built from another seed: everything must come from the checkpoint.
        var (resumed, t3) = Setup(options with { ResumeFrom = path }, seed: 1234);
        var history = t3.Fit(data, validation, Ct);

        Assert.Equal(straight.ComputeHash(), resumed.ComputeHash());
        Assert.Equal(3, history.Count);
        Assert.Equal(full.Select(m => (m.Epoch, m.TrainLoss, m.TrainAccuracy, m.ValidationLoss, m.LearningRate)),
                     history.Select(m => (m.Epoch, m.TrainLoss, m.TrainAccuracy, m.ValidationLoss, m.LearningRate)));
    }

    [Fact]
    public void ResumingMidEpochFromADiskCacheReproducesTheUninterruptedRunInMemory()
    {
        using var dir = new TempDir();
        var data = Squares(90, 2); // 6 steps of 16 per epoch
        var validation = Squares(30, 3);
        var options = new TrainerOptions { Epochs = 3, BatchSize = 16, Seed = 11, Schedule = new CosineSchedule(3) };
        var (straight, t1) = Setup(options);
        var full = t1.Fit(data, validation, Ct);

        // Interrupted in epoch 2 after step 5; the last checkpoint was written after step 4.
        string path = dir.File("mid.ckpt");
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var (_, t2) = Setup(options with
        {
            CheckpointPath = path, CheckpointInterval = 4, ProgressInterval = 1,
            OnBatch = p => { if (p.Epoch == 2 && p.Batch == 5) cts.Cancel(); },
        });
        Assert.ThrowsAny<OperationCanceledException>(() => t2.Fit(data, validation, cts.Token));
        var saved = Checkpoint.Load(path);
        Assert.Equal((1, 4, 8), (saved.Epoch, saved.Step, saved.StepStatistics.Length));

        // Resumed into objects built from another seed, reading the samples from a disk cache.
        using (var writer = new SampleCacheWriter(dir.File("train.samples"), data.SampleShape))
        {
            for (int i = 0; i < data.Count; i++) writer.Add(data.Features.Slice(i * 64, 64), data.Labels[i]);
            using var cache = writer.Complete(3);
            var (resumed, t3) = Setup(options with { ResumeFrom = path }, seed: 1234);
            var history = t3.Fit(cache, validation, Ct);
            Assert.Equal(straight.ComputeHash(), resumed.ComputeHash());
            Assert.Equal(full.Select(m => (m.Epoch, m.TrainLoss, m.TrainAccuracy, m.ValidationLoss, m.LearningRate)),
                         history.Select(m => (m.Epoch, m.TrainLoss, m.TrainAccuracy, m.ValidationLoss, m.LearningRate)));
        }
    }

    /// <summary>Wraps a dataset and fills the features of its <c>poisonCall</c>-th batch (0-based) with NaN.</summary>
    private sealed class Poisoned(IDataset inner, int poisonCall) : IDataset
    {
        private int _calls;
        public int Count => inner.Count;
        public Shape SampleShape => inner.SampleShape;
        public int ClassCount => inner.ClassCount;
        public void CopyBatch(ReadOnlySpan<int> indices, Span<float> features, Span<int> labels)
        {
            inner.CopyBatch(indices, features, labels);
            if (_calls++ == poisonCall) features[0] = float.NaN;
        }
    }

    [Fact]
    public void ANaNLossStopsNamingEpochAndBatchAndKeepsTheLastCheckpoint()
    {
        using var dir = new TempDir();
        string path = dir.File("last.ckpt");
        var data = new Poisoned(Squares(60, 4), poisonCall: 6); // 4 batches of 16 per epoch: epoch 2, batch 3
        var (_, trainer) = Setup(new TrainerOptions { Epochs = 3, BatchSize = 16, CheckpointPath = path });
        var e = Assert.Throws<NonFiniteLossException>(() => trainer.Fit(data, cancellation: Ct));
        Assert.Equal((2, 3), (e.Epoch, e.Batch));
        Assert.True(double.IsNaN(e.Loss));
        Assert.Contains("epoch 2, batch 3", e.Message);
        Assert.Contains(path, e.Message);
        Assert.Equal(1, Checkpoint.Load(path).Epoch);
    }

    [Fact]
    public void CancellationStopsBeforeTheNextBatch()
    {
        using var cts = new CancellationTokenSource();
        int batches = 0;
        var (_, trainer) = Setup(new TrainerOptions
        {
            Epochs = 2, BatchSize = 10, ProgressInterval = 1,
            OnBatch = p => { batches++; if (p.Batch == 2) cts.Cancel(); },
        });
        Assert.ThrowsAny<OperationCanceledException>(() => trainer.Fit(Squares(50, 5), cancellation: cts.Token));
        Assert.Equal(2, batches);
    }

    [Fact]
    public void ProgressReportsEveryBatchAndEpochWithTheScheduledRate()
    {
        var batches = new List<BatchProgress>();
        var epochs = new List<EpochMetrics>();
        var (net, trainer) = Setup(new TrainerOptions
        {
            Epochs = 3, BatchSize = 16, ProgressInterval = 1, Schedule = new StepSchedule(1, 0.5), OnBatch = batches.Add, OnEpoch = epochs.Add,
        });
        var validation = Squares(21, 7);
        var history = trainer.Fit(Squares(40, 6), validation, Ct);
        Assert.Equal(9, batches.Count); // 16 + 16 + 8 per epoch
        Assert.Equal([16, 16, 8], batches.Take(3).Select(b => b.BatchSize));
        Assert.Equal([16, 32, 40], batches.Take(3).Select(b => b.SamplesDone));
        Assert.Equal([1e-2, 1e-2, 1e-2, 5e-3, 5e-3, 5e-3, 2.5e-3, 2.5e-3, 2.5e-3], batches.Select(b => b.LearningRate));
        Assert.Equal([1, 2, 3], epochs.Select(m => m.Epoch));
        Assert.Equal(history, epochs);
        var last = Trainer.Evaluate(net, validation, cancellation: Ct);
        Assert.Equal(last.Loss, history[^1].ValidationLoss);
        Assert.Equal(last.Accuracy, history[^1].ValidationAccuracy);
        Assert.True(history[^1].TrainAccuracy > 0.8, $"squares are easy: {history[^1].TrainAccuracy}");
    }

    [Fact]
    public void LabelSmoothingTrainsOnTheSmoothedLossAndValidatesOnThePlainOne()
    {
        const float e = 0.1f;
        const int count = 30;
        var data = Squares(count, 3);
        // No batch norm or dropout: each sample's logits do not depend on the batch's order or on the step's random state.
        static Network Net() => new Network(new Flatten(), new Dense(3)).Build(new Shape(1, 8, 8), seed: 5);
        var features = new float[count * 64];
        var labels = new int[count];
        data.CopyBatch(Enumerable.Range(0, count).ToArray(), features, labels);
        var x = Tensor.FromHost(features, new Shape(count, 1, 8, 8));
        var logits0 = Net().Forward(x, training: false);
        float smoothed0 = Ops.CrossEntropy.Forward(logits0, labels, e).MeanLoss, plain0 = Ops.CrossEntropy.Forward(logits0, labels).MeanLoss;
        Assert.True(Math.Abs(smoothed0 - plain0) > 1e-3, $"the two losses must differ for the check to mean something: {smoothed0} vs {plain0}");

        string Train(float smoothing, List<double> losses, out IReadOnlyList<EpochMetrics> history, out Network net)
        {
            net = Net();
            var options = new TrainerOptions { Epochs = 2, BatchSize = count, Seed = 3, LabelSmoothing = smoothing, OnBatch = p => losses.Add(p.Loss) };
            history = new Trainer(net, new Adam(net.Parameters, 1e-2), options).Fit(data, data, Ct);
            return net.ComputeHash();
        }
        var smoothedLosses = new List<double>();
        string smoothedHash = Train(e, smoothedLosses, out var history, out var trained);
        // One batch of every sample, shuffled: the first step's loss is the smoothed loss of the untouched network, up to
        // the order of the float32 mean (1e-6 relative).
        Assert.Equal(smoothed0, smoothedLosses[0], smoothed0 * 1e-6);
        // Validation reports the plain cross-entropy of the trained network.
        Assert.Equal(Trainer.Evaluate(trained, data, cancellation: Ct).Loss, history[^1].ValidationLoss);
        double plainAfter = Ops.CrossEntropy.Forward(trained.Forward(x, training: false), labels).MeanLoss;
        Assert.Equal(plainAfter, history[^1].ValidationLoss, plainAfter * 1e-6);
        // Smoothing changes the gradient, hence the weights.
        Assert.NotEqual(smoothedHash, Train(0f, [], out _, out _));
    }

    [Fact]
    public void ProgressComesEveryIntervalAndAtTheEpochsLastStepWithoutChangingTheWeights()
    {
        // 7 steps per epoch (100 samples, batches of 15 and a last one of 10); interval 3 reports steps 3, 6 and 7.
        string Train(int interval, List<BatchProgress>? seen)
        {
            var net = new Network(new Flatten(), new Dense(8), Activation.Relu(), new Dense(6)).Build(new Shape(1, 8, 8), seed: 4);
            var options = new TrainerOptions { Epochs = 2, BatchSize = 15, Seed = 9, ProgressInterval = interval, OnBatch = seen is null ? null : seen.Add };
            new Trainer(net, new Adam(net.Parameters, 1e-2), options).Fit(Squares(100, 6), cancellation: Ct);
            return net.ComputeHash();
        }
        var every3 = new List<BatchProgress>();
        var every1 = new List<BatchProgress>();
        string a = Train(3, every3), b = Train(1, every1), c = Train(50, null);
        Assert.Equal([3, 6, 7, 3, 6, 7], every3.Select(p => p.Batch));
        Assert.Equal([15, 15, 10], every3.Take(3).Select(p => p.BatchSize));
        // A report carries the loss and accuracy of the step it follows: the same as when every step is reported.
        var byStep = every1.ToDictionary(p => (p.Epoch, p.Batch));
        foreach (var p in every3)
        {
            Assert.Equal(byStep[(p.Epoch, p.Batch)].Loss, p.Loss);
            Assert.Equal(byStep[(p.Epoch, p.Batch)].Accuracy, p.Accuracy);
        }
        Assert.Equal(a, b);
        Assert.Equal(a, c);
        var small = new Network(new Flatten(), new Dense(2)).Build(new Shape(4));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new Trainer(small, new Sgd(small.Parameters, 0.1), new TrainerOptions { ProgressInterval = 0 }));
        Assert.Contains("ProgressInterval", e.Message);
    }

    [Fact]
    public void ALoneLastSampleJoinsThePreviousBatch()
    {
        // Batch norm after a dense layer needs two samples per batch in training mode.
        var net = new Network(new Flatten(), new Dense(8), new BatchNorm(), Activation.Relu(), new Dense(3)).Build(new Shape(1, 8, 8), seed: 1);
        var sizes = new List<int>();
        var trainer = new Trainer(net, new Sgd(net.Parameters, 0.1), new TrainerOptions { Epochs = 1, BatchSize = 16, ProgressInterval = 1, OnBatch = p => sizes.Add(p.BatchSize) });
        trainer.Fit(Squares(33, 8), cancellation: Ct);
        Assert.Equal([16, 17], sizes);
    }

    [Fact]
    public void BadOptionsAndDataThrowNamingThem()
    {
        var net = CheckpointTests.SmallNet(1);
        var adam = new Adam(net.Parameters);
        Assert.Equal("BatchSize", Assert.Throws<ArgumentOutOfRangeException>(() => new Trainer(net, adam, new TrainerOptions { BatchSize = 0 })).ParamName);
        Assert.Equal("Epochs", Assert.Throws<ArgumentOutOfRangeException>(() => new Trainer(net, adam, new TrainerOptions { Epochs = -1 })).ParamName);
        foreach (float e in new[] { -0.1f, 1f, float.NaN })
            Assert.Equal("LabelSmoothing", Assert.Throws<ArgumentOutOfRangeException>(() => new Trainer(net, adam, new TrainerOptions { LabelSmoothing = e })).ParamName);
        Assert.Throws<ArgumentException>(() => new Trainer(Presets.LeNet5(), adam)); // not built
        var trainer = new Trainer(net, adam);
        Assert.Contains("empty", Assert.Throws<ArgumentException>(() => trainer.Fit(new InMemoryDataset([], [], new Shape(1, 8, 8), 3), cancellation: Ct)).Message);
        var wrong = new InMemoryDataset(new float[2 * 49], [0, 1], new Shape(1, 7, 7), 3);
        Assert.Contains("[1, 7, 7]", Assert.Throws<ArgumentException>(() => trainer.Fit(wrong, cancellation: Ct)).Message);
        var classes = new InMemoryDataset(new float[2 * 64], [0, 4], new Shape(1, 8, 8), 5);
        Assert.Contains("5 classes", Assert.Throws<ArgumentException>(() => trainer.Fit(classes, cancellation: Ct)).Message);
        Assert.Contains("validation", Assert.Throws<ArgumentException>(() => trainer.Fit(Squares(3, 1), wrong, Ct)).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new InMemoryDataset(new float[64], [3], new Shape(1, 8, 8), 3));
    }
}
