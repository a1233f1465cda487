using System.Diagnostics;
using MLNet.ConvNet.Data;
using MLNet.ConvNet.Distributed;
using MLNet.ConvNet.Layers;
using MLNet.ConvNet.Ops;
using MLNet.ConvNet.Optimizers;

namespace MLNet.ConvNet.Training;

/// <summary>Options of a <see cref="Trainer"/>; each property states its default.</summary>
public sealed record TrainerOptions
{
    /// <summary>Epochs = 10: the total number of passes over the training data (including those a resumed checkpoint completed).</summary>
    public int Epochs { get; init; } = 10;
    /// <summary>BatchSize = 64: samples per step. The last batch of an epoch holds the rest; a single sample left over joins the batch before it (batch norm needs two).</summary>
    public int BatchSize { get; init; } = 64;
    /// <summary>Seed = 0: seeds the per-epoch shuffling (the network's initialisation has its own seed in Network.Build).</summary>
    public ulong Seed { get; init; }
    /// <summary>Schedule = null (constant): scales the optimizer's base learning rate before every step.</summary>
    public LearningRateSchedule? Schedule { get; init; }
    /// <summary>CheckpointPath = null: when set, a checkpoint is written there after every epoch.</summary>
    public string? CheckpointPath { get; init; }
    /// <summary>ResumeFrom = null: a checkpoint to restore before training; training continues after its epoch.</summary>
    public string? ResumeFrom { get; init; }
    /// <summary>
    /// OnBatch = null: called after every <see cref="ProgressInterval"/>-th step and after the last step of an epoch, with
    /// that step's loss and accuracy. Each call reads the steps' statistics back from the backend; steps in between read nothing.
    /// </summary>
    public Action<BatchProgress>? OnBatch { get; init; }
    /// <summary>
    /// ProgressInterval = 50: steps between <see cref="OnBatch"/> calls (and between the checks for a non-finite loss;
    /// the epoch's end is always checked). 1 reports and checks every step, at the price of a read-back per step.
    /// </summary>
    public int ProgressInterval { get; init; } = 50;
    /// <summary>OnEpoch = null: called after every epoch (after the checkpoint is written).</summary>
    public Action<EpochMetrics>? OnEpoch { get; init; }
    /// <summary>EvaluationBatchSize = 500: samples per forward pass when evaluating.</summary>
    public int EvaluationBatchSize { get; init; } = 500;
    /// <summary>
    /// LabelSmoothing = 0: e in [0, 1); training minimises the cross-entropy against the target (1 - e) * onehot(label) + e / K
    /// (K classes), as PyTorch's <c>CrossEntropyLoss(label_smoothing = e)</c>. The training loss in the batch and epoch metrics
    /// is that smoothed loss; validation and <see cref="Trainer.Evaluate(Network, IDataset, int, CancellationToken)"/> report the plain cross-entropy.
    /// </summary>
    public float LabelSmoothing { get; init; }
    /// <summary>
    /// Communicator = null (this process alone): with a communicator of Size &gt; 1, the ranks train one model together
    /// (data-parallel; see the Trainer's remarks). <see cref="BatchSize"/> is then the global batch, split between the ranks.
    /// </summary>
    public ICommunicator? Communicator { get; init; }
}

