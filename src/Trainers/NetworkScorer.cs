using System.Collections.Concurrent;
using MLNet.ConvNet.Backends;
using MLNet.ConvNet.Backends.Cpu;
using MLNet.ConvNet.Layers;
using MLNet.ConvNet.Training;

namespace MLNet.ConvNet.Trainers;

/// <summary>
/// Scores mini-batches of samples with private copies of a trained network: softmax probabilities and the argmax.
/// What <see cref="ConvNetTransformer"/>'s cursors and PredictionEngine rows call.
/// </summary>
/// <remarks>
/// <para>Weights: the trained network's parameters and buffers are captured when the scorer is made (at the end of
/// <see cref="ConvNetTrainer.Fit"/>), and every copy is restored from that capture, so later changes to the trained
/// network (it is public as <see cref="ConvNetTransformer.Network"/>) never reach scoring.</para>
/// <para>Threads: a layer's Forward writes per-layer fields (the cache for Backward, and buffers it may reuse), so one
/// network must never run two forward passes at once. Each forward pass rents a copy from a pool and gives it back
/// afterwards: serial scoring (one cursor, one PredictionEngine) uses one copy however many cursors it opens; n
/// cursors or engines running at once use at most n copies, each made once (weights restored from the capture) and
/// kept for reuse. Renting per call rather than holding a copy per cursor keeps the copies bounded by the real
/// concurrency and costs a lock-free bag operation per batch. A copy also keeps its input tensor for the next call of
/// the same row count, so a cursor's full batches allocate no input.</para>
/// <para>Threads within a call: for small samples, rows, not layers, are spread over the cores. A call is cut into
/// chunks of <see cref="ChunkRows"/> rows (at most <see cref="ChunkMacs"/> multiply-adds and a largest activation of at
/// most <see cref="ChunkActivationBytes"/>: 4 rows of LeNet-5), and as many workers as the trained network's CPU
/// backend has threads each take chunks in turn and run them on a copy whose backend has one thread. A small chunk
/// keeps every layer's outputs in cache and out of the large-object heap, and one parallel loop per call replaces one
/// per layer: on the 2-core machine LeNet-5 scored about twice as fast this way as in batches of 256 with each
/// layer's loop parallel (benchmarks/Inference, --profile). A sample whose largest activation is above the bound by
/// itself (cnn2bn: 32 x 28 x 28 floats, 100 KB) gains nothing from chunks, measured slower that way, and runs as one
/// batch on a copy with the backend's threads; so does a call with fewer chunks than workers. Rows are independent
/// and the kernels give bit-identical results for any thread count, so the answers do not depend on the workers. A
/// call below <see cref="SmallCallMacs"/> (one LeNet-5 image) runs on one thread, where a dozen parallel loops would
/// cost more than the work they split.</para>
/// </remarks>
internal sealed class NetworkScorer
{
    /// <summary>
    /// Rows a cursor reads ahead and scores per call (256): enough chunks to keep every worker busy to the end of the
    /// call (64 chunks of 4 LeNet-5 rows), few enough that a cursor reads ahead little.
    /// </summary>
    public const int DefaultBatchSize = 256;

    /// <summary>The most work of one chunk of two rows or more (2M multiply-adds: on the order of 100 microseconds of one core).</summary>
    public const long ChunkMacs = 2 << 20;

    /// <summary>
    /// The most bytes of a chunk's largest activation (80,000): below .NET's large-object threshold (85,000 bytes), so
    /// the engine's per-layer outputs are short-lived small objects and stay in cache. On the 2-core machine LeNet-5
    /// scored 1.5 times faster in chunks of 4 rows (75 KB) than of 5 (94 KB), and chunks of 16 or 256 rows slower
    /// still. Network copies that reuse their buffers would make this bound matter less.
    /// </summary>
    public const long ChunkActivationBytes = 80_000;

    /// <summary>Calls with fewer multiply-adds than this (1M) run on one thread, as one batch.</summary>
    public const long SmallCallMacs = 1 << 20;

