namespace MLNet.ConvNet.Data;

/// <summary>
/// The seeded order in which each epoch visits the samples: the one definition of "epoch e's order" that the
/// <see cref="Training.Trainer"/> uses, whatever source (in memory or a disk cache) the samples come from. A process
/// that trains on part of each batch (a data-parallel rank) asks for the same order and takes its part with
/// <see cref="Shard"/>.
/// </summary>
/// <remarks>
/// Epoch e's order is the (e+1)-th permutation drawn (Fisher-Yates, <see cref="Rng.Permutation"/>) from one generator
/// seeded with <c>Rng.Mix(seed, 0x53485546)</c>, a stream apart from the weights' initialisation. It depends on
/// (count, seed, epoch) only. Asking for the epochs in turn costs one shuffle each; asking for an earlier epoch, or
/// jumping ahead, replays the draws from the start (e shuffles of count items), which keeps the generator's state
/// (saved in checkpoints) the only thing to carry between epochs.
/// </remarks>
public sealed class EpochOrder
{
    private readonly ulong _seed;
    private readonly Rng _rng;
    private int _next; // the epoch whose order _rng draws next

    /// <summary>The orders of <paramref name="count"/> samples for trainer seed <paramref name="seed"/> (<c>TrainerOptions.Seed</c>).</summary>
    public EpochOrder(int count, ulong seed)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        Count = count;
        _seed = seed;
        _rng = new Rng(StreamSeed(seed));
    }

    /// <summary>Number of samples ordered.</summary>
    public int Count { get; }

    /// <summary>Epoch <paramref name="epoch"/>'s order (0-based epochs): a permutation of 0..Count-1, a new array.</summary>
    public int[] Of(int epoch)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(epoch);
        if (epoch < _next) { _rng.SetState(new Rng(StreamSeed(_seed)).GetState()); _next = 0; }
        while (_next < epoch) { _rng.Permutation(Count); _next++; }
        _next++;
        return _rng.Permutation(Count);
    }

    /// <summary>The generator's state: what a checkpoint stores; after <see cref="Of"/>(e) it is the state that draws epoch e+1.</summary>
    internal Rng Generator => _rng;

    /// <summary>Sets the generator to <paramref name="state"/>, the state that draws epoch <paramref name="epoch"/>'s order (a restored checkpoint's).</summary>
    internal void Restore(int epoch, ReadOnlySpan<ulong> state)
    {
        _rng.SetState(state);
        _next = epoch;
    }

    private static ulong StreamSeed(ulong seed) => Rng.Mix(seed, 0x5348_5546);

    /// <summary>
    /// The part of every batch of <paramref name="order"/> that rank <paramref name="rank"/> of <paramref name="ranks"/>
    /// trains on, batch after batch: batch b (as <paramref name="plan"/> cuts it) is split into <paramref name="ranks"/>
    /// consecutive parts whose sizes differ by at most one (the first <c>size % ranks</c> parts take one more), so the
    /// ranks together visit each global batch exactly as one process would. Returns the rank's indices and, per batch,
    /// where its part starts in them (<c>Starts[b]..Starts[b+1]</c>; <c>Starts</c> has <c>plan.Batches + 1</c> entries).
    /// </summary>
    public static (int[] Indices, int[] Starts) Shard(ReadOnlySpan<int> order, BatchPlan plan, int rank, int ranks)
    {
        if (order.Length != plan.Count)
            throw new ArgumentException($"The order holds {order.Length} samples but the batch plan cuts {plan.Count}.", nameof(order));
        ArgumentOutOfRangeException.ThrowIfLessThan(ranks, 1);
        if ((uint)rank >= (uint)ranks) throw new ArgumentOutOfRangeException(nameof(rank), rank, $"Rank {rank} is outside [0, {ranks}).");
        var starts = new int[plan.Batches + 1];
        var indices = new List<int>(plan.Count / ranks + plan.Batches);
        for (int b = 0; b < plan.Batches; b++)
        {
            starts[b] = indices.Count;
            int size = plan.Size(b), part = size / ranks, extra = size % ranks;
            int from = plan.Start(b) + rank * part + Math.Min(rank, extra);
            int length = part + (rank < extra ? 1 : 0);
            foreach (int i in order.Slice(from, length)) indices.Add(i);
        }
        starts[plan.Batches] = indices.Count;
        return (indices.ToArray(), starts);
    }
}

/// <summary>
/// How an epoch of <see cref="Count"/> samples is cut into mini-batches of <see cref="BatchSize"/>: in order, the last
/// batch holding the rest, except that a last batch shorter than <c>minLastBatch</c> (by default a single sample left
/// over) joins the batch before it: batch norm needs two samples, on each rank when several processes share a batch.
/// </summary>
public readonly record struct BatchPlan
{
    /// <summary>The plan for <paramref name="count"/> samples in batches of <paramref name="batchSize"/>; a shorter last batch than <paramref name="minLastBatch"/> joins the one before.</summary>
    public BatchPlan(int count, int batchSize, int minLastBatch = 2)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(minLastBatch, 1);
        Count = count; BatchSize = batchSize;
        int batches = (int)(((long)count + batchSize - 1) / batchSize);
        if (batches > 1 && count - (long)(batches - 1) * batchSize < minLastBatch) batches--;
        Batches = batches;
    }

    /// <summary>Samples per epoch.</summary>
    public int Count { get; }
    /// <summary>The nominal batch size.</summary>
    public int BatchSize { get; }
    /// <summary>Batches per epoch.</summary>
    public int Batches { get; }
    /// <summary>The largest batch: <see cref="BatchSize"/>, or one more when a lone sample joined the last batch.</summary>
    public int MaxSize => Batches == 0 ? 0 : Math.Max(Size(0), Size(Batches - 1));
    /// <summary>Where batch <paramref name="b"/> starts in the epoch's order.</summary>
    public int Start(int b) => b * BatchSize;
    /// <summary>Samples in batch <paramref name="b"/>.</summary>
    public int Size(int b) => b < Batches - 1 ? BatchSize : Count - b * BatchSize;
}
