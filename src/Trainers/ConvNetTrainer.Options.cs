using MLNet.ConvNet.Backends;
using MLNet.ConvNet.Data;
using MLNet.ConvNet.Distributed;
using MLNet.ConvNet.Layers;
using MLNet.ConvNet.Optimizers;
using MLNet.ConvNet.Training;
using Microsoft.ML;

namespace MLNet.ConvNet.Trainers;

/// <summary>The optimizers <see cref="ConvNetTrainer"/> can use.</summary>
public enum ConvNetOptimizer
{
    /// <summary>Stochastic gradient descent with momentum (<see cref="ConvNetTrainer.Options.Momentum"/>, optionally Nesterov) and L2 weight decay.</summary>
    Sgd,
    /// <summary>Adam (Kingma and Ba 2015); weight decay is an L2 penalty in the gradient.</summary>
    Adam,
    /// <summary>AdamW (Loshchilov and Hutter 2019): Adam with decoupled weight decay.</summary>
    AdamW,
}

/// <summary>Whether several processes train one model together (data-parallel; docs/scale.md).</summary>
public enum ConvNetDistributed
{
    /// <summary>
    /// MPI when an MPI launcher started more than one process (MPICH's <c>mpirun</c> sets PMI_RANK and PMI_SIZE), else this
    /// process alone. Open MPI's <c>mpirun</c> (OMPI_COMM_WORLD_SIZE) is an error: use MPICH's <c>mpirun.mpich</c>.
    /// </summary>
    Auto,
    /// <summary>This process alone, even under mpirun (every process then trains its own model).</summary>
    Off,
    /// <summary>MPI always (one process started without a launcher is a job of one rank); MPI missing is an error.</summary>
    Mpi,
}

/// <summary>Where the network's tensors live and its kernels run.</summary>
public enum ConvNetBackend
{
    /// <summary>The GPU when the CUDA libraries and a device are present, else the CPU (the log says which and why).</summary>
    Auto,
    /// <summary>The managed CPU backend.</summary>
    Cpu,
    /// <summary>An NVIDIA GPU through cuDNN and cuBLAS; without one, Fit throws <see cref="BackendUnavailableException"/> naming what is missing.</summary>
    Cuda,
}

/// <summary>The validation figure early stopping watches.</summary>
public enum EarlyStoppingMetric
{
    /// <summary>Mean cross-entropy on the validation data (lower is better).</summary>
    ValidationLoss,
    /// <summary>Accuracy on the validation data (higher is better).</summary>
    ValidationAccuracy,
}

public sealed partial class ConvNetTrainer
{
    /// <summary>The defaults, written once: the options and the catalog's convenience overload read them.</summary>
    public static class Defaults
    {
        /// <summary>"Label".</summary>
        public const string LabelColumnName = "Label";
        /// <summary>"Features".</summary>
        public const string FeatureColumnName = "Features";
        /// <summary>"lenet5".</summary>
        public const string Network = "lenet5";
        /// <summary>10.</summary>
        public const int Epochs = 10;
        /// <summary>64.</summary>
        public const int BatchSize = 64;
        /// <summary>Adam.</summary>
        public const ConvNetOptimizer Optimizer = ConvNetOptimizer.Adam;
        /// <summary>1e-3.</summary>
        public const double LearningRate = 1e-3;
        /// <summary>0.9.</summary>
        public const double Momentum = 0.9;
        /// <summary>0.</summary>
        public const int Seed = 0;
        /// <summary>"convnet.ckpt": the file, inside <see cref="Options.CheckpointDirectory"/>, holding the last epoch's checkpoint.</summary>
        public const string CheckpointFileName = "convnet.ckpt";
        /// <summary>1 GB (1e9 bytes): with DataCache = Auto, features up to this size as float32 (or a quarter of the memory available, if less) stay in memory.</summary>
        public const long DataCacheMemoryLimit = 1_000_000_000;
        /// <summary>"convnet.best.ckpt": the file, inside <see cref="Options.CheckpointDirectory"/>, holding the best epoch's weights under early stopping.</summary>
        public const string BestCheckpointFileName = "convnet.best.ckpt";
    }

