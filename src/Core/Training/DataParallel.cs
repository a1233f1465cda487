using MLNet.ConvNet.Distributed;
using MLNet.ConvNet.Layers;
using MLNet.ConvNet.Optimizers;

namespace MLNet.ConvNet.Training;

/// <summary>
/// What the <see cref="Trainer"/> does differently when several processes train one model (<see cref="TrainerOptions.Communicator"/>
/// with Size &gt; 1), in the way of PyTorch DDP and Horovod: every rank starts from rank 0's weights; each takes its own
/// slice of every global batch of the epoch's seeded order; after the backward pass the gradients of all parameters are
/// copied into one flat buffer and summed over the ranks with one allreduce, weighted so that the result is the mean over
/// the global batch (what one process would compute); the step statistics are summed the same way.
/// </summary>
/// <remarks>
/// Batch-norm layers use the statistics of their rank's rows in training (as DDP does by default), so with batch norm N
/// ranks do not equal one rank exactly; their running statistics are made rank 0's at the end of every epoch, so that
/// validation, checkpoints and the trained model are the same on every rank. Dropout draws a different mask stream per
/// rank (rank 0 keeps the single-process masks).
/// </remarks>
internal sealed class DataParallel
{
    private readonly ICommunicator _comm;
    private readonly Network _network;
    private readonly IReadOnlyList<Parameter> _parameters;
    private readonly float[] _flat; // every gradient in parameter order, then one "stop" flag
    private readonly List<Dropout> _dropouts;

    public DataParallel(ICommunicator communicator, Network network, Optimizer optimizer)
    {
        _comm = communicator; _network = network; _parameters = optimizer.Parameters;
        _flat = new float[_parameters.Sum(p => p.Value.Length) + 1];
        _dropouts = network.AllLayers().OfType<Dropout>().ToList();
    }

    public int Rank => _comm.Rank;
    public int Size => _comm.Size;

    /// <summary>Floats summed per step: every gradient plus the stop flag.</summary>
    public int AllreduceLength => _flat.Length;

    /// <summary>
    /// The rows of a global batch of <paramref name="count"/> rows that rank <paramref name="rank"/> of <paramref name="size"/>
    /// takes: [count r / N, count (r + 1) / N), consecutive slices that differ in length by at most one.
    /// </summary>
    public static (int Start, int Length) Shard(int count, int rank, int size)
    {
        int start = (int)((long)count * rank / size), end = (int)((long)count * (rank + 1) / size);
        return (start, end - start);
    }

    /// <summary>This rank's slice of a global batch of <paramref name="count"/> rows.</summary>
    public (int Start, int Length) Shard(int count) => Shard(count, Rank, Size);

    /// <summary>
    /// Checks that every rank trains the same job (data size, batch, epochs, seed, resumed epoch, network size) and
    /// naming the first difference, then gives every rank rank 0's weights and buffers, and each rank its dropout stream.
    /// </summary>
    public void Start(int trainCount, int validationCount, TrainerOptions options, int firstEpoch)
    {
        (string Name, double Value)[] job =
        [
            ("training rows", trainCount), ("validation rows", validationCount), ("BatchSize", options.BatchSize),
            ("Epochs", options.Epochs), ("Seed (low 32 bits)", (uint)options.Seed), ("Seed (high 32 bits)", (uint)(options.Seed >> 32)),
            ("LabelSmoothing", options.LabelSmoothing), ("resumed epoch", firstEpoch),
            ("trained values", _flat.Length - 1), ("buffer values", _network.Buffers.Sum(b => (double)b.Value.Length)),
        ];
        var root = job.Select(j => j.Value).ToArray();
        _comm.Broadcast(root);
        for (int i = 0; i < job.Length; i++)
            if (!root[i].Equals(job[i].Value))
                throw new InvalidOperationException($"Data-parallel training: rank {Rank} has {job[i].Name} = {job[i].Value} but rank 0 has {root[i]}; " +
                    "every rank must run the same program on the same data" + (job[i].Name == "resumed epoch"
                        ? " and read the same checkpoint (put the checkpoint directory on a disk every rank sees)." : "."));
        if (options.BatchSize < Size)
            throw new ArgumentOutOfRangeException("BatchSize", options.BatchSize, $"Data-parallel training over {Size} ranks needs BatchSize >= {Size} (the global batch is split between the ranks).");
        if (trainCount < Size)
            throw new ArgumentException($"Data-parallel training over {Size} ranks needs at least {Size} training rows; there are {trainCount}.");

        var state = _network.StateTensors().Select(s => s.Value).ToArray();
        var host = new float[state.Sum(t => t.Length)];
        Pack(state, host);
        _comm.Broadcast(host);
        Unpack(host, state);
        foreach (var d in _dropouts) d.MaskStream = (ulong)Rank;
    }

    /// <summary>Puts the dropout layers back on the single-process mask stream (the end of Fit).</summary>
    public void Finish()
    {
        foreach (var d in _dropouts) d.MaskStream = 0;
    }

    /// <summary>
    /// Sums the gradients over the ranks, in place. Each rank's gradient is the mean over its <paramref name="localCount"/>
    /// rows; it is weighted by localCount / <paramref name="globalCount"/> first, so the sum is the mean over the global
    /// batch. Returns true when any rank asked to <paramref name="stop"/> (its cancellation token), the same on every rank.
    /// </summary>
    public bool ReduceGradients(int localCount, int globalCount, bool stop)
    {
        float weight = (float)localCount / globalCount;
        int offset = 0;
        foreach (var p in _parameters)
        {
            var slice = _flat.AsSpan(offset, p.Gradient.Length);
            p.Gradient.Backend.CopyToHost(p.Gradient, slice);
            if (weight != 1f) foreach (ref float g in slice) g *= weight;
            offset += slice.Length;
        }
        _flat[offset] = stop ? 1f : 0f;
        _comm.AllreduceSum(_flat);
        offset = 0;
        foreach (var p in _parameters)
        {
            p.Gradient.Backend.CopyFromHost(_flat.AsSpan(offset, p.Gradient.Length), p.Gradient);
            offset += p.Gradient.Length;
        }
        return _flat[offset] > 0f;
    }

    /// <summary>Sums the step statistics (loss sum, correct count per step) over the ranks, in place.</summary>
    public void ReduceStatistics(float[] host) => _comm.AllreduceSum(host);

    /// <summary>Gives every rank rank 0's buffers (batch norm's running statistics).</summary>
    public void SynchronizeBuffers()
    {
        var buffers = _network.Buffers.Select(b => b.Value).ToArray();
        if (buffers.Length == 0) return;
        var host = new float[buffers.Sum(t => t.Length)];
        Pack(buffers, host);
        _comm.Broadcast(host);
        Unpack(host, buffers);
    }

    /// <summary>
    /// Ends the job when this rank fails, so that the other ranks do not wait for it in the next collective: the message
    /// names the rank and the error.
    /// </summary>
    public void Abort(Exception e) =>
        _comm.Abort($"MLNet.ConvNet: data-parallel training failed on rank {Rank} of {Size} ({_comm.Name}); ending the job. {e}");

    private static void Pack(Tensor[] tensors, float[] host)
    {
        int offset = 0;
        foreach (var t in tensors) { t.Backend.CopyToHost(t, host.AsSpan(offset, t.Length)); offset += t.Length; }
    }

    private static void Unpack(float[] host, Tensor[] tensors)
    {
        int offset = 0;
        foreach (var t in tensors) { t.Backend.CopyFromHost(host.AsSpan(offset, t.Length), t); offset += t.Length; }
    }
}