/// <summary>
/// Trains a <see cref="Network"/> for classification: per epoch a seeded shuffle, then for each mini-batch forward,
/// softmax cross-entropy, backward and one optimizer step; metrics per epoch, optional checkpoints and resume.
/// </summary>
/// <remarks>
/// A training step reads nothing back from the backend: the step's summed loss and correct count go into a per-epoch
/// statistics tensor <c>[batches, 2]</c> on the backend (<see cref="Backends.IBackend.LossAndCorrect"/>), which is read to the
/// host only when progress is reported (every <see cref="TrainerOptions.ProgressInterval"/> steps, when OnBatch is set) and at
/// the end of the epoch. A non-finite loss is found at those read points; the exception names the first bad step, and the
/// steps after it up to the read point have already been applied (the weights are then not usable; the last checkpoint is).
/// Reproducibility: with the same network seed, trainer seed, data and options, two runs give bit-identical weights
/// on the CPU backend whatever its thread count (kernels never split a reduction by thread), and a run resumed
/// from an epoch's checkpoint gives the same weights as the uninterrupted run.
/// <para>Data-parallel (<see cref="TrainerOptions.Communicator"/> with Size N &gt; 1): every rank runs Fit with the same data and
/// options; it starts from rank 0's weights, takes rows [c r / N, c (r + 1) / N) of each global batch of c rows, and its
/// gradients are summed over the ranks with one allreduce per step, weighted to the mean over the global batch; the
/// statistics, so the metrics, OnBatch and OnEpoch, are the global ones on every rank; the last batch joins the one
/// before when it has fewer than 2N rows (each rank gets at least two). Only rank 0 writes checkpoints; to resume,
/// every rank reads the same checkpoint. Batch norm normalises with each rank's own rows (running statistics are rank 0's
/// from each epoch's end), so N ranks equal one rank up to float rounding only without batch norm. An exception on one
/// rank (other than cancellation and a non-finite loss, which happen on every rank at once) ends the whole job through
/// <see cref="ICommunicator.Abort"/> rather than leaving the others waiting.</para>
/// </remarks>
public sealed class Trainer
{
    /// <summary>A trainer for <paramref name="network"/> (built) updated by <paramref name="optimizer"/> (over the network's parameters).</summary>
    public Trainer(Network network, Optimizer optimizer, TrainerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(network);
        ArgumentNullException.ThrowIfNull(optimizer);
        if (network.InputShape is null) throw new ArgumentException("Build the network before creating the trainer.", nameof(network));
        Options = options ?? new TrainerOptions();
        if (Options.Epochs < 0) throw new ArgumentOutOfRangeException("Epochs", Options.Epochs, "Epochs must be >= 0.");
        if (Options.BatchSize < 1) throw new ArgumentOutOfRangeException("BatchSize", Options.BatchSize, "BatchSize must be >= 1.");
        if (Options.ProgressInterval < 1) throw new ArgumentOutOfRangeException("ProgressInterval", Options.ProgressInterval, "ProgressInterval must be >= 1.");
        if (Options.EvaluationBatchSize < 1) throw new ArgumentOutOfRangeException("EvaluationBatchSize", Options.EvaluationBatchSize, "EvaluationBatchSize must be >= 1.");
        if (!(Options.LabelSmoothing >= 0 && Options.LabelSmoothing < 1))
            throw new ArgumentOutOfRangeException("LabelSmoothing", Options.LabelSmoothing, "LabelSmoothing must be in [0, 1).");
        Network = network; Optimizer = optimizer;
    }

    public Network Network { get; }
    public Optimizer Optimizer { get; }
    public TrainerOptions Options { get; }

    /// <summary>Trains for the remaining epochs and returns the metrics of every epoch (including resumed ones).</summary>
    /// <exception cref="NonFiniteLossException">The loss became NaN or infinite.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellation"/> was signalled (checked before every batch).</exception>
    public IReadOnlyList<EpochMetrics> Fit(IDataset train, IDataset? validation = null, CancellationToken cancellation = default)
    {
        CheckData(train, "train");
        if (validation is not null) CheckData(validation, "validation");
        var parallel = Options.Communicator is { Size: > 1 } communicator ? new DataParallel(communicator, Network, Optimizer) : null;
        try { return Fit(train, validation, parallel, cancellation); }
        catch (Exception e) when (parallel is not null && e is not (OperationCanceledException or NonFiniteLossException))
        {
            parallel.Abort(e);
            throw;
        }
        finally { parallel?.Finish(); }
    }