    /// <summary>
    /// Options of <see cref="ConvNetTrainer"/>; each summary states the default. <see cref="Validate"/> (run by the
    /// trainer's constructor) throws an <see cref="ArgumentException"/> naming the option that is out of range.
    /// </summary>
    public sealed class Options
    {
        /// <summary>LabelColumnName = "Label": a key (as from MapValueToKey) or a number holding class indices 0, 1, 2, ...</summary>
        public string LabelColumnName { get; set; } = Defaults.LabelColumnName;

        /// <summary>
        /// FeatureColumnName = "Features": a known-size vector of Single. Its dimensions (<c>[C, H, W]</c> from ExtractPixels;
        /// <c>[H, W]</c> is read as <c>[1, H, W]</c>) give the network's input shape unless <see cref="InputShape"/> is set.
        /// </summary>
        public string FeatureColumnName { get; set; } = Defaults.FeatureColumnName;

        /// <summary>Network = "lenet5": a preset of <see cref="Presets.Names"/> (lenet5, cnn2bn, vgg, resnet); ignored when <see cref="NetworkFactory"/> or <see cref="PretrainedModel"/> is set.</summary>
        public string Network { get; set; } = Defaults.Network;

        /// <summary>
        /// NetworkFactory = null: builds a custom network for the given number of classes on the given backend (the one
        /// <see cref="Backend"/> chose: pass it to the Network constructor or the preset; a network on another backend is an
        /// error). Return it unbuilt (the trainer builds it for the feature shape with <see cref="Seed"/>) and ending in
        /// <c>[classes]</c> logits (no softmax).
        /// </summary>
        public Func<int, IBackend, Network>? NetworkFactory { get; set; }

        /// <summary>
        /// InputShape = null: the shape of one sample, e.g. <c>[1, 28, 28]</c>, for a feature column that is a flat vector;
        /// its product must equal the column's size. Null takes the column's own dimensions (a flat vector is <c>[D]</c>).
        /// </summary>
        public int[]? InputShape { get; set; }

        /// <summary>Epochs = 10: passes over the training data (counting those a resumed checkpoint completed).</summary>
        public int Epochs { get; set; } = Defaults.Epochs;

        /// <summary>BatchSize = 64: images per optimizer step (the last batch of an epoch may be smaller).</summary>
        public int BatchSize { get; set; } = Defaults.BatchSize;

        /// <summary>Optimizer = Adam.</summary>
        public ConvNetOptimizer Optimizer { get; set; } = Defaults.Optimizer;

        /// <summary>LearningRate = 1e-3: the base rate, scaled by <see cref="Schedule"/>.</summary>
        public double LearningRate { get; set; } = Defaults.LearningRate;

        /// <summary>Momentum = 0.9: SGD's momentum in [0, 1) (ignored by Adam and AdamW).</summary>
        public double Momentum { get; set; } = Defaults.Momentum;

        /// <summary>Nesterov = false: Nesterov momentum for SGD (needs <see cref="Momentum"/> &gt; 0).</summary>
        public bool Nesterov { get; set; }

        /// <summary>
        /// WeightDecay = null: the optimizer's default, 0 for SGD and Adam (an L2 penalty in the gradient) and 0.01 for
        /// AdamW (decoupled). Must be &gt;= 0.
        /// </summary>
        public double? WeightDecay { get; set; }

        /// <summary>
        /// Schedule = null (constant rate): scales the learning rate before every step, e.g. <c>new StepSchedule(5)</c>,
        /// <c>new CosineSchedule(Epochs)</c>, <c>new WarmupSchedule(1, new CosineSchedule(Epochs))</c>.
        /// </summary>
        public LearningRateSchedule? Schedule { get; set; }

        /// <summary>
        /// LabelSmoothing = 0: e in [0, 1). Training minimises the cross-entropy against the smoothed target
        /// (1 - e) * onehot(label) + e / K for K classes, as PyTorch's <c>CrossEntropyLoss(label_smoothing = e)</c>; 0.1 is a
        /// common choice. The training loss in the batch and epoch metrics is the smoothed loss; the validation loss is
        /// the plain cross-entropy.
        /// </summary>
        public double LabelSmoothing { get; set; }

