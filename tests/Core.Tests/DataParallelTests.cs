using System.Diagnostics.CodeAnalysis;
using MLNet.ConvNet.Backends;
using MLNet.ConvNet.Data;
using MLNet.ConvNet.Distributed;
using MLNet.ConvNet.Layers;
using MLNet.ConvNet.Optimizers;
using MLNet.ConvNet.Training;
using Xunit;

namespace MLNet.ConvNet.Tests;

/// <summary>
/// The Trainer's data-parallel path with N ranks as N threads of this process (<see cref="ThreadGroup"/>), against one
/// process: the maths of sharding, weighting and reducing, without MPI (tests/Distributed.Tests runs it under mpirun).
/// </summary>
public class DataParallelTests
{
    /// <summary>1x8x8 random images of 3 classes with the class's fixed pattern added, so the loss falls.</summary>
    private static InMemoryDataset Data(int count, int seed)
    {
        var rng = new Random(seed);
        var pattern = Enumerable.Range(0, 3 * 64).Select(_ => (float)rng.NextDouble()).ToArray();
        var x = new float[count * 64];
        var y = new int[count];
        for (int i = 0; i < count; i++)
        {
            y[i] = rng.Next(3);
            for (int p = 0; p < 64; p++) x[i * 64 + p] = (float)rng.NextDouble() - 0.5f + pattern[y[i] * 64 + p];
        }
        return new InMemoryDataset(x, y, new Shape(1, 8, 8), 3);
    }

    private static Network Plain(IBackend backend) => new Network(
        [new Conv(4, 3, Conv.DefaultOptions with { Padding = 1 }), Activation.Relu(), new Pool(), new Flatten(), new Dense(16), Activation.Relu(), new Dense(3)],
        backend).Build(new Shape(1, 8, 8), seed: 5);

    private static Network WithBatchNormAndDropout(IBackend backend) => CheckpointTests.SmallNet(5, backend);