    private IReadOnlyList<EpochMetrics> Fit(IDataset train, IDataset? validation, DataParallel? parallel, CancellationToken cancellation)
    {
        var history = new List<EpochMetrics>();
        int first = 0;
        int n = train.Count;
        var orders = new EpochOrder(n, Options.Seed); // each epoch's seeded order of the samples
        if (Options.ResumeFrom is { } resume)
        {
            var c = Checkpoint.Load(resume);
            c.Restore(Network, Optimizer, orders.Generator);
            history.AddRange(c.History);
            first = c.Epoch;
            orders.Restore(first, c.RngState); // the stored generator draws the order of the epoch after the checkpoint's
        }
        var schedule = Options.Schedule ?? new ConstantSchedule();
        int ranks = parallel?.Size ?? 1;
        parallel?.Start(train.Count, validation?.Count ?? 0, Options, first);
        // A last batch too short to give each rank two samples (one process: a lone sample) joins the previous batch:
        // batch norm needs two.
        var plan = new BatchPlan(n, Options.BatchSize, minLastBatch: 2 * ranks);
        int size = plan.BatchSize, batches = plan.Batches;
        var batch = new Batch(train, plan.MaxSize, Network.Backend, Options.LabelSmoothing);
        var stats = Network.Backend.Allocate(new Shape(batches, 2)); // per step: summed loss, correct count (on the backend)
        var host = new float[batches * 2];
        string? saved = Options.ResumeFrom;
        bool reuse = Network.ReuseBuffers;
        Network.ReuseBuffers = true; // nothing here keeps a tensor across steps, so the layers may reuse theirs
        try
        {
            for (int epoch = first; epoch < Options.Epochs; epoch++)
            {
                var order = orders.Of(epoch);
                var clock = Stopwatch.StartNew();
                int checkedUpTo = 0; // steps [0, checkedUpTo) were read back and found finite
                using var reader = ReaderOf(train, order, plan, parallel); // reads the next batches while this one computes
                for (int b = 0; b < batches; b++)
                {
                    if (parallel is null) cancellation.ThrowIfCancellationRequested();
                    var next = reader.Next(parallel is null ? cancellation : CancellationToken.None)!;
                    int count = plan.Size(b), rows = next.Count; // the global batch, and this rank's slice of it
                    var x = batch.Load(next.Features, next.Labels);
                    batch.Loss(Network.Forward(x, training: true), stats, b);
                    Optimizer.ZeroGrad();
                    Network.BackwardParameters(batch.LossGradient());
                    // One allreduce per step; a cancellation on any rank stops every rank here, before the update.
                    if (parallel is not null && parallel.ReduceGradients(rows, count, cancellation.IsCancellationRequested))
                        throw new OperationCanceledException("Training was cancelled (on this or another rank).", cancellation);
                    Optimizer.LearningRate = schedule.Rate(Optimizer.BaseLearningRate, epoch + (double)b / batches);
                    Optimizer.Step();
                    // Ranks read the statistics at the same steps whether or not OnBatch is set: the read is collective.
                    if ((Options.OnBatch is not null || parallel is not null) && ((b + 1) % Options.ProgressInterval == 0 || b == batches - 1))
                    {
                        checkedUpTo = ReadStats(stats, host, epoch, checkedUpTo, b + 1, saved, parallel);
                        double loss = host[2 * b], hits = host[2 * b + 1];
                        Options.OnBatch?.Invoke(new BatchProgress(epoch + 1, b + 1, batches, count, loss / count, hits / count,
                            Optimizer.LearningRate, b * size + count, n, clock.Elapsed));
                    }
                }
                ReadStats(stats, host, epoch, checkedUpTo, batches, saved, parallel);
                parallel?.SynchronizeBuffers(); // every rank holds rank 0's model for validation and the checkpoint
                double lossSum = 0, correct = 0;
                for (int b = 0; b < batches; b++) { lossSum += host[2 * b]; correct += host[2 * b + 1]; }
                var val = validation is null ? null
                    : parallel is null ? Evaluate(Network, validation, Options.EvaluationBatchSize, cancellation)
                    : Evaluate(Network, validation, Options.EvaluationBatchSize, Options.Communicator!); // each rank a slice, summed
                history.Add(new EpochMetrics(epoch + 1, lossSum / n, correct / n, val?.Loss ?? double.NaN, val?.Accuracy ?? double.NaN,
                    Optimizer.LearningRate, clock.Elapsed.TotalSeconds));
                if (Options.CheckpointPath is { } path)
                {
                    if (parallel is null || parallel.Rank == 0) Checkpoint.Capture(Network, Optimizer, epoch + 1, orders.Generator, history).Save(path);
                    saved = path;
                }
                Options.OnEpoch?.Invoke(history[^1]);
            }
        }
        finally { Network.ReuseBuffers = reuse; }
        return history;
    }

    /// <summary>The epoch's batches in <paramref name="order"/>; with several ranks, this rank's slice of each global batch.</summary>
    private static BatchReader ReaderOf(IDataset train, int[] order, BatchPlan plan, DataParallel? parallel)
    {
        if (parallel is null) return new BatchReader(train, order, plan);
        var (indices, starts) = EpochOrder.Shard(order, plan, parallel.Rank, parallel.Size);
        return new BatchReader(train, indices, starts);
    }

    /// <summary>
    /// Mean cross-entropy, accuracy and confusion matrix of <paramref name="network"/> in inference mode on <paramref name="data"/>.
    /// The loss is the plain cross-entropy (no label smoothing, whatever <see cref="TrainerOptions.LabelSmoothing"/> trained with).
    /// </summary>
    public static Evaluation Evaluate(Network network, IDataset data, int batchSize = 500, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(network);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        int classes = CheckData(network, data, "data");
        var (lossSum, correct, confusion) = EvaluateRows(network, data, 0, data.Count, classes, batchSize, cancellation);
        return new Evaluation(lossSum / data.Count, (double)correct / data.Count, data.Count, ToMatrix(confusion, classes));
    }