    private readonly Checkpoint _weights;
    private readonly Network _template;
    private readonly ConcurrentBag<Replica> _idle = [], _idleSingle = [];
    private readonly CpuBackend? _singleThread;
    private readonly int _workers;
    private int _copies;

    /// <summary>A scorer over a copy of <paramref name="trained"/> (weights captured now).</summary>
    public NetworkScorer(Network trained, int batchSize = DefaultBatchSize, int? chunkRows = null)
    {
        ArgumentNullException.ThrowIfNull(trained);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        if (trained.InputShape is not { } sample || trained.OutputShape is not { Rank: 1 } output)
            throw new ArgumentException($"The network must be built and output one vector of class scores per sample; it outputs {trained.OutputShape}.", nameof(trained));
        SampleShape = sample;
        Classes = output[0];
        BatchSize = batchSize;
        MacsPerSample = Math.Max(1, CountMacs(trained));
        LargestActivation = trained.AllLayers().Where(l => l.Children.Count == 0).Max(l => l.OutputShape(l.BuiltInput!.Value).SizeFrom(1));
        // A sample whose largest activation alone is above the bound gains nothing from chunks (every layer output is a
        // large object anyway): the call then runs as one batch with each layer's loop parallel.
        long rowsThatFit = ChunkActivationBytes / (4L * LargestActivation);
        ChunkRows = chunkRows ?? (rowsThatFit < 1 ? batchSize : (int)Math.Clamp(Math.Min(ChunkMacs / MacsPerSample, rowsThatFit), 1, batchSize));
        // Another backend (a GPU one day) runs each call as one batch; so does a CPU backend limited to one thread.
        _singleThread = trained.Backend is CpuBackend { MaxThreads: > 1 } ? new CpuBackend(maxThreads: 1) : null;
        _workers = trained.Backend is CpuBackend cpu ? cpu.MaxThreads : 1;
        _weights = Checkpoint.Capture(trained);
        _template = Copy(trained, trained.Backend);
        _idle.Add(new Replica(_template));
        _copies = 1;
    }

    /// <summary>The shape of one sample (<c>[C, H, W]</c>).</summary>
    public Shape SampleShape { get; }

    /// <summary>The number of classes (scores per sample).</summary>
    public int Classes { get; }

    /// <summary>The most rows a cursor sends per <see cref="Score"/> call.</summary>
    public int BatchSize { get; }

    /// <summary>The most values one layer outputs per sample (LeNet-5: 6 x 28 x 28 = 4,704).</summary>
    public int LargestActivation { get; }

    /// <summary>Rows per forward pass when a call is spread over the workers (<see cref="BatchSize"/>: never spread).</summary>
    public int ChunkRows { get; }

    /// <summary>Multiply-adds of one sample's forward pass in the convolutions and dense layers.</summary>
    public long MacsPerSample { get; }

    /// <summary>How many network copies exist (tests check that serial scoring needs one per kind of call).</summary>
    internal int Copies => Volatile.Read(ref _copies);