    /// <summary>Trains <paramref name="ranks"/> copies (one thread each, one CPU thread per backend); returns each rank's network and history.</summary>
    private static (Network Net, IReadOnlyList<EpochMetrics> History)[] Train(int ranks, Func<IBackend, Network> build, InMemoryDataset train,
        InMemoryDataset? validation, int batch, int epochs)
    {
        var group = new ThreadGroup(ranks);
        var results = new (Network, IReadOnlyList<EpochMetrics>)[ranks];
        var threads = Enumerable.Range(0, ranks).Select(r => new Thread(() =>
        {
            var backend = BackendFactory.Create(new BackendOptions { Kind = BackendKind.Cpu, MaxThreads = 1 }).Backend;
            var net = build(backend);
            var options = new TrainerOptions { Epochs = epochs, BatchSize = batch, Seed = 9, Communicator = ranks == 1 ? null : group.Rank(r) };
            var history = new Trainer(net, new Sgd(net.Parameters, 0.05, momentum: 0.9), options).Fit(train, validation);
            results[r] = (net, history);
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => Assert.True(t.Join(TimeSpan.FromSeconds(60)), "a rank did not finish"));
        Assert.Null(group.Failure);
        return results;
    }

    private static float[] Weights(Network net) => net.StateTensors().SelectMany(s => s.Value.ToHost()).ToArray();

    [Theory]
    [InlineData(2)]
    [InlineData(3)] // batch 16 over 3 ranks: shares of 5, 5 and 6 rows, weighted unequally
    public void RanksGiveOneProcesssWeightsAndMetrics(int ranks)
    {
        // 150 rows in batches of 16: 9 full batches and one of 6 (at least 2 per rank for 2 and 3 ranks), 2 epochs.
        var train = Data(150, 1);
        var validation = Data(40, 2);
        var one = Train(1, Plain, train, validation, batch: 16, epochs: 2)[0];
        var many = Train(ranks, Plain, train, validation, batch: 16, epochs: 2);

        float[] reference = Weights(one.Net);
        double scale = reference.Max(Math.Abs);
        foreach (var (net, history) in many)
        {
            float[] w = Weights(net);
            double worst = reference.Zip(w, (a, b) => Math.Abs(a - b)).Max();
            Assert.True(worst <= 1e-5 * scale, $"{ranks} ranks: largest weight difference {worst:G3} (weights up to {scale:G3})");
            for (int e = 0; e < 2; e++)
            {
                Assert.Equal(one.History[e].TrainLoss, history[e].TrainLoss, 1e-5);
                Assert.Equal(one.History[e].TrainAccuracy, history[e].TrainAccuracy, 1e-9);
                Assert.Equal(one.History[e].ValidationLoss, history[e].ValidationLoss, 1e-5);
                Assert.Equal(one.History[e].ValidationAccuracy, history[e].ValidationAccuracy, 1e-9);
            }
        }
        // Training moved the weights much further than the tolerance.
        double moved = reference.Zip(Weights(Plain(BackendFactory.Create(new BackendOptions { Kind = BackendKind.Cpu }).Backend)), (a, b) => Math.Abs(a - b)).Max();
        Assert.True(moved > 1e-2 * scale, $"training moved the weights by {moved:G3} only");
    }

    [Fact]
    public void WithBatchNormAndDropoutEveryRankEndsWithTheSameModel()
    {
        // Batch norm normalises each rank's own rows and dropout draws per-rank masks, so the ranks' steps differ from one
        // process's; but the gradients are shared and the running statistics are rank 0's at each epoch's end.
        var many = Train(2, WithBatchNormAndDropout, Data(96, 3), Data(30, 4), batch: 16, epochs: 2);
        Assert.Equal(many[0].Net.ComputeHash(), many[1].Net.ComputeHash());
        Assert.Equal(many[0].History, many[1].History, (a, b) => a with { Seconds = 0 } == b with { Seconds = 0 });
        Assert.All(many[0].Net.AllLayers().OfType<Dropout>(), d => Assert.Equal(0UL, d.MaskStream)); // put back after Fit
    }

    [Fact]
    public void ARankWithOtherDataIsNamed()
    {
        var group = new ThreadGroup(2);
        var errors = new Exception?[2];
        var threads = Enumerable.Range(0, 2).Select(r => new Thread(() =>
        {
            var net = Plain(BackendFactory.Create(new BackendOptions { Kind = BackendKind.Cpu, MaxThreads = 1 }).Backend);
            var options = new TrainerOptions { Epochs = 1, BatchSize = 16, Communicator = group.Rank(r) };
            try { new Trainer(net, new Sgd(net.Parameters, 0.05), options).Fit(Data(r == 0 ? 64 : 60, 1)); }
            catch (Exception e) { errors[r] = e; }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => Assert.True(t.Join(TimeSpan.FromSeconds(60)), "a rank did not finish"));
        // Rank 1 aborts (the test group records it and fails the other rank's next collective instead of ending the process).
        Assert.Contains("rank 1 has training rows = 60 but rank 0 has 64", group.Failure);
    }

    /// <summary>
    /// N ranks as N threads: each collective meets at a barrier, and the sums are taken in rank order, so every rank gets
    /// the same bits. Abort records the message and makes the others' collectives throw (no process exit, no hang).
    /// </summary>
    private sealed class ThreadGroup(int size)
    {
        private readonly Barrier _barrier = new(size);
        private readonly object?[] _slots = new object?[size];

        public int Size => size;

        public string? Failure { get; private set; }

        public ICommunicator Rank(int rank) => new Member(this, rank);

        private void Meet()
        {
            // Wait in short slices (a timed-out signal is withdrawn), so an abort on another rank is seen at once.
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (Failure is not null || !_barrier.SignalAndWait(TimeSpan.FromMilliseconds(50)))
                if (Failure is not null || clock.Elapsed > TimeSpan.FromSeconds(30))
                    throw new InvalidOperationException("ThreadGroup: another rank aborted or did not arrive: " + Failure);
        }

        private sealed class Member(ThreadGroup group, int rank) : ICommunicator
        {
            public int Rank => rank;
            public int Size => group.Size;
            public string Name => "threads";

            public void Broadcast(Span<float> data, int root = 0) => Exchange(data, root);
            public void Broadcast(Span<double> data, int root = 0) => Exchange(data, root);
            public void AllreduceSum(Span<float> data) => Exchange(data, -1);
            public void AllreduceSum(Span<double> data) => Exchange(data, -1);

            /// <summary>root &gt;= 0: copy root's values; -1: sum every rank's in rank order.</summary>
            private void Exchange<T>(Span<T> data, int root) where T : struct, System.Numerics.INumber<T>
            {
                group._slots[rank] = data.ToArray();
                group.Meet();
                if (root >= 0) ((T[])group._slots[root]!).CopyTo(data);
                else
                {
                    var sum = new T[data.Length];
                    for (int r = 0; r < group.Size; r++) { var s = (T[])group._slots[r]!; for (int i = 0; i < sum.Length; i++) sum[i] += s[i]; }
                    sum.CopyTo(data);
                }
                group.Meet(); // nobody overwrites a slot before every rank has read it
            }

            [DoesNotReturn]
            public void Abort(string message, int exitCode = 1)
            {
                group.Failure ??= message;
                throw new InvalidOperationException(message);
            }
        }
    }
}