    /// <summary>
    /// <see cref="Evaluate(Network, IDataset, int, CancellationToken)"/> shared between the ranks of <paramref name="communicator"/>
    /// (collective): each rank evaluates its slice of the rows and the sums are added up, so every rank gets the result over
    /// all of <paramref name="data"/>. The ranks must hold the same network and data.
    /// </summary>
    public static Evaluation Evaluate(Network network, IDataset data, int batchSize, ICommunicator communicator)
    {
        ArgumentNullException.ThrowIfNull(network);
        ArgumentNullException.ThrowIfNull(communicator);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        int classes = CheckData(network, data, "data");
        var (start, count) = DataParallel.Shard(data.Count, communicator.Rank, communicator.Size);
        var (lossSum, correct, confusion) = EvaluateRows(network, data, start, count, classes, batchSize, CancellationToken.None);
        var sums = new double[2 + confusion.Length]; // loss sum, correct count, then the confusion counts
        sums[0] = lossSum; sums[1] = correct;
        for (int i = 0; i < confusion.Length; i++) sums[2 + i] = confusion[i];
        communicator.AllreduceSum(sums);
        for (int i = 0; i < confusion.Length; i++) confusion[i] = (long)sums[2 + i];
        return new Evaluation(sums[0] / data.Count, sums[1] / data.Count, data.Count, ToMatrix(confusion, classes));
    }

    /// <summary>The summed loss, the correct count and the confusion counts (row-major [label, predicted]) of rows [start, start + count).</summary>
    private static (double LossSum, long Correct, long[] Confusion) EvaluateRows(Network network, IDataset data, int start, int count, int classes,
        int batchSize, CancellationToken cancellation)
    {
        var confusion = Enumerable.Range(0, classes).Select(_ => new int[classes]).ToArray();
        var batch = new Batch(data, batchSize, network.Backend, labelSmoothing: 0);
        var rows = Enumerable.Range(start, count).ToArray();
        double lossSum = 0; long correct = 0;
        bool reuse = network.ReuseBuffers;
        network.ReuseBuffers = true;
        try
        {
            for (int from = 0; from < count; from += batchSize)
            {
                cancellation.ThrowIfCancellationRequested();
                int n = Math.Min(batchSize, count - from);
                var x = batch.Load(rows.AsSpan(from, n));
                lossSum += (double)batch.Loss(network.Forward(x, training: false)) * n;
                correct += batch.CountCorrect(confusion);
            }
        }
        finally { network.ReuseBuffers = reuse; }
        return (lossSum, correct, confusion.SelectMany(r => r.Select(c => (long)c)).ToArray());
    }

    private static int[][] ToMatrix(long[] counts, int classes) =>
        Enumerable.Range(0, classes).Select(i => Enumerable.Range(0, classes).Select(j => (int)counts[i * classes + j]).ToArray()).ToArray();

    /// <summary>
    /// Reads the epoch's step statistics to <paramref name="host"/> and checks steps [<paramref name="from"/>, <paramref name="to"/>)
    /// for a non-finite loss, naming the first bad one; returns <paramref name="to"/>.
    /// </summary>
    private int ReadStats(Tensor stats, float[] host, int epoch, int from, int to, string? checkpoint, DataParallel? parallel)
    {
        Network.Backend.CopyToHost(stats, host);
        parallel?.ReduceStatistics(host); // this rank's sums become the global batches' sums
        for (int b = from; b < to; b++)
            if (!float.IsFinite(host[2 * b]))
                throw new NonFiniteLossException(epoch + 1, b + 1, host[2 * b], checkpoint); // the sum is non-finite exactly when the mean is
        return to;
    }

    private void CheckData(IDataset data, string name) => CheckData(Network, data, name);

    private static int CheckData(Network network, IDataset data, string name)
    {
        ArgumentNullException.ThrowIfNull(data, name);
        if (data.Count < 1) throw new ArgumentException($"The {name} data is empty.", name);
        if (data.SampleShape != network.InputShape)
            throw new ArgumentException($"The {name} samples have shape {data.SampleShape} but the network was built for {network.InputShape}.", name);
        int classes = network.OutputShape!.Value.Length;
        if (network.OutputShape.Value.Rank != 1 || data.ClassCount > classes)
            throw new ArgumentException($"The {name} data has {data.ClassCount} classes but the network outputs {network.OutputShape}.", name);
        return classes;
    }