        /// <summary>RandomHorizontalFlip = false: mirror each training image left-right with probability 1/2 (the last dimension is the width).</summary>
        public bool RandomHorizontalFlip { get; set; }

        /// <summary>
        /// RandomCropPadding = 0: when P &gt; 0, each training image is padded with P zeros on every side of its spatial
        /// dimensions and a window of the original size is cropped at a random offset (a random shift of up to P pixels).
        /// </summary>
        public int RandomCropPadding { get; set; }

        /// <summary>ValidationSet = null: data evaluated after every epoch (same columns as the training data); overrides <see cref="ValidationFraction"/>.</summary>
        public IDataView? ValidationSet { get; set; }

        /// <summary>ValidationFraction = 0: the fraction in [0, 1) of the training rows held out (seeded random choice) for validation.</summary>
        public double ValidationFraction { get; set; }

        /// <summary>
        /// EarlyStoppingPatience = 0 (off): stop after this many epochs without improvement of <see cref="EarlyStoppingMetric"/>
        /// and restore the best epoch's weights. Needs validation data.
        /// </summary>
        public int EarlyStoppingPatience { get; set; }

        /// <summary>EarlyStoppingMetric = ValidationLoss.</summary>
        public EarlyStoppingMetric EarlyStoppingMetric { get; set; }

        /// <summary>
        /// CheckpointDirectory = null: when set, a checkpoint (weights, optimizer state, generator state, epoch, history) is
        /// written there as <see cref="Defaults.CheckpointFileName"/> after every epoch, replacing the previous one.
        /// </summary>
        public string? CheckpointDirectory { get; set; }

        /// <summary>Resume = false: when true and <see cref="CheckpointDirectory"/> holds a checkpoint, training continues after its epoch (same options and data give the same weights as an uninterrupted run).</summary>
        public bool Resume { get; set; }

        /// <summary>CancellationToken = none: checked before every batch; cancelling makes Fit throw <see cref="OperationCanceledException"/>.</summary>
        public CancellationToken CancellationToken { get; set; }

        /// <summary>
        /// OnBatch = null: called after every <see cref="ProgressInterval"/>-th optimizer step and the last step of each epoch,
        /// with that step's loss, accuracy and progress (each call reads the step statistics back from the backend).
        /// </summary>
        public Action<BatchProgress>? OnBatch { get; set; }

        /// <summary>ProgressInterval = 50: optimizer steps between <see cref="OnBatch"/> calls; steps in between read nothing back from the backend.</summary>
        public int ProgressInterval { get; set; } = 50;

        /// <summary>Log = null: receives a line for each notable decision the trainer takes (today: which backend runs the network, and why).</summary>
        public Action<string>? Log { get; set; }

        /// <summary>OnEpoch = null: called after every epoch with its metrics (after the checkpoint is written).</summary>
        public Action<EpochMetrics>? OnEpoch { get; set; }

        /// <summary>Seed = 0: seeds the weights, the per-epoch shuffling, augmentation and the validation split. Same seed, data and options give bit-identical weights.</summary>
        public int Seed { get; set; } = Defaults.Seed;

        /// <summary>
        /// Backend = Auto: where training, evaluation and scoring run (see <see cref="ConvNetBackend"/>). The choice and its
        /// reason go to <see cref="Log"/>. Cuda without a usable GPU makes Fit throw <see cref="BackendUnavailableException"/>.
        /// </summary>
        public ConvNetBackend Backend { get; set; }

        /// <summary>DeviceIndex = 0: the CUDA device to use (as the driver numbers them; CUDA_VISIBLE_DEVICES applies). Ignored by the CPU.</summary>
        public int DeviceIndex { get; set; }

        /// <summary>AllowTf32 = false: let a CUDA backend use TF32 tensor cores for float32 (faster, about 1e-3 relative error). Ignored by the CPU.</summary>
        public bool AllowTf32 { get; set; }

