using MLNet.ConvNet.Data;
using MLNet.ConvNet.Layers;
using MLNet.ConvNet.Optimizers;
using MLNet.ConvNet.Training;
using Xunit;

namespace MLNet.ConvNet.Tests;

/// <summary>
/// The sample sources: each epoch's order (<see cref="EpochOrder"/>) and its shards, the disk cache and its writer,
/// the memory/disk choice (<see cref="SampleStore"/>), and the background reader; a Trainer fed from the disk cache
/// ends with the weights the in-memory dataset gives.
/// </summary>
public class DataSourceTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary><paramref name="count"/> samples of 1x6x6; whole numbers in 0..255 (8-bit pixels) unless <paramref name="fractions"/>.</summary>
    private static InMemoryDataset Images(int count, int seed, bool fractions = false, int classes = 3)
    {
        var rng = new Random(seed);
        var x = new float[count * 36];
        for (int i = 0; i < x.Length; i++) x[i] = fractions ? (float)(rng.NextDouble() * 2 - 1) : rng.Next(256);
        var y = Enumerable.Range(0, count).Select(i => i % classes).ToArray();
        return new InMemoryDataset(x, y, new Shape(1, 6, 6), classes);
    }

    private static DiskSampleCache WriteCache(InMemoryDataset data, string path)
    {
        using var writer = new SampleCacheWriter(path, data.SampleShape);
        int len = data.SampleShape.Length;
        for (int i = 0; i < data.Count; i++) writer.Add(data.Features.Slice(i * len, len), data.Labels[i]);
        return writer.Complete(data.ClassCount);
    }

    private static (float[] X, int[] Y) Batch(IDataset data, int[] indices)
    {
        var x = new float[indices.Length * data.SampleShape.Length];
        var y = new int[indices.Length];
        data.CopyBatch(indices, x, y);
        return (x, y);
    }

    private static void AssertSameBits(float[] expected, float[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(BitConverter.SingleToUInt32Bits(expected[i]) == BitConverter.SingleToUInt32Bits(actual[i]), $"value {i}: {expected[i]} vs {actual[i]}");
    }

    [Fact]
    public void EpochOrderIsTheSeededStreamOfPermutationsWhateverOrderItIsAskedIn()
    {
        // The reference: one generator drawing a Fisher-Yates permutation per epoch, in turn.
        var stream = new Rng(Rng.Mix(7, 0x5348_5546));
        var expected = Enumerable.Range(0, 6).Select(_ => stream.Permutation(50)).ToArray();
        var order = new EpochOrder(50, 7);
        Assert.Equal(expected[4], order.Of(4));     // jumping ahead
        Assert.Equal(expected[5], order.Of(5));     // the next one
        Assert.Equal(expected[1], order.Of(1));     // going back replays
        Assert.Equal(expected[2], new EpochOrder(50, 7).Of(2));
        Assert.NotEqual(expected[0], new EpochOrder(50, 8).Of(0));
        Assert.Equal(Enumerable.Range(0, 50), expected[3].Order());
    }

    [Theory]
    [InlineData(103, 10, 2)]   // a last batch of 3
    [InlineData(101, 10, 3)]   // a lone last sample joins batch 9 (11 samples)
    [InlineData(20, 64, 4)]
    [InlineData(9, 4, 5)]      // more ranks than samples in a batch: some parts are empty
    public void ShardsSplitEveryBatchAcrossRanksAsOneProcessWouldVisitIt(int count, int batchSize, int ranks)
    {
        var order = new EpochOrder(count, 3).Of(2);
        var plan = new BatchPlan(count, batchSize);
        var shards = Enumerable.Range(0, ranks).Select(r => EpochOrder.Shard(order, plan, r, ranks)).ToArray();
        for (int b = 0; b < plan.Batches; b++)
        {
            var joined = shards.SelectMany(s => s.Indices[s.Starts[b]..s.Starts[b + 1]]).ToArray();
            Assert.Equal(order[plan.Start(b)..(plan.Start(b) + plan.Size(b))], joined);
            var sizes = shards.Select(s => s.Starts[b + 1] - s.Starts[b]).ToArray();
            Assert.True(sizes.Max() - sizes.Min() <= 1, $"batch {b}: part sizes {string.Join(", ", sizes)}");
        }
        Assert.Equal(count, Enumerable.Range(0, plan.Batches).Sum(plan.Size));
        Assert.Equal(count % batchSize == 1 && count > batchSize ? batchSize + 1 : Math.Min(batchSize, count), plan.MaxSize);
    }

    [Fact]
    public void ADiskCacheOfBytePixelsStoresBytesAndReadsBackTheSameFloats()
    {
        using var dir = new TempDir();
        var data = Images(40, 1);
        using var cache = WriteCache(data, dir.File("a.samples"));
        Assert.True(cache.StoresBytes);
        Assert.Equal(40 * 36, new FileInfo(cache.Path).Length);
        int[] indices = [39, 0, 17, 17, 5];
        var (x, y) = Batch(cache, indices);
        var (ex, ey) = Batch(data, indices);
        AssertSameBits(ex, x);
        Assert.Equal(ey, y);
        Assert.Equal(data.Labels.ToArray(), cache.Labels.ToArray());
    }

    [Theory]
    [InlineData(0.5f)]    // a fraction
    [InlineData(-0f)]     // -0 would come back as +0 from a byte
    [InlineData(256f)]
    public void AValueThatIsNotABytePutsTheWholeCacheInFloat32(float odd)
    {
        using var dir = new TempDir();
        var data = Images(30, 2);
        var features = data.Features.ToArray();
        features[20 * 36 + 7] = odd; // sample 20: after 20 samples were written as bytes
        var mixed = new InMemoryDataset(features, data.Labels.ToArray(), data.SampleShape, 3);
        using var cache = WriteCache(mixed, dir.File("b.samples"));
        Assert.False(cache.StoresBytes);
        Assert.Equal(30 * 36 * 4, new FileInfo(cache.Path).Length);
        var all = Enumerable.Range(0, 30).Reverse().ToArray();
        AssertSameBits(Batch(mixed, all).X, Batch(cache, all).X);
    }

    [Fact]
    public void DisposingTheCacheDeletesItsFileUnlessKept()
    {
        using var dir = new TempDir();
        var data = Images(5, 3);
        var cache = WriteCache(data, dir.File("c.samples"));
        cache.Dispose();
        Assert.False(File.Exists(dir.File("c.samples")));
        using (var writer = new SampleCacheWriter(dir.File("d.samples"), data.SampleShape))
            writer.Add(data.Features[..36], 0); // an unfinished writer deletes its file
        Assert.False(File.Exists(dir.File("d.samples")));
        var writer2 = new SampleCacheWriter(dir.File("e.samples"), data.SampleShape);
        writer2.Add(data.Features[..36], 1);
        writer2.Complete(3, keepFile: true).Dispose();
        Assert.True(File.Exists(dir.File("e.samples")));
    }

    [Fact]
    public void SampleStoreChoosesMemoryOrDiskAndSpillsWhenAutoPassesItsLimit()
    {
        using var dir = new TempDir();
        var data = Images(100, 4);
        int len = 36;
        IDataset Store(SampleStorage kind, long limit, long? expected, out string reason)
        {
            using var store = new SampleStore(data.SampleShape, kind, limit, dir.Path, "training", expected);
            for (int i = 0; i < data.Count; i++) store.Add(data.Features.Slice(i * len, len), data.Labels[i]);
            var built = store.Build(3);
            reason = store.Reason;
            return built;
        }
        var all = new EpochOrder(100, 1).Of(0);
        var expected = Batch(data, all).X;
        // Auto, count unknown, limit of 30 samples as float32: spills after 30 samples.
        var spilled = Store(SampleStorage.Auto, 30 * len * 4, null, out string why);
        Assert.IsType<DiskSampleCache>(spilled);
        Assert.Contains("more than 30 samples", why);
        AssertSameBits(expected, Batch(spilled, all).X);
        ((IDisposable)spilled).Dispose();
        // Auto with the count known: decided at once.
        var disk = Store(SampleStorage.Auto, 30 * len * 4, 100, out why);
        Assert.Contains("100 samples take", why);
        Assert.IsType<DiskSampleCache>(disk);
        ((IDisposable)disk).Dispose();
        var memory = Store(SampleStorage.Auto, 1 << 30, 100, out why);
        Assert.IsType<InMemoryDataset>(memory);
        Assert.StartsWith("in memory", why);
        AssertSameBits(expected, Batch(memory, all).X);
        // Forced either way; a wrong announced count (more rows than announced) still works.
        Assert.IsType<InMemoryDataset>(Store(SampleStorage.Memory, 0, 10, out _));
        AssertSameBits(expected, Batch(Store(SampleStorage.Memory, 0, 10, out _), all).X);
        var forced = Store(SampleStorage.Disk, 1 << 30, null, out why);
        Assert.Contains("forced", why);
        ((IDisposable)forced).Dispose();
        Assert.Empty(Directory.GetFiles(dir.Path));
    }

    [Fact]
    public void TheBatchReaderGivesTheBatchesADirectReadGivesFromAnyFirstBatch()
    {
        var data = Images(103, 5);
        var order = new EpochOrder(103, 2).Of(1);
        var plan = new BatchPlan(103, 10);
        for (int first = 0; first <= plan.Batches; first += 4)
        {
            using var reader = new BatchReader(data, order, plan, first, depth: 2);
            for (int b = first; b < plan.Batches; b++)
            {
                var batch = reader.Next(Ct)!;
                var (x, y) = Batch(data, order[plan.Start(b)..(plan.Start(b) + plan.Size(b))]);
                Assert.Equal(b, batch.Index);
                AssertSameBits(x, batch.Features.ToArray());
                Assert.Equal(y, batch.Labels.ToArray());
            }
            Assert.Null(reader.Next(Ct));
        }
    }

    [Fact]
    public void ABatchReaderOverAShardGivesTheRanksPartOfEveryBatch()
    {
        var data = Images(103, 6);
        var order = new EpochOrder(103, 4).Of(0);
        var plan = new BatchPlan(103, 10);
        var (mine, starts) = EpochOrder.Shard(order, plan, rank: 1, ranks: 3);
        using var reader = new BatchReader(data, mine, starts, firstBatch: 2);
        for (int b = 2; b < plan.Batches; b++)
        {
            var batch = reader.Next(Ct)!;
            var (x, y) = Batch(data, mine[starts[b]..starts[b + 1]]);
            Assert.Equal(b, batch.Index);
            AssertSameBits(x, batch.Features.ToArray());
            Assert.Equal(y, batch.Labels.ToArray());
        }
        Assert.Null(reader.Next(Ct));
    }

    /// <summary>Wraps a dataset: the <c>failCall</c>-th CopyBatch (0-based) throws; each call may wait on a gate first.</summary>
    private sealed class Faulty(IDataset inner, int failCall, SemaphoreSlim? gate = null) : IDataset
    {
        public int Calls;
        public int Count => inner.Count;
        public Shape SampleShape => inner.SampleShape;
        public int ClassCount => inner.ClassCount;
        public void CopyBatch(ReadOnlySpan<int> indices, Span<float> features, Span<int> labels)
        {
            gate?.Wait();
            if (Calls++ == failCall) throw new InvalidDataException("disk gone");
            inner.CopyBatch(indices, features, labels);
        }
    }

    [Fact]
    public void AReadErrorReachesTheConsumerAtItsBatchWithItsOwnType()
    {
        var data = new Faulty(Images(50, 6), failCall: 3);
        var order = new EpochOrder(50, 0).Of(0);
        using var reader = new BatchReader(data, order, new BatchPlan(50, 10));
        for (int b = 0; b < 3; b++) Assert.Equal(b, reader.Next(Ct)!.Index);
        var e = Assert.Throws<InvalidDataException>(() => reader.Next(Ct));
        Assert.Equal("disk gone", e.Message);
    }

    [Fact]
    public void CancellingWhileWaitingAndDisposingWhileTheReaderIsAheadDoNotHang()
    {
        using var gate = new SemaphoreSlim(0);
        var data = new Faulty(Images(50, 7), failCall: -1, gate);
        var order = new EpochOrder(50, 0).Of(0);
        var reader = new BatchReader(data, order, new BatchPlan(50, 5), depth: 2);
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
        Assert.ThrowsAny<OperationCanceledException>(() => reader.Next(cts.Token)); // the reader is stuck at the gate
        gate.Release(100);
        Assert.Equal(0, reader.Next(Ct)!.Index);
        SpinWait.SpinUntil(() => data.Calls >= 3, 5000); // now it has read ahead and waits for a free buffer
        Assert.Equal(3, data.Calls);                     // the one held plus two ahead, no more
        var clock = System.Diagnostics.Stopwatch.StartNew();
        reader.Dispose();
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5));
        Assert.Throws<ObjectDisposedException>(() => reader.Next(Ct));
    }

    [Fact]
    public void TrainingFromTheDiskCacheGivesTheWeightsOfTrainingInMemory()
    {
        using var dir = new TempDir();
        var data = Images(230, 8); // 230 = 7 batches of 32 + 6
        var validation = Images(40, 9);
        string Train(IDataset train, IDataset val)
        {
            var net = new Network([new Conv(4, 3), new BatchNorm(), Activation.Relu(), new Pool(), new Flatten(), new Dense(3)]).Build(train.SampleShape, 5);
            var trainer = new Trainer(net, new Adam(net.Parameters, 1e-3), new TrainerOptions { Epochs = 2, BatchSize = 32, Seed = 9 });
            var history = trainer.Fit(train, val, Ct);
            return net.ComputeHash() + history[^1].ValidationLoss.ToString("R");
        }
        using var cache = WriteCache(data, dir.File("t.samples"));
        using var valCache = WriteCache(validation, dir.File("v.samples"));
        Assert.Equal(Train(data, validation), Train(cache, valCache));
    }
}