    /// <summary>
    /// Scores <paramref name="count"/> samples laid out one after another in <paramref name="samples"/>: writes their
    /// softmax probabilities to <paramref name="probabilities"/> (<c>count x Classes</c>) and the 0-based index of each
    /// row's largest probability (the first on ties) to <paramref name="predicted"/>; -1 for a row holding NaN.
    /// </summary>
    public void Score(float[] samples, int count, float[] probabilities, int[] predicted)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        int chunks = (count + ChunkRows - 1) / ChunkRows;
        if (_singleThread is null)
            Forward(_idle, singleThread: false, samples, 0, count, probabilities);
        else if (count * MacsPerSample < SmallCallMacs)
            Forward(_idleSingle, singleThread: true, samples, 0, count, probabilities);
        else if (chunks < _workers)
            Forward(_idle, singleThread: false, samples, 0, count, probabilities);
        else
        {
            int next = -1;
            Parallel.For(0, _workers, new ParallelOptions { MaxDegreeOfParallelism = _workers }, _ =>
            {
                for (int c = Interlocked.Increment(ref next); c < chunks; c = Interlocked.Increment(ref next))
                {
                    int first = c * ChunkRows;
                    Forward(_idleSingle, singleThread: true, samples, first, Math.Min(ChunkRows, count - first), probabilities);
                }
            });
        }
        for (int r = 0; r < count; r++) predicted[r] = ArgMax(probabilities.AsSpan(r * Classes, Classes));
    }

    /// <summary>Runs rows [first, first + count) through one copy rented from <paramref name="pool"/>.</summary>
    private void Forward(ConcurrentBag<Replica> pool, bool singleThread, float[] samples, int first, int count, float[] probabilities)
    {
        int length = SampleShape.Length, k = Classes;
        var replica = Rent(pool, singleThread);
        try
        {
            var network = replica.Network;
            if (replica.Input is not { } x || x.Shape[0] != count)
                replica.Input = x = network.Backend.Allocate(new Shape([count, .. SampleShape.AsSpan()]));
            x.CopyFromHost(samples.AsSpan(first * length, count * length));
            using var p = Ops.Softmax.Forward(network.Forward(x, training: false));
            p.CopyToHost(probabilities.AsSpan(first * k, count * k));
        }
        finally { pool.Add(replica); }
    }

    /// <summary>The index of the first largest value; -1 when a value is NaN (no class can be named).</summary>
    private static int ArgMax(ReadOnlySpan<float> row)
    {
        int best = 0;
        for (int i = 0; i < row.Length; i++)
        {
            if (float.IsNaN(row[i])) return -1;
            if (row[i] > row[best]) best = i;
        }
        return best;
    }

    private Replica Rent(ConcurrentBag<Replica> pool, bool singleThread)
    {
        if (pool.TryTake(out var replica)) return replica;
        Interlocked.Increment(ref _copies);
        return new Replica(Copy(_template, singleThread ? _singleThread! : _template.Backend));
    }

    /// <summary>A new network of the same layers as <paramref name="source"/> on <paramref name="backend"/>, holding the captured weights.</summary>
    private Network Copy(Network source, IBackend backend)
    {
        var copy = new Network(source.Layers.Select(CopyLayer), backend);
        copy.Build(SampleShape);
        // Restore checks every tensor's name and shape against the capture: a copy that is not the same architecture fails here.
        _weights.Restore(copy);
        return copy;
    }

    /// <summary>Multiply-adds per sample: a convolution's weights once per output position, a dense layer's once.</summary>
    private static long CountMacs(Network network) => network.AllLayers().Sum(l => l switch
    {
        Conv { Weight: { } w } c => (long)w.Value.Length * c.OutputShape(c.BuiltInput!.Value).SizeFrom(2),
        Dense { Weight: { } w } => (long)w.Value.Length,
        _ => 0L,
    });

    /// <summary>A network copy and the input tensor of its last call (reused for the next call of the same row count).</summary>
    private sealed class Replica(Network network)
    {
        public Network Network { get; } = network;
        public Tensor? Input { get; set; }
    }

    /// <summary>
    /// An unbuilt layer configured as <paramref name="layer"/>, with its name (which names its weights). The layer types
    /// are those <c>Network.ExportOnnx</c> exports; the trainer needs the export (for saving), so no other type reaches here.
    /// </summary>
    private static Layer CopyLayer(Layer layer)
    {
        Layer copy = layer switch
        {
            Conv c => new Conv(c.OutChannels, c.Kernel, c.Options, c.HasBias),
            Pool p => p.IsGlobal ? Pool.Global(p.Options.Mode) : new Pool(p.Options),
            BatchNorm b => new BatchNorm(b.Epsilon, b.Momentum),
            Lrn l => new Lrn(l.Options),
            Activation a => new Activation(a.Kind, a.Alpha),
            Flatten => new Flatten(),
            Dense d => new Dense(d.OutFeatures, d.HasBias),
            Dropout d => new Dropout(d.P),
            Residual r => new Residual(r.OutChannels, r.Stride),
            _ => throw new NotSupportedException($"ConvNetTransformer cannot copy {layer.Describe()} for scoring; the layer types it copies are those Network.ExportOnnx exports."),
        };
        copy.Name = layer.Name;
        return copy;
    }
}
