using System.Collections.Concurrent;
using MLNet.ConvNet.Backends;
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
/// afterwards, so there are never more copies than forward passes that ran at the same time (serial scoring: one per
/// worker, below), each made once (weights restored from the capture) and kept for reuse, however many cursors and
/// PredictionEngines come and go. Renting per forward pass rather than holding a copy per cursor keeps the copies
/// bounded by the real concurrency and costs a lock-free bag operation per chunk. A copy reuses its tensors (<c>Network.ReuseBuffers</c>:
/// each layer keeps its outputs for the last two row counts, the copy its input), so a warm call allocates only the
/// probabilities; the price is memory: one set of activations per copy and row count (cnn2bn, a chunk of 8 rows:
/// about 4 MB; 256 rows: about 100 MB).</para>
/// <para>Threads within a call: rows, not layers, are spread over the cores. A call is cut into chunks of
/// <see cref="ChunkRows"/> rows, and as many workers as the trained network's backend has host workers
/// (<c>IBackend.HostWorkers</c>: the CPU's thread count, 1 for a GPU) each take chunks in turn and run them on a copy on
/// the backend's one-thread sibling (<c>IBackend.WithOneHostThread</c>): one parallel loop per call instead of one per layer,
/// and a chunk's activations small enough to stay in cache. On the 2-core machine (benchmarks/Inference --profile)
/// that scored LeNet-5 at 86,000 to 94,000 images/s with chunks of 4 to 16 rows against 64,000 for batches of 256 with
/// each layer's loop parallel, and cnn2bn at 7,100 with chunks of 8 (6,300 to 6,700 for 2 to 16, 6,200 for 256).
/// A call with fewer chunks than workers runs as one batch on a copy with the backend's threads, and a call below
/// <see cref="SmallCallMacs"/> multiply-adds (one LeNet-5 or cnn2bn image: PredictionEngine) on one thread, where a
/// parallel loop per layer costs more than it splits (one cnn2bn image: 370 microseconds on one thread, 470 on
/// two). Rows are independent and the kernels give bit-identical results for any thread count, so the answers do not
/// depend on the workers.</para>
/// </remarks>
internal sealed class NetworkScorer
{
    /// <summary>
    /// Rows a cursor reads ahead and scores per call (256): enough chunks to keep every worker busy to the end of the
    /// call (32 chunks of 8 rows), few enough that a cursor reads ahead little.
    /// </summary>
    public const int DefaultBatchSize = 256;

    /// <summary>Rows per forward pass when a call is spread over the workers (8: see the remarks).</summary>
    public const int DefaultChunkRows = 8;

    /// <summary>
    /// Calls with fewer multiply-adds than this (16M, about a millisecond of one core) run on one thread as one batch:
    /// LeNet-5 needs 0.42M per sample, cnn2bn 4.2M.
    /// </summary>
    public const long SmallCallMacs = 16 << 20;

    private readonly Checkpoint _weights;
    private readonly Network _template;
    private readonly ConcurrentBag<Replica> _idle = [], _idleSingle = [];
    private readonly IBackend? _singleThread;
    private readonly int _workers;
    private readonly bool _softmax;
    private int _copies;

    /// <summary>A scorer over a copy of <paramref name="trained"/> (weights captured now).</summary>
    /// <remarks>With <paramref name="softmax"/> false the scorer writes the network's raw outputs instead of probabilities
    /// (the featurizer scores a network cut before its last layer).</remarks>
    public NetworkScorer(Network trained, int batchSize = DefaultBatchSize, int? chunkRows = null, bool softmax = true)
    {
        ArgumentNullException.ThrowIfNull(trained);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        if (trained.InputShape is not { } sample || trained.OutputShape is not { Rank: 1 } output)
            throw new ArgumentException($"The network must be built and output one vector of class scores per sample; it outputs {trained.OutputShape}.", nameof(trained));
        SampleShape = sample;
        Classes = output[0];
        _softmax = softmax;
        BatchSize = batchSize;
        MacsPerSample = Math.Max(1, CountMacs(trained));
        ChunkRows = Math.Clamp(chunkRows ?? DefaultChunkRows, 1, batchSize);
        // A backend with one host worker (a GPU, or the CPU limited to one thread) runs each call as one batch; one with
        // several spreads chunks over that many workers, each on a copy on its one-thread sibling (IBackend.WithOneHostThread).
        _workers = Math.Max(1, trained.Backend.HostWorkers);
        _singleThread = _workers > 1 ? trained.Backend.WithOneHostThread() : null;
        // The template folds batch norm into the layer before it; the copies are copies of the template.
        _template = FoldBatchNorm(Copy(trained, trained.Backend, Checkpoint.Capture(trained)));
        _weights = Checkpoint.Capture(_template);
        _idle.Add(new Replica(_template));
        _copies = 1;
    }

    /// <summary>The shape of one sample (<c>[C, H, W]</c>).</summary>
    public Shape SampleShape { get; }

    /// <summary>The number of classes (scores per sample).</summary>
    public int Classes { get; }

    /// <summary>The most rows a cursor sends per <see cref="Score"/> call.</summary>
    public int BatchSize { get; }

    /// <summary>Rows per forward pass when a call is spread over the workers.</summary>
    public int ChunkRows { get; }

    /// <summary>Multiply-adds of one sample's forward pass in the convolutions and dense layers.</summary>
    public long MacsPerSample { get; }

    /// <summary>The network every copy copies: the trained one with batch norm folded (<see cref="FoldBatchNorm"/>; tests check it).</summary>
    internal Network Template => _template;

    /// <summary>How many network copies exist (tests check that repeated calls reuse them).</summary>
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
            var y = network.Forward(x, training: false);
            if (!_softmax) { y.CopyToHost(probabilities.AsSpan(first * k, count * k)); return; }
            using var p = Ops.Softmax.Forward(y);
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
        return new Replica(Copy(_template, singleThread ? _singleThread! : _template.Backend, _weights));
    }

    /// <summary>A new network of the same layers as <paramref name="source"/> on <paramref name="backend"/>, holding <paramref name="weights"/>.</summary>
    private Network Copy(Network source, IBackend backend, Checkpoint weights)
    {
        // A copy runs one forward pass at a time and nothing outside Score keeps its tensors, so its layers may write
        // into tensors they keep (no allocation per call once warm).
        // (Set after Build, which creates a residual block's shortcut layers.)
        var copy = new Network(source.Layers.Select(l => l.Clone()), backend);
        copy.Build(SampleShape);
        copy.ReuseBuffers = true;
        // Restore checks every tensor's name and shape against the capture: a copy that is not the same architecture fails here.
        weights.Restore(copy);
        return copy;
    }

    /// <summary>
    /// <paramref name="network"/> with each inference-mode BatchNorm that directly follows a Conv or Dense folded into
    /// that layer (Core's <see cref="BatchNormFolding.Fold"/>; itself when there is nothing to fold), reusing its buffers.
    /// </summary>
    private static Network FoldBatchNorm(Network network)
    {
        var folded = BatchNormFolding.Fold(network);
        folded.ReuseBuffers = true;
        return folded;
    }

    /// <summary>Multiply-adds per sample, as each layer counts them (<see cref="Layer.MultiplyAddsPerSample"/>).</summary>
    private static long CountMacs(Network network) => network.AllLayers().Sum(l => l.MultiplyAddsPerSample);

    /// <summary>A network copy and the input tensor of its last call (reused for the next call of the same row count).</summary>
    private sealed class Replica(Network network)
    {
        public Network Network { get; } = network;
        public Tensor? Input { get; set; }
    }
}
