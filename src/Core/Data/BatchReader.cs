using System.Runtime.ExceptionServices;

namespace MLNet.ConvNet.Data;

/// <summary>
/// Reads the mini-batches of one epoch on a background thread, a few batches ahead of the one being trained on, so
/// a slow source (a disk cache, augmentation) overlaps with the computation.
/// </summary>
/// <remarks>
/// <para>Batch b holds the samples <c>order[plan.Start(b) .. + plan.Size(b)]</c> (or, given batch starts, a shard's
/// <c>indices[starts[b] .. starts[b + 1]]</c>), read with one
/// <see cref="IDataset.CopyBatch"/> call; batches are read in order, from <c>firstBatch</c> (a run resumed mid-epoch
/// starts there), each exactly once, so the values are those a caller reading the same batches itself would get.</para>
/// <para>Memory: <c>depth + 1</c> host buffers of the largest batch, allocated once; a batch returned by
/// <see cref="Next"/> stays valid until the next call of <see cref="Next"/> or <see cref="Dispose"/>, then its
/// buffer is reused. After the first batches nothing is allocated per batch.</para>
/// <para>Errors: an exception thrown by the dataset is rethrown (same type and stack) by the <see cref="Next"/> call
/// that would have returned the batch. <see cref="Dispose"/> stops the thread (after the batch it is reading) and waits
/// for it; the dataset is only ever read by that one thread.</para>
/// </remarks>
public sealed class BatchReader : IDisposable
{
    private readonly IDataset _data;
    private readonly int[] _order;
    private readonly int[] _starts; // batch b is _order[_starts[b] .. _starts[b + 1]]
    private readonly int _batches;
    private readonly HostBatch[] _slots;
    private readonly object _lock = new();
    private readonly Thread _thread;
    private int _produced, _consumed; // batches read by the thread / handed out, counted from firstBatch
    private readonly int _first;
    private bool _stop;
    private ExceptionDispatchInfo? _error;

    /// <summary>
    /// Starts reading the batches <paramref name="firstBatch"/>.. of <paramref name="plan"/> over <paramref name="order"/>
    /// (not copied: leave it unchanged) from <paramref name="data"/>, up to <paramref name="depth"/> batches ahead of the consumer.
    /// </summary>
    public BatchReader(IDataset data, int[] order, BatchPlan plan, int firstBatch = 0, int depth = 2)
        : this(data, order, Starts(order, plan), firstBatch, depth) { }