        /// <summary>MaxThreads = null (all cores): threads of the CPU backend. Results do not depend on it.</summary>
        public int? MaxThreads { get; set; }

        /// <summary>
        /// CustomBackend = null: for advanced use and tests, a backend instance to run on instead of the one
        /// <see cref="Backend"/>, <see cref="DeviceIndex"/>, <see cref="AllowTf32"/> and <see cref="MaxThreads"/> would choose
        /// (e.g. a wrapper that counts or traces kernel calls). Training, evaluation and scoring all run on it.
        /// </summary>
        public IBackend? CustomBackend { get; set; }

        /// <summary>
        /// Distributed = Auto: data-parallel training over MPI when the process was started by MPICH's
        /// <c>mpirun -n N</c> with N &gt; 1 (see <see cref="ConvNetDistributed"/>). Each rank must run the same program on the
        /// same data; <see cref="BatchSize"/> is the global batch, split between the ranks; only rank 0 writes checkpoints
        /// and calls <see cref="Log"/>, <see cref="OnBatch"/> and <see cref="OnEpoch"/> (with the metrics of all ranks); Fit
        /// returns the same model on every rank, and the program saves it on rank 0 (<c>MpiLaunch.Detect().IsRankZero</c>).
        /// A failure on one rank ends the whole job. See docs/scale.md.
        /// </summary>
        public ConvNetDistributed Distributed { get; set; }

        /// <summary>
        /// CustomCommunicator = null: for advanced use and tests, the communicator to train through instead of the one
        /// <see cref="Distributed"/> would choose (e.g. one over another transport).
        /// </summary>
        public ICommunicator? CustomCommunicator { get; set; }

        /// <summary>
        /// AllowMissingClasses = false: a class of the label (a key value, or an index below the largest label) with no
        /// training row is an error; set true to train anyway (the network keeps an output for it that training never raises).
        /// </summary>
        public bool AllowMissingClasses { get; set; }

        /// <summary>
        /// Divergence = Stop: what happens when the training loss grows past <see cref="DivergenceFactor"/> x the larger of
        /// ln(classes) and the first loss read back (a finite loss far above chance level and above where the run started,
        /// as a too-high learning rate gives): Stop throws
        /// <see cref="DivergingLossException"/>, Warn writes a line to <see cref="Log"/> (once per epoch) and trains on, Ignore
        /// does neither. Checked where the loss is read back: every <see cref="ProgressInterval"/> steps and each epoch's last.
        /// </summary>
        public DivergenceAction Divergence { get; set; }

        /// <summary>DivergenceFactor = 10: the divergence bound is this times the larger of ln(classes) (the loss of a uniform guess; at least 1) and the first loss read back. Must be &gt; 1.</summary>
        public double DivergenceFactor { get; set; } = 10;

        /// <summary>
        /// DataCache = Auto: where the rows, read once, are kept for training. Memory: one float32 array. Disk: a file
        /// (pixels that are whole numbers in 0..255 as bytes, else float32) read back in each epoch's order by a background
        /// reader; memory then holds the labels and a few batches. Auto: memory while the features as float32 take at most
        /// <see cref="Defaults.DataCacheMemoryLimit"/> (or a quarter of the available memory, if less), else disk. Option
        /// <see cref="Log"/> gets which and why. Same seed, same batches either way.
        /// </summary>
        public SampleStorage DataCache { get; set; }

        /// <summary>DataCacheDirectory = null (the temporary folder): where a disk cache's file goes; deleted when Fit ends unless <see cref="KeepDataCache"/>.</summary>
        public string? DataCacheDirectory { get; set; }

        /// <summary>KeepDataCache = false: leave the disk cache's file in place after Fit (its path is in the log).</summary>
        public bool KeepDataCache { get; set; }

        /// <summary>Auto's limit in bytes instead of the default (tests).</summary>
        internal long? DataCacheMemoryLimit { get; set; }

        // ---- Transfer learning: start from a pretrained network (docs/onnx-import.md) ----