    /// <summary>
    /// One mini-batch at a time: host buffers for features and labels, and the backend tensors for the input, labels,
    /// per-sample loss, probabilities and the loss gradient, all kept across batches (per batch size) so a warm
    /// training step allocates nothing. Every load copies explicitly from the host to the backend. The loss and its
    /// gradient use <paramref name="labelSmoothing"/>.
    /// </summary>
    private sealed class Batch(IDataset data, int capacity, Backends.IBackend backend, float labelSmoothing)
    {
        private float[] _features = []; // only Load(indices) reads into it; training batches come from a BatchReader
        private readonly int[] _labels = new int[capacity];
        private readonly float[] _labelValues = new float[capacity];
        private float[] _probabilities = [];
        private readonly TensorSlot _x = new(), _y = new(), _loss = new(), _p = new(), _dlogits = new();
        private readonly Dictionary<int, (Shape Input, Shape Rows)> _shapes = [];
        private int _count;
        private Tensor? _labelTensor, _probabilityTensor;

        /// <summary>Copies the samples at <paramref name="indices"/> to the backend; returns the input tensor <c>[n, sample...]</c>.</summary>
        public Tensor Load(ReadOnlySpan<int> indices)
        {
            int n = indices.Length, len = data.SampleShape.Length;
            if (_features.Length == 0) _features = new float[capacity * len];
            data.CopyBatch(indices, _features.AsSpan(0, n * len), _labels.AsSpan(0, n));
            return Load(_features.AsSpan(0, n * len), _labels.AsSpan(0, n));
        }

        /// <summary>Copies a batch read on the host (<paramref name="features"/>, sample after sample) to the backend; returns the input tensor.</summary>
        public Tensor Load(ReadOnlySpan<float> features, ReadOnlySpan<int> labels)
        {
            int n = _count = labels.Length;
            labels.CopyTo(_labels); // kept for CountCorrect (a copy onto itself when Load(indices) read them)
            if (!_shapes.TryGetValue(n, out var shapes))
                _shapes[n] = shapes = (new Shape([n, .. data.SampleShape.AsSpan()]), new Shape(n));
            var x = _x.Get(backend, shapes.Input, reuse: true);
            backend.CopyFromHost(features, x);
            for (int i = 0; i < n; i++) _labelValues[i] = _labels[i];
            _labelTensor = _y.Get(backend, shapes.Rows, reuse: true);
            backend.CopyFromHost(_labelValues.AsSpan(0, n), _labelTensor);
            return x;
        }

        /// <summary>Softmax cross-entropy (smoothed by the batch's label smoothing) of <paramref name="logits"/> against the loaded labels; returns the mean loss.</summary>
        public float Loss(Tensor logits)
        {
            var loss = _loss.Get(backend, _labelTensor!.Shape, reuse: true);
            _probabilityTensor = _p.Get(backend, logits.Shape, reuse: true);
            return CrossEntropy.Forward(logits, _labelTensor, loss, _probabilityTensor, labelSmoothing);
        }

        /// <summary>
        /// The same cross-entropy without a read-back: the summed loss and the correct count go to row <paramref name="row"/>
        /// of <paramref name="stats"/> on the backend.
        /// </summary>
        public void Loss(Tensor logits, Tensor stats, int row)
        {
            var loss = _loss.Get(backend, _labelTensor!.Shape, reuse: true);
            _probabilityTensor = _p.Get(backend, logits.Shape, reuse: true);
            CrossEntropy.ForwardNoReadBack(logits, _labelTensor, loss, _probabilityTensor, labelSmoothing);
            CrossEntropy.LossAndCorrect(loss, _probabilityTensor, _labelTensor, stats, row);
        }

        /// <summary>d(mean loss)/d(logits) for the last Loss.</summary>
        public Tensor LossGradient()
        {
            var d = _dlogits.Get(backend, _probabilityTensor!.Shape, reuse: true);
            CrossEntropy.Backward(_probabilityTensor, _labelTensor!, d, labelSmoothing);
            return d;
        }

        /// <summary>Rows of the last Loss whose largest probability is at the label (first maximum on ties); adds to <paramref name="confusion"/>.</summary>
        public int CountCorrect(int[][]? confusion)
        {
            var probabilities = _probabilityTensor!;
            if (_probabilities.Length < probabilities.Length) _probabilities = new float[probabilities.Length];
            var p = _probabilities.AsSpan(0, probabilities.Length);
            backend.CopyToHost(probabilities, p);
            int k = probabilities.Shape[1], hits = 0;
            for (int i = 0; i < _count; i++)
            {
                int best = 0;
                for (int j = 1; j < k; j++) if (p[i * k + j] > p[i * k + best]) best = j;
                if (best == _labels[i]) hits++;
                if (confusion is not null) confusion[_labels[i]][best]++;
            }
            return hits;
        }
    }
}
