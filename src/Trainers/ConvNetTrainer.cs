using MLNet.ConvNet.Backends;
using MLNet.ConvNet.Data;
using MLNet.ConvNet.Distributed;
using MLNet.ConvNet.Layers;
using MLNet.ConvNet.Optimizers;
using MLNet.ConvNet.Training;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace MLNet.ConvNet.Trainers;

/// <summary>
/// Trains a convolutional network from scratch as a multiclass-classification step of an ML.NET pipeline; made by
/// <c>mlContext.MulticlassClassification.Trainers.ConvNet(...)</c>. <see cref="Fit"/> gives a <see cref="ConvNetTransformer"/>.
/// </summary>
/// <remarks>
/// <para>Estimator characteristics:</para>
/// <list type="table">
/// <item><term>Does this estimator need to look at the data to train its parameters?</term><description>Yes</description></item>
/// <item><term>Input label column data type</term><description>Key (any count &gt;= 2), or a number holding class indices 0, 1, 2, ...</description></item>
/// <item><term>Input features column data type</term><description>Known-size vector of Single: <c>Vector&lt;Single, C, H, W&gt;</c> (ExtractPixels) or flat with <see cref="Options.InputShape"/></description></item>
/// <item><term>Output columns</term><description>Score: <c>Vector&lt;Single, K&gt;</c> (probabilities, SlotNames); PredictedLabel: <c>Key&lt;UInt32, K&gt;</c> with KeyValues</description></item>
/// <item><term>Required NuGet in addition to Microsoft.ML</term><description>MLNet.ConvNet.Trainers (loading a saved model needs only Microsoft.ML.OnnxTransformer and Microsoft.ML.OnnxRuntime)</description></item>
/// <item><term>Exportable to ONNX</term><description>Yes: <see cref="ConvNetTransformer.ExportOnnx(Stream)"/>; the saved model holds the ONNX graph</description></item>
/// <item><term>Several processes</term><description>Option Distributed (Auto, Off, Mpi): under MPICH's <c>mpirun -n N</c> the N processes train one model, data-parallel (docs/scale.md).</description></item>
/// <item><term>Backends</term><description>Option Backend (Auto, Cpu, Cuda) through <see cref="BackendFactory"/>: CPU (managed; bit-identical results for any thread count); CUDA when its backend is present. Training, evaluation and scoring run on the chosen backend.</description></item>
/// </list>
/// <para>Training reads the IDataView once, into memory or a disk cache (<see cref="Options.DataCache"/>; see the remarks
/// of the data reader): every epoch visits the rows in a new seeded order, which a forward-only cursor cannot give.
/// In memory the rows take <c>rows x features x 4</c> bytes; on disk, memory holds the labels and a few batches. Then, per epoch: seeded shuffle, mini-batches (augmented when asked), softmax
/// cross-entropy, one optimizer step per batch; validation metrics, checkpoint, early stopping after each epoch.</para>
/// <para>Errors name the column, option or epoch: a missing label or feature column, a label that is neither a key nor
/// a number, a missing/NaN label or a NaN/infinite feature (with the row), a class with no training row (unless
/// <see cref="Options.AllowMissingClasses"/>), features that do not fit the network (with the layer), empty data,
/// out-of-range options, a loss turning NaN (<see cref="NonFiniteLossException"/> with epoch, batch and the last good
/// checkpoint), a finite loss past the divergence bound (<see cref="DivergingLossException"/>, or a warning: option
/// <see cref="Options.Divergence"/>), a corrupted or truncated checkpoint (<see cref="InvalidDataException"/> naming the file).
/// Before any data is read: an unusable <see cref="Options.CheckpointDirectory"/> and a resume checkpoint beyond
/// <see cref="Options.Epochs"/>. A saved model is best loaded with <see cref="ConvNetModel.Load(MLContext, string, out DataViewSchema)"/>
/// (docs/deployment.md).</para>
/// </remarks>
public sealed partial class ConvNetTrainer : IEstimator<ConvNetTransformer>
{
    private readonly Options _options;

    /// <summary>A trainer with <paramref name="options"/> (validated here; see <see cref="Options.Validate"/>).</summary>
    public ConvNetTrainer(Options options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
    }