        /// <summary>
        /// PretrainedModel = null: a file to start from instead of <see cref="Network"/> and <see cref="NetworkFactory"/>: an
        /// ONNX model (".onnx", read by <see cref="Onnx.OnnxImporter"/>) or a checkpoint that stores its architecture
        /// (<see cref="Checkpoint.LoadNetwork"/>). Its weights are the starting point; the network is built for the features' shape.
        /// </summary>
        public string? PretrainedModel { get; set; }

        /// <summary>ReplaceHead = true: with <see cref="PretrainedModel"/>, its last layer (a Dense classifier) is replaced by a new <c>Dense(classes)</c> named "head"; false keeps it (it must output one value per class).</summary>
        public bool ReplaceHead { get; set; } = true;

        /// <summary>
        /// FreezeThrough = null (train all): the top-level layer (by name, as <c>Network.Summary()</c> lists them; "body": all
        /// but the last) up to which, inclusive, nothing trains: those weights stay bit-identical and their batch norms run in
        /// inference mode (<c>Network.FrozenLayerCount</c>).
        /// </summary>
        public string? FreezeThrough { get; set; }

        /// <summary>BodyLearningRateScale = 1: the learning rate of every trained layer but the last (the head) is <see cref="LearningRate"/> times this (discriminative rates, e.g. 0.1).</summary>
        public double BodyLearningRateScale { get; set; } = 1;

        /// <summary>
        /// InputMean = null, InputStd = null: per-channel input normalization <c>(x - mean[c]) / std[c]</c>, put in front of the
        /// network as a <see cref="Normalize"/> layer (so scoring and the saved model apply it too); e.g. ImageNet's
        /// [0.485, 0.456, 0.406] and [0.229, 0.224, 0.225] for pixels scaled to [0, 1]. Give both or neither.
        /// </summary>
        public float[]? InputMean { get; set; }

        /// <summary>InputStd = null: see <see cref="InputMean"/>; every value &gt; 0.</summary>
        public float[]? InputStd { get; set; }

        /// <summary>The backend options these options ask for (<see cref="Backend"/>, <see cref="DeviceIndex"/>, <see cref="MaxThreads"/>, <see cref="AllowTf32"/>).</summary>
        public BackendOptions ToBackendOptions() => new()
        {
            Kind = Backend switch
            {
                ConvNetBackend.Cpu => BackendKind.Cpu,
                ConvNetBackend.Cuda => BackendKind.Cuda,
                _ => BackendKind.Auto,
            },
            DeviceIndex = DeviceIndex, MaxThreads = MaxThreads, AllowTf32 = AllowTf32,
        };

