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
/// <para>Small calls (PredictionEngine's single rows): when a call's work is below <see cref="SmallCallMacs"/>
/// multiply-adds, it runs on a copy whose CPU backend uses one thread. Starting a parallel loop in each of a dozen
/// layers costs more than the few microseconds of work each would split (LeNet-5 on one image: about three times
/// slower than one thread on the 2-core machine). The kernels give bit-identical results for any thread count, so the
/// scores do not change.</para>
/// </remarks>
internal sealed class NetworkScorer
{
    /// <summary>
    /// Rows per forward pass (256). Large enough that per-call costs (argument checks, tensor allocation, starting the
    /// parallel loops of each layer) are spread over many rows and each layer's GEMM gets a wide matrix; small enough
    /// that the largest activations stay a few tens of MB (cnn2bn: 256 x 32 x 28 x 28 floats = 26 MB) and that a cursor
    /// reads ahead little. ONNX Runtime one row at a time is what it replaces.
    /// </summary>
    public const int DefaultBatchSize = 256;

    /// <summary>
    /// Calls with fewer multiply-adds than this (1M: about 100 microseconds of one core's work) run on one thread; above
    /// it a parallel loop per layer pays for itself. LeNet-5 needs 0.42M per sample, cnn2bn 4.2M.
    /// </summary>
    public const long SmallCallMacs = 1 << 20;

    private readonly Checkpoint _weights;
    private readonly Network _template;
    private readonly ConcurrentBag<Replica> _idle = [], _idleSingle = [];
    private readonly CpuBackend? _singleThread;
    private int _copies;

    /// <summary>A scorer over a copy of <paramref name="trained"/> (weights captured now).</summary>
    public NetworkScorer(Network trained, int batchSize = DefaultBatchSize)
    {
        ArgumentNullException.ThrowIfNull(trained);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        if (trained.InputShape is not { } sample || trained.OutputShape is not { Rank: 1 } output)
            throw new ArgumentException($"The network must be built and output one vector of class scores per sample; it outputs {trained.OutputShape}.", nameof(trained));
        SampleShape = sample;
        Classes = output[0];
        BatchSize = batchSize;
        MacsPerSample = CountMacs(trained);
        _singleThread = trained.Backend is CpuBackend { MaxThreads: > 1 } ? new CpuBackend(maxThreads: 1) : null;
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

    /// <summary>Multiply-adds of one sample's forward pass in the convolutions and dense layers.</summary>
    public long MacsPerSample { get; }

    /// <summary>How many network copies exist (tests check that serial scoring needs one per kind of call).</summary>
    internal int Copies => Volatile.Read(ref _copies);

    /// <summary>
    /// Scores <paramref name="count"/> samples laid out one after another in <paramref name="samples"/>: writes their
    /// softmax probabilities to <paramref name="probabilities"/> (<c>count x Classes</c>) and the 0-based index of each
    /// row's largest probability (the first on ties) to <paramref name="predicted"/>; -1 for a row holding NaN.
    /// </summary>
    public void Score(ReadOnlySpan<float> samples, int count, Span<float> probabilities, Span<int> predicted)
    {
        int k = Classes;
        bool small = _singleThread is not null && count * MacsPerSample < SmallCallMacs;
        var pool = small ? _idleSingle : _idle;
        var replica = Rent(pool, small);
        try
        {
            var network = replica.Network;
            if (replica.Input is not { } x || x.Shape[0] != count)
                replica.Input = x = network.Backend.Allocate(new Shape([count, .. SampleShape.AsSpan()]));
            x.CopyFromHost(samples[..(count * SampleShape.Length)]);
            using var p = Ops.Softmax.Forward(network.Forward(x, training: false));
            p.CopyToHost(probabilities[..(count * k)]);
        }
        finally { pool.Add(replica); }
        for (int r = 0; r < count; r++) predicted[r] = ArgMax(probabilities.Slice(r * k, k));
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