    /// <summary>
    /// The output schema: the input's columns plus Score (vector of Single) and PredictedLabel (key). Throws
    /// <see cref="ArgumentOutOfRangeException"/> naming the label or feature column when it is missing or of the wrong type.
    /// </summary>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        var label = Find(inputSchema, _options.LabelColumnName, "Label", "LabelColumnName");
        var feature = Find(inputSchema, _options.FeatureColumnName, "Feature", "FeatureColumnName");
        if (!(label.IsKey || (label.Kind == SchemaShape.Column.VectorKind.Scalar && label.ItemType is NumberDataViewType)))
            throw new ArgumentOutOfRangeException("LabelColumnName", label.ItemType.ToString(),
                $"Label column '{label.Name}' has type {Describe(label)}; expected a key (use mlContext.Transforms.Conversion.MapValueToKey) or a number holding class indices 0, 1, 2, ...");
        if (feature.Kind != SchemaShape.Column.VectorKind.Vector || feature.ItemType != NumberDataViewType.Single || feature.IsKey)
            throw new ArgumentOutOfRangeException("FeatureColumnName", feature.ItemType.ToString(),
                $"Feature column '{feature.Name}' has type {Describe(feature)}; expected a known-size vector of Single (Vector<Single, n> or Vector<Single, C, H, W> from ExtractPixels).");
        // SchemaShape.Column's constructor is internal: borrow the two new columns' shapes from public estimators over
        // the label (a key or numeric label both give a Score vector of Single and a PredictedLabel key with KeyValues).
        var ml = new MLContext(seed: 0);
        IEstimator<ITransformer> shapes = label.IsKey
            ? ml.Transforms.Conversion.MapKeyToVector(MLNetGraph.ScoreColumn, label.Name).Append(ml.Transforms.CopyColumns(MLNetGraph.PredictedLabelColumn, label.Name))
            : ml.Transforms.Concatenate(MLNetGraph.ScoreColumn, feature.Name).Append(ml.Transforms.Conversion.MapValueToKey(MLNetGraph.PredictedLabelColumn, label.Name));
        return shapes.GetOutputSchema(inputSchema);
    }

    private static SchemaShape.Column Find(SchemaShape schema, string name, string role, string option)
    {
        var found = schema.Where(c => c.Name == name).ToArray();
        if (found.Length == 0)
            throw new ArgumentOutOfRangeException(option, name, $"{role} column '{name}' is not in the data; its columns are: {string.Join(", ", schema.Select(c => c.Name))}.");
        return found[^1];
    }

    private static string Describe(SchemaShape.Column c) =>
        (c.IsKey ? "Key<" + c.ItemType + ">" : c.ItemType.ToString()) + (c.Kind == SchemaShape.Column.VectorKind.Scalar ? "" : $" ({c.Kind})");

    /// <summary>
    /// Reads <paramref name="input"/> once (into memory or a disk cache, option DataCache), trains the network and returns
    /// the fitted transformer (see the class remarks). Disk caches are deleted when it returns or throws (unless KeepDataCache).
    /// </summary>
    public ConvNetTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var communicator = CreateCommunicator(); // first: only rank 0 logs
        if (communicator.Size == 1) return FitOn(input, communicator);
        try { return FitOn(input, communicator); }
        catch (Exception e) when (e is not (OperationCanceledException or NonFiniteLossException))
        {
            // The other ranks would wait for this one in the next collective: end the job (cancellation and a non-finite
            // loss happen on every rank at once).
            communicator.Abort($"MLNet.ConvNet: ConvNetTrainer.Fit failed on rank {communicator.Rank} of {communicator.Size}; ending the job. {e}");
            throw;
        }
    }

    private ConvNetTransformer FitOn(IDataView input, ICommunicator communicator)
    {
        var o = _options;
        bool rankZero = communicator.Rank == 0; // the only rank that logs, reports and writes files
        var log = rankZero ? o.Log : null;
        if (communicator.Size > 1)
            log?.Invoke($"ConvNetTrainer: data-parallel training over {communicator.Name}, {communicator.Size} ranks, this is rank {communicator.Rank} " +
                $"(option Distributed = {o.Distributed}); BatchSize = {o.BatchSize} is the global batch, about {o.BatchSize / communicator.Size} rows per rank per step.");
        var backend = CreateBackend(log); // first: a backend that cannot run here fails before any data is read
        var run = Prepare(communicator, log); // then the options that need the file system

        var label = DataViewReader.LabelColumn(input.Schema, o.LabelColumnName);
        var feature = DataViewReader.FeatureColumn(input.Schema, o.FeatureColumnName);
        var sampleShape = SampleShape(feature);
        var caches = new List<IDisposable>(); // disk caches, deleted when Fit ends (unless KeepDataCache)
        try { return ReadAndTrain(input, backend, label, feature, sampleShape, caches, run); }
        finally { foreach (var cache in caches) cache.Dispose(); }
    }

    /// <summary>What Fit settles before reading any data: the ranks, where logs and checkpoints go, the checkpoint resumed from.</summary>
    internal sealed record Run(ICommunicator Communicator, Action<string>? Log, string? CheckpointPath, string? BestPath, Checkpoint? Resumed);

    /// <summary>The checkpoint directory checked (and the checkpoint to resume from read) for a run over <paramref name="communicator"/>.</summary>
    private Run Prepare(ICommunicator communicator, Action<string>? log)
    {
        var (checkpointPath, bestPath) = PrepareCheckpointDirectory();
        return new Run(communicator, log, checkpointPath, bestPath, LoadResumeCheckpoint(checkpointPath));
    }

    private ConvNetTransformer ReadAndTrain(IDataView input, IBackend backend, DataViewSchema.Column label, DataViewSchema.Column feature,
        Shape sampleShape, List<IDisposable> caches, Run run)
    {
        var o = _options;
        var log = run.Log;
        var token = o.CancellationToken;
        ulong seed = unchecked((ulong)o.Seed);
        var storage = DataStorage();
        (IDataset Data, int[] Labels, LabelClasses Classes, string Reason) Read(IDataView data, LabelClasses? known, string what)
        {
            var read = DataViewReader.Read(data, label.Name, feature.Name, sampleShape, known, what, storage, token);
            if (read.Data is IDisposable cache) caches.Add(cache);
            log?.Invoke($"ConvNetTrainer: {what} data {read.Reason} (option DataCache = {o.DataCache}).");
            return read;
        }
        var (train, trainLabels, classes, _) = Read(input, null, "training");
        IDataset? validation = null;
        if (o.ValidationSet is { } validationSet)
            validation = Read(validationSet, classes, "validation").Data;
        else if (o.ValidationFraction > 0)
            (train, trainLabels, validation) = DataViewReader.Split(train, trainLabels, o.ValidationFraction, Rng.Mix(seed, 0x56414C));
        CheckEveryClassPresent(trainLabels, classes);
        var result = Train(backend, train, validation, classes.Count, sampleShape, feature, run);
        return new ConvNetTransformer(result.Network, classes, feature.Name, label.Name, result.History, result.BestEpoch, result.StoppedEarly, input);
    }

    /// <summary>What <see cref="Train"/> gives: the trained network, its epochs, and early stopping's outcome.</summary>
    internal sealed record TrainingRun(Network Network, EpochMetrics[] History, int? BestEpoch, bool StoppedEarly);

    /// <summary>
    /// Trains on data already read (<see cref="Fit"/> after reading, and the experiment, which reads its data once for all
    /// trials): builds the network and optimizer on <paramref name="backend"/> and runs Core's trainer with the options'
    /// augmentation, divergence check, early stopping, checkpoints and resume. Options ValidationSet and
    /// ValidationFraction are not read here: <paramref name="validation"/> is the validation data. Without
    /// <paramref name="run"/>: one process, option Log, the checkpoint directory checked here.
    /// </summary>
    internal TrainingRun Train(IBackend backend, IDataset train, IDataset? validation, int classCount, Shape sampleShape,
        DataViewSchema.Column feature, Run? run = null)
    {
        var o = _options;
        var (communicator, log, checkpointPath, bestPath, resumed) = run ?? Prepare(new SingleProcessCommunicator(), o.Log);
        bool rankZero = communicator.Rank == 0;
        var token = o.CancellationToken;
        ulong seed = unchecked((ulong)o.Seed);
        var network = CreateNetwork(backend, classCount, sampleShape, feature, seed);
        var optimizer = CreateOptimizer(network);
        var augmentation = o.RandomHorizontalFlip || o.RandomCropPadding > 0
            ? new Augmentation(train, o.RandomHorizontalFlip, o.RandomCropPadding, Rng.Mix(seed, 0x415547)) : null;

        string? resumeFrom = null;
        var history = new List<EpochMetrics>();
        var early = new EarlyStopping(o.EarlyStoppingPatience, o.EarlyStoppingMetric);
        if (resumed is not null)
        {
            // Read before any work (a damaged file fails there); its epoch sets augmentation and early stopping.
            resumeFrom = checkpointPath;
            history.AddRange(resumed.History);
            if (augmentation is not null) augmentation.Epoch = resumed.Epoch;
            foreach (var m in resumed.History) early.Observe(m);
            if (early.Enabled && File.Exists(bestPath)) early.Best = ResumeError(() => Checkpoint.Load(bestPath));
        }

        using var stop = CancellationTokenSource.CreateLinkedTokenSource(token);
        var trainer = new Trainer(network, optimizer, new TrainerOptions
        {
            Epochs = o.Epochs,
            BatchSize = o.BatchSize,
            Seed = seed,
            Schedule = o.Schedule,
            LabelSmoothing = (float)o.LabelSmoothing,
            CheckpointPath = checkpointPath,
            ResumeFrom = resumeFrom,
            OnBatch = WithDivergenceCheck(classCount, checkpointPath, rankZero ? o.OnBatch : null, log), // every rank checks: the loss is global
            ProgressInterval = o.ProgressInterval,
            Communicator = communicator,
            // Every rank runs this with the same (global) metrics, so early stopping stops every rank at the same epoch.
            OnEpoch = m =>
            {
                history.Add(m);
                if (augmentation is not null) augmentation.Epoch = m.Epoch;
                if (early.Observe(m))
                {
                    early.Best = Checkpoint.Capture(network, epoch: m.Epoch);
                    if (bestPath is not null && rankZero) early.Best.Save(bestPath);
                }
                if (rankZero) o.OnEpoch?.Invoke(m);
                if (early.ShouldStop(m.Epoch)) stop.Cancel(); // the trainer checks the token before the next batch
            },
        });
        try
        {
            // A resumed run whose patience had already run out has nothing left to train.
            if (early.ShouldStop(history.Count == 0 ? 0 : history[^1].Epoch)) stop.Cancel();
            IDataset data = (IDataset?)augmentation ?? train;
            if (resumeFrom is null) trainer.Fit(data, validation, stop.Token);
            else ResumeError(() => trainer.Fit(data, validation, stop.Token)); // restoring checks names and shapes
        }
        catch (OperationCanceledException) when (!token.IsCancellationRequested && early.ShouldStop(history.Count == 0 ? 0 : history[^1].Epoch)) { }
        if (communicator is MpiCommunicator mpi && log is not null && history.Count > 0)
            log($"ConvNetTrainer: rank 0 spent {mpi.AllreduceSeconds:F2} s in {mpi.AllreduceCalls} allreduce calls ({mpi.AllreduceBytes / 1e6:F1} MB); " +
                $"training took {history.Sum(m => m.Seconds):F2} s.");
        bool stoppedEarly = early.Enabled && history.Count > 0 && history[^1].Epoch < o.Epochs;
        if (early.Best is { } best) best.Restore(network);
        return new TrainingRun(network, history.ToArray(), early.Enabled ? early.BestEpoch : null, stoppedEarly);
    }

    /// <summary>
    /// Where the rows go (options DataCache, DataCacheDirectory, KeepDataCache): Auto keeps them in memory while their
    /// features as float32 take at most <see cref="Options.DataCacheMemoryLimit"/>, else a disk cache.
    /// </summary>
    private DataViewReader.Storage DataStorage()
    {
        var o = _options;
        long limit = o.DataCacheMemoryLimit ?? Math.Min(Defaults.DataCacheMemoryLimit, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 4);
        return new DataViewReader.Storage(o.DataCache, limit, o.DataCacheDirectory ?? Path.GetTempPath(), o.KeepDataCache);
    }

    /// <summary>Runs <paramref name="action"/>; a damaged or mismatched checkpoint's error gains the options that led to it.</summary>
    private T ResumeError<T>(Func<T> action)
    {
        try { return action(); }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"ConvNetTrainer cannot resume from the checkpoint in option CheckpointDirectory = '{_options.CheckpointDirectory}' (option Resume = true): {e.Message}", e);
        }
    }

    /// <summary>The sample shape from <see cref="Options.InputShape"/> or the feature column's dimensions.</summary>
    private Shape SampleShape(DataViewSchema.Column feature) => SampleShape(feature, _options.InputShape, "ConvNetTrainer");

    /// <summary>The sample shape from <paramref name="inputShape"/> (option InputShape of <paramref name="component"/>) or the feature column's dimensions.</summary>
    internal static Shape SampleShape(DataViewSchema.Column feature, int[]? inputShape, string component)
    {
        var type = (VectorDataViewType)feature.Type;
        if (inputShape is { } given)
        {
            var shape = new Shape(given);
            if (shape.Length != type.Size)
                throw new ArgumentException($"{component} option InputShape = {shape} holds {shape.Length} values but feature column '{feature.Name}' ({type}) holds {type.Size}.", "InputShape");
            return shape;
        }
        var dims = type.Dimensions.ToArray();
        return dims.Length switch
        {
            >= 3 => new Shape(dims),
            2 => new Shape(1, dims[0], dims[1]), // [H, W]: one channel
            _ => new Shape(type.Size),
        };
    }

    private void CheckEveryClassPresent(int[] trainLabels, LabelClasses classes)
    {
        if (_options.AllowMissingClasses) return;
        var seen = new bool[classes.Count];
        foreach (int l in trainLabels) seen[l] = true;
        var missing = Enumerable.Range(0, classes.Count).Where(i => !seen[i]).ToArray();
        if (missing.Length > 0)
            throw new ArgumentException(
                $"Label column '{_options.LabelColumnName}' ({classes.LabelType}) has {classes.Count} classes but no training row of class " +
                string.Join(", ", missing.Take(10).Select(i => $"'{classes.Names[i]}' (index {i})")) + (missing.Length > 10 ? $" and {missing.Length - 10} more" : "") +
                (_options.ValidationFraction > 0 && _options.ValidationSet is null ? " after the validation split" : "") +
                ". The network could never predict it; add rows of that class or set option AllowMissingClasses = true.", "trainData");
    }

    /// <summary>
    /// The backend of option CustomBackend, else the one BackendFactory makes for options Backend, DeviceIndex, MaxThreads
    /// and AllowTf32; its choice and reason go to option Log. BackendUnavailableException (Backend = Cuda without a usable
    /// GPU) passes through unchanged: its message names the option and what is missing.
    /// </summary>
    private IBackend CreateBackend(Action<string>? log)
    {
        var o = _options;
        if (o.CustomBackend is { } custom)
        {
            log?.Invoke($"ConvNetTrainer: backend '{custom.Name}' (option CustomBackend).");
            return custom;
        }
        var choice = BackendFactory.Create(o.ToBackendOptions());
        log?.Invoke($"ConvNetTrainer: backend '{choice.Backend.Name}' (option Backend = {o.Backend}): {choice.Reason}.");
        return choice.Backend;
    }

    /// <summary>
    /// The communicator of option CustomCommunicator, else the one option Distributed asks for: MPI's when an MPICH
    /// launcher started several processes (Auto) or always (Mpi), else this process alone.
    /// </summary>
    private ICommunicator CreateCommunicator()
    {
        var o = _options;
        if (o.CustomCommunicator is { } custom) return custom;
        if (o.Distributed == ConvNetDistributed.Off) return SingleProcessCommunicator.Instance;
        var launch = MpiLaunch.Detect();
        if (launch.Launcher == MpiLauncher.OpenMpi)
            throw new NotSupportedException($"ConvNetTrainer option Distributed = {o.Distributed}: this process was started by Open MPI's mpirun " +
                "(OMPI_COMM_WORLD_SIZE is set), which is not supported (MPI.NET follows MPICH's ABI). Start it with MPICH's mpirun.mpich " +
                "(Debian: apt-get install mpich libmpich-dev), or set Distributed = Off to train one model per process.");
        if (o.Distributed == ConvNetDistributed.Auto && launch.Size == 1) return SingleProcessCommunicator.Instance;
        try { return MpiCommunicator.World; }
        catch (DllNotFoundException e)
        {
            throw new InvalidOperationException($"ConvNetTrainer option Distributed = {o.Distributed} needs MPI: {e.Message}", e);
        }
    }

    private Network CreateNetwork(IBackend backend, int classes, Shape sampleShape, DataViewSchema.Column feature, ulong seed)
    {
        var o = _options;
        if (o.PretrainedModel is not null) return CreatePretrainedNetwork(backend, classes, sampleShape, feature, seed);
        string name = o.NetworkFactory is null ? $"network '{o.Network}'" : "the network from NetworkFactory";
        var network = o.NetworkFactory is { } factory
            ? factory(classes, backend) ?? throw new InvalidOperationException("ConvNetTrainer option NetworkFactory returned null.")
            : Presets.ByName(o.Network, classes, backend);
        if (o.InputMean is not null)
        {
            if (network.InputShape is not null)
                throw new ArgumentException("ConvNetTrainer options InputMean and InputStd put a Normalize layer in front of the network, but NetworkFactory returned it built; return it unbuilt.", "InputMean");
            network = new Network([InputNormalization()!, .. network.Layers], backend);
        }
        if (!ReferenceEquals(network.Backend, backend))
            throw new ArgumentException($"ConvNetTrainer option NetworkFactory returned a network on backend '{network.Backend.Name}', but the trainer runs on " +
                $"'{backend.Name}' (the backend passed to the factory); create the network with that backend, e.g. new Network(layers, backend).", "NetworkFactory");
        string where = $"feature column '{feature.Name}' ({feature.Type}) gives samples {sampleShape}" + (o.InputShape is null ? "" : " (option InputShape)");
        if (network.InputShape is { } built)
        {
            if (built != sampleShape)
                throw new ArgumentException($"The {where}, but {name} was already built for samples {built}; return it unbuilt.", "FeatureColumnName");
        }
        else
        {
            try { network.Build(sampleShape, seed); }
            catch (ArgumentException e)
            {
                throw new ArgumentException($"The {where}, which {name} cannot take" +
                    (sampleShape.Rank == 1 ? " (a flat vector: set option InputShape, e.g. [1, 28, 28])" : "") + $": {WithoutParameterNames(e.Message)}", "FeatureColumnName", e);
            }
        }
        if (network.OutputShape != new Shape(classes))
            throw new ArgumentException($"The label has {classes} classes but {name} outputs {network.OutputShape} per sample; its last layer must be Dense({classes}).", o.NetworkFactory is null ? "Network" : "NetworkFactory");
        return network;
    }

    /// <summary>An ArgumentException's message without the " (Parameter 'x')" suffixes that nesting piles up.</summary>
    private static string WithoutParameterNames(string message) =>
        System.Text.RegularExpressions.Regex.Replace(message, @" \(Parameter '[^']*'\)", "");

    private Optimizer CreateOptimizer(Network network)
    {
        var o = _options;
        // Frozen layers' parameters are left out (Network.FrozenLayerCount); all of them without a pretrained model.
        var trained = network.TrainableParameters;
        Optimizer optimizer = o.Optimizer switch
        {
            ConvNetOptimizer.Sgd => new Sgd(trained, o.LearningRate, o.Momentum, o.Nesterov, o.WeightDecay ?? 0),
            ConvNetOptimizer.Adam => new Adam(trained, o.LearningRate, weightDecay: o.WeightDecay ?? 0),
            _ => new AdamW(trained, o.LearningRate, weightDecay: o.WeightDecay ?? 0.01),
        };
        if (o.BodyLearningRateScale != 1)
            optimizer.SetLearningRateScale(trained.Except(network.Layers[^1].Parameters), o.BodyLearningRateScale);
        return optimizer;
    }

    /// <summary>Tracks the best validation figure and when patience runs out.</summary>
    private sealed class EarlyStopping(int patience, EarlyStoppingMetric metric)
    {
        private double _best = double.NaN;

        public bool Enabled => patience > 0;
        public int BestEpoch { get; private set; }
        public Checkpoint? Best { get; set; }

        /// <summary>Records an epoch; true when it is a new best (only when enabled).</summary>
        public bool Observe(EpochMetrics m)
        {
            if (!Enabled) return false;
            double v = metric == EarlyStoppingMetric.ValidationLoss ? m.ValidationLoss : -m.ValidationAccuracy;
            if (double.IsNaN(v) || (!double.IsNaN(_best) && v >= _best)) return false;
            _best = v;
            BestEpoch = m.Epoch;
            return true;
        }

        public bool ShouldStop(int epoch) => Enabled && BestEpoch > 0 && epoch - BestEpoch >= patience;
    }
}