        /// <summary>Throws an <see cref="ArgumentException"/> (or subclass) naming the first option out of range.</summary>
        public void Validate()
        {
            static void Require(bool ok, string option, object? value, string rule)
            {
                if (!ok) throw new ArgumentOutOfRangeException($"options.{option}", value, $"ConvNetTrainer option {option} = {value ?? "null"}: {rule}");
            }
            Require(!string.IsNullOrEmpty(LabelColumnName), nameof(LabelColumnName), LabelColumnName, "give the label column's name.");
            Require(!string.IsNullOrEmpty(FeatureColumnName), nameof(FeatureColumnName), FeatureColumnName, "give the feature column's name.");
            Require(NetworkFactory is not null || PretrainedModel is not null || Presets.Names.Contains((Network ?? "").ToLowerInvariant()),
                nameof(Network), Network, $"not a preset; choose one of {string.Join(", ", Presets.Names)} (any case), or set NetworkFactory or PretrainedModel.");
            Require(InputShape is null || (InputShape.Length > 0 && InputShape.All(d => d > 0)), nameof(InputShape),
                InputShape is null ? null : "[" + string.Join(", ", InputShape) + "]", "every dimension must be > 0.");
            Require(Epochs >= 1, nameof(Epochs), Epochs, "must be >= 1.");
            Require(BatchSize >= 1, nameof(BatchSize), BatchSize, "must be >= 1.");
            Require(Enum.IsDefined(Optimizer), nameof(Optimizer), Optimizer, "unknown optimizer.");
            Require(LearningRate > 0 && double.IsFinite(LearningRate), nameof(LearningRate), LearningRate, "must be finite and > 0.");
            Require(Momentum >= 0 && Momentum < 1, nameof(Momentum), Momentum, "must be in [0, 1).");
            Require(!Nesterov || Optimizer != ConvNetOptimizer.Sgd || Momentum > 0, nameof(Nesterov), Nesterov, "Nesterov momentum needs Momentum > 0.");
            Require(WeightDecay is null || (WeightDecay >= 0 && double.IsFinite(WeightDecay.Value)), nameof(WeightDecay), WeightDecay, "must be finite and >= 0.");
            // Checked as the float the trainer uses, so a value just under 1 that rounds to 1f is refused here.
            Require(LabelSmoothing >= 0 && (float)LabelSmoothing < 1, nameof(LabelSmoothing), LabelSmoothing, "must be in [0, 1).");
            Require(RandomCropPadding >= 0, nameof(RandomCropPadding), RandomCropPadding, "must be >= 0.");
            Require(ValidationFraction >= 0 && ValidationFraction < 1, nameof(ValidationFraction), ValidationFraction, "must be in [0, 1).");
            Require(EarlyStoppingPatience >= 0, nameof(EarlyStoppingPatience), EarlyStoppingPatience, "must be >= 0 (0 turns early stopping off).");
            Require(EarlyStoppingPatience == 0 || ValidationSet is not null || ValidationFraction > 0, nameof(EarlyStoppingPatience), EarlyStoppingPatience,
                "early stopping needs validation data: set ValidationSet or ValidationFraction.");
            Require(Enum.IsDefined(EarlyStoppingMetric), nameof(EarlyStoppingMetric), EarlyStoppingMetric, "unknown metric.");
            Require(!Resume || CheckpointDirectory is not null, nameof(Resume), Resume, "resuming needs CheckpointDirectory.");
            Require(ProgressInterval >= 1, nameof(ProgressInterval), ProgressInterval, "must be >= 1.");
            Require(Enum.IsDefined(Backend), nameof(Backend), Backend, "unknown backend.");
            Require(Enum.IsDefined(Distributed), nameof(Distributed), Distributed, "unknown choice.");
            Require(DeviceIndex >= 0, nameof(DeviceIndex), DeviceIndex, "must be >= 0.");
            Require(MaxThreads is null || MaxThreads >= 1, nameof(MaxThreads), MaxThreads, "must be >= 1.");
            Require(Enum.IsDefined(Divergence), nameof(Divergence), Divergence, "unknown action.");
            Require(Divergence != DivergenceAction.Warn || Log is not null, nameof(Divergence), Divergence, "the warning goes to option Log; set Log.");
            Require(DivergenceFactor > 1 && double.IsFinite(DivergenceFactor), nameof(DivergenceFactor), DivergenceFactor, "must be finite and > 1.");
            Require(Enum.IsDefined(DataCache), nameof(DataCache), DataCache, "unknown choice (Auto, Memory or Disk).");
            Require(BodyLearningRateScale > 0 && double.IsFinite(BodyLearningRateScale), nameof(BodyLearningRateScale), BodyLearningRateScale, "must be finite and > 0.");
            Require((InputMean is null) == (InputStd is null) && (InputMean is null || (InputMean.Length > 0 && InputMean.Length == InputStd!.Length)),
                nameof(InputStd), InputStd is null ? null : InputStd.Length + " values", $"give InputMean and InputStd together, one value per channel ({InputMean?.Length ?? 0} means).");
            Require(InputStd is null || InputStd.All(v => v > 0 && float.IsFinite(v)), nameof(InputStd), InputStd is null ? null : string.Join(", ", InputStd), "every value must be finite and > 0.");
            Require(PretrainedModel is not null || FreezeThrough is null, nameof(FreezeThrough), FreezeThrough, "applies to a PretrainedModel; set PretrainedModel too.");
            Require(PretrainedModel is not null || BodyLearningRateScale == 1, nameof(BodyLearningRateScale), BodyLearningRateScale, "applies to a PretrainedModel; set PretrainedModel too.");
        }
    }
}