    /// <summary>
    /// Starts reading batches <paramref name="firstBatch"/>.. where batch b is <c>indices[starts[b] .. starts[b + 1]]</c>
    /// (a rank's shard: <see cref="EpochOrder.Shard"/>'s result; neither array is copied).
    /// </summary>
    public BatchReader(IDataset data, int[] indices, int[] starts, int firstBatch = 0, int depth = 2)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(indices);
        ArgumentNullException.ThrowIfNull(starts);
        if (starts.Length < 1 || starts[0] != 0 || starts[^1] != indices.Length)
            throw new ArgumentException($"Batch starts must run from 0 to the {indices.Length} indices.", nameof(starts));
        int capacity = 0;
        for (int b = 0; b + 1 < starts.Length; b++)
        {
            if (starts[b + 1] < starts[b]) throw new ArgumentException($"Batch starts must not decrease (batch {b}).", nameof(starts));
            capacity = Math.Max(capacity, starts[b + 1] - starts[b]);
        }
        _batches = starts.Length - 1;
        if (firstBatch < 0 || firstBatch > _batches) throw new ArgumentOutOfRangeException(nameof(firstBatch), firstBatch, $"The first batch must be in [0, {_batches}].");
        ArgumentOutOfRangeException.ThrowIfLessThan(depth, 1);
        _data = data; _order = indices; _starts = starts; _first = firstBatch;
        int len = data.SampleShape.Length;
        _slots = new HostBatch[depth + 1]; // depth read ahead plus the one the consumer holds
        for (int i = 0; i < _slots.Length; i++) _slots[i] = new HostBatch(new float[(long)capacity * len], new int[capacity]);
        _thread = new Thread(Run) { IsBackground = true, Name = "BatchReader" };
        _thread.Start();
    }

    /// <summary>
    /// The next batch, waiting for the thread when it is not read yet; null after the last batch. Throws what the
    /// dataset threw, or <see cref="OperationCanceledException"/> when <paramref name="cancellation"/> is signalled while waiting.
    /// </summary>
    public HostBatch? Next(CancellationToken cancellation = default)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_stop, this);
            if (_first + _consumed >= _batches) return null;
            while (_produced == _consumed && _error is null)
            {
                cancellation.ThrowIfCancellationRequested();
                Monitor.Wait(_lock, 50); // a timeout, so a cancellation is seen while the thread is busy
            }
            if (_produced == _consumed) _error!.Throw();
            var batch = _slots[_consumed % _slots.Length];
            _consumed++;
            Monitor.PulseAll(_lock); // the slot held before this one is free again
            return batch;
        }
    }

    private void Run()
    {
        try
        {
            for (int k = 0; _first + k < _batches; k++)
            {
                HostBatch slot;
                lock (_lock)
                {
                    // Slot k is free once the consumer has moved past batch k - slots + 1 (it may still hold the one before).
                    while (!_stop && k - _consumed >= _slots.Length - 1) Monitor.Wait(_lock);
                    if (_stop) return;
                    slot = _slots[k % _slots.Length];
                }
                int b = _first + k, count = _starts[b + 1] - _starts[b], len = _data.SampleShape.Length;
                var indices = _order.AsSpan(_starts[b], count);
                _data.CopyBatch(indices, slot.FeatureBuffer.AsSpan(0, count * len), slot.LabelBuffer.AsSpan(0, count));
                slot.Set(b, count, len);
                lock (_lock) { _produced++; Monitor.PulseAll(_lock); }
            }
        }
        catch (Exception e)
        {
            lock (_lock) { _error = ExceptionDispatchInfo.Capture(e); Monitor.PulseAll(_lock); }
        }
    }

    private static int[] Starts(int[] order, BatchPlan plan)
    {
        ArgumentNullException.ThrowIfNull(order);
        if (order.Length != plan.Count) throw new ArgumentException($"The order holds {order.Length} samples but the batch plan cuts {plan.Count}.", nameof(order));
        var starts = new int[plan.Batches + 1];
        for (int b = 0; b < plan.Batches; b++) starts[b + 1] = plan.Start(b) + plan.Size(b);
        return starts;
    }

    /// <summary>Stops the thread after the batch it is reading and waits for it.</summary>
    public void Dispose()
    {
        lock (_lock) { _stop = true; Monitor.PulseAll(_lock); }
        if (Thread.CurrentThread != _thread) _thread.Join();
    }
}

/// <summary>One mini-batch on the host, as <see cref="BatchReader.Next"/> hands it out (valid until its next call).</summary>
public sealed class HostBatch
{
    internal HostBatch(float[] features, int[] labels) { FeatureBuffer = features; LabelBuffer = labels; }

    internal float[] FeatureBuffer { get; }
    internal int[] LabelBuffer { get; }
    private int _length;

    /// <summary>The batch's index in the epoch.</summary>
    public int Index { get; private set; }
    /// <summary>Samples in the batch.</summary>
    public int Count { get; private set; }
    /// <summary>The features, sample after sample (<c>Count x SampleShape.Length</c> values).</summary>
    public ReadOnlySpan<float> Features => FeatureBuffer.AsSpan(0, _length);
    /// <summary>The labels.</summary>
    public ReadOnlySpan<int> Labels => LabelBuffer.AsSpan(0, Count);

    internal void Set(int index, int count, int sampleLength) { Index = index; Count = count; _length = count * sampleLength; }
}
