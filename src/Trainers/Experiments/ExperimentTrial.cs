using System.Globalization;
using MLNet.ConvNet.Backends;
using MLNet.ConvNet.Layers;
using MLNet.ConvNet.Optimizers;

namespace MLNet.ConvNet.Trainers;

/// <summary>
/// One trial's settings, drawn from a <see cref="ConvNetSearchSpace"/>: the network (a preset, or the "convnet"
/// family's depth, width, batch norm and dropout) and the training settings.
/// </summary>
public sealed record TrialSettings
{
    /// <summary>A preset name (<see cref="Presets.Names"/>) or <see cref="ConvNetSearchSpace.ConvNetFamily"/>.</summary>
    public required string Architecture { get; init; }
    /// <summary>The "convnet" family's blocks; null for a preset.</summary>
    public int? Depth { get; init; }
    /// <summary>The "convnet" family's first-block channels; null for a preset.</summary>
    public int? Width { get; init; }
    /// <summary>The "convnet" family's batch norm; null for a preset.</summary>
    public bool? BatchNorm { get; init; }
    /// <summary>The "convnet" family's dropout; null for a preset.</summary>
    public double? Dropout { get; init; }
    /// <summary>The optimizer (SGD runs with Nesterov momentum 0.9).</summary>
    public ConvNetOptimizer Optimizer { get; init; }
    /// <summary>The base learning rate.</summary>
    public double LearningRate { get; init; }
    /// <summary>The learning-rate schedule (over the experiment's MaxEpochs).</summary>
    public ExperimentSchedule Schedule { get; init; }
    /// <summary>Images per step.</summary>
    public int BatchSize { get; init; }
    /// <summary>Label smoothing e.</summary>
    public double LabelSmoothing { get; init; }
    /// <summary>Random horizontal flips.</summary>
    public bool HorizontalFlip { get; init; }
    /// <summary>Random shifts of up to this many pixels.</summary>
    public int CropPadding { get; init; }

    /// <summary>The network's name: the preset, or e.g. "convnet-d3-w32-bn-drop0.25".</summary>
    public string NetworkName => Architecture != ConvNetSearchSpace.ConvNetFamily ? Architecture
        : string.Create(CultureInfo.InvariantCulture, $"convnet-d{Depth}-w{Width}{(BatchNorm == true ? "-bn" : "")}{(Dropout > 0 ? $"-drop{Dropout}" : "")}");

    /// <summary>The network, unbuilt, for <paramref name="classes"/> classes on <paramref name="backend"/>.</summary>
    public Network CreateNetwork(int classes, IBackend backend) => Architecture == ConvNetSearchSpace.ConvNetFamily
        ? ConvNetSearchSpace.BuildConvNet(Depth!.Value, Width!.Value, BatchNorm!.Value, Dropout!.Value, classes, backend)
        : Presets.ByName(Architecture, classes, backend);

    /// <summary>The schedule object for a run planned over <paramref name="maxEpochs"/> epochs (null: constant).</summary>
    public LearningRateSchedule? CreateSchedule(int maxEpochs) => Schedule switch
    {
        ExperimentSchedule.Cosine => new CosineSchedule(maxEpochs),
        ExperimentSchedule.WarmupCosine => new WarmupSchedule(1, new CosineSchedule(maxEpochs)),
        _ => null,
    };

    /// <summary>
    /// The schedule of the experiment's final training over <paramref name="epochs"/>: always a cosine decay to zero
    /// (a constant-rate trial too: its rate was judged at rung ends, but the model it hands over should be annealed),
    /// with the trial's one-epoch warm-up when it trains from scratch (<paramref name="fromScratch"/>); a run that
    /// continues a trial's weights needs none.
    /// </summary>
    public LearningRateSchedule CreateFinalSchedule(int epochs, bool fromScratch) =>
        Schedule == ExperimentSchedule.WarmupCosine && fromScratch ? new WarmupSchedule(1, new CosineSchedule(epochs)) : new CosineSchedule(epochs);

    /// <summary>One line: network, optimizer and rate, schedule, batch, smoothing, augmentation.</summary>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"{NetworkName} {Optimizer} lr={LearningRate:G3} {Schedule} batch={BatchSize} smooth={LabelSmoothing} flip={(HorizontalFlip ? 1 : 0)} crop={CropPadding}");

    /// <summary>
    /// Draws trial settings from <paramref name="space"/> with <paramref name="rng"/>: an architecture (each of those with a
    /// network in <paramref name="networks"/>, the space's networks that fit the data, equally likely), then one of its
    /// networks (for "convnet": a depth, width, batch norm and dropout), then each training setting.
    /// </summary>
    internal static TrialSettings Draw(ConvNetSearchSpace space, IReadOnlyList<TrialSettings> networks, Rng rng)
    {
        T Pick<T>(IList<T> list) => list[rng.NextInt(list.Count)];
        var architectures = networks.Select(n => n.Architecture).Distinct().ToList();
        string architecture = Pick(architectures);
        var net = Pick(networks.Where(n => n.Architecture == architecture).ToList());
        var optimizer = Pick(space.Optimizers);
        var range = optimizer == ConvNetOptimizer.Sgd ? space.SgdLearningRate : space.AdaptiveLearningRate;
        // Rounded to 3 significant digits so the leaderboard's text gives back the same rate.
        double rate = double.Parse(range.At(rng.NextDouble()).ToString("G3", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
        return net with
        {
            Optimizer = optimizer, LearningRate = rate, Schedule = Pick(space.Schedules), BatchSize = Pick(space.BatchSizes),
            LabelSmoothing = Pick(space.LabelSmoothing), HorizontalFlip = Pick(space.HorizontalFlips), CropPadding = Pick(space.CropPaddings),
        };
    }

    /// <summary>
    /// The hand-tuned recipe (<see cref="ConvNetSearchSpace.StartFromRecipes"/>) for each preset among
    /// <paramref name="networks"/>, in their order; empty when the option is off or one of the recipe's values is not
    /// in <paramref name="space"/>.
    /// </summary>
    internal static List<TrialSettings> Recipes(ConvNetSearchSpace space, IReadOnlyList<TrialSettings> networks)
    {
        const double rate = 1e-3, smoothing = 0.1;
        const int batch = 64;
        var r = space.AdaptiveLearningRate;
        bool inSpace = space.StartFromRecipes && space.Optimizers.Contains(ConvNetOptimizer.Adam) && r.Min <= rate && rate <= r.Max
            && space.Schedules.Contains(ExperimentSchedule.Cosine) && space.LabelSmoothing.Contains(smoothing) && space.BatchSizes.Contains(batch)
            && space.HorizontalFlips.Contains(false) && space.CropPaddings.Contains(0);
        if (!inSpace) return [];
        return networks.Where(n => n.Architecture != ConvNetSearchSpace.ConvNetFamily)
            .Select(n => n with
            {
                Optimizer = ConvNetOptimizer.Adam, LearningRate = rate, Schedule = ExperimentSchedule.Cosine, BatchSize = batch,
                LabelSmoothing = smoothing, HorizontalFlip = false, CropPadding = 0,
            }).ToList();
    }

    /// <summary>Every network of <paramref name="space"/>: each preset once, and each depth x width x batch norm x dropout of "convnet".</summary>
    internal static List<TrialSettings> Networks(ConvNetSearchSpace space)
    {
        var list = new List<TrialSettings>();
        foreach (var a in space.Architectures.Distinct())
        {
            if (a != ConvNetSearchSpace.ConvNetFamily) { list.Add(new TrialSettings { Architecture = a }); continue; }
            foreach (int d in space.Depths.Distinct())
                foreach (int w in space.Widths.Distinct())
                    foreach (bool bn in space.BatchNorm.Distinct())
                        foreach (double p in space.Dropouts.Distinct())
                            list.Add(new TrialSettings { Architecture = a, Depth = d, Width = w, BatchNorm = bn, Dropout = p });
        }
        return list;
    }
}

/// <summary>Where a trial stands.</summary>
public enum TrialStatus
{
    /// <summary>Training (only seen from the progress callback).</summary>
    Running,
    /// <summary>It trained its last rung's epochs and was not promoted (or not yet).</summary>
    Completed,
    /// <summary>Cut short by the time budget or cancellation; its completed epochs count.</summary>
    Stopped,
    /// <summary>Training failed (the loss diverged, or another error): see <see cref="ExperimentTrial.Error"/>.</summary>
    Failed,
}

/// <summary>A validation measurement of one trial: after which epoch, when (seconds since the experiment started), the figures.</summary>
public sealed record TrialPoint(int Epoch, double ExperimentSeconds, double ValidationAccuracy, double ValidationLoss, double TrainLoss);

/// <summary>One trial of an experiment: its settings, how far it trained, its validation figures, time, errors.</summary>
public sealed class ExperimentTrial
{
    internal ExperimentTrial(int id, TrialSettings settings, int seed, string backend)
    {
        Id = id; Settings = settings; Seed = seed; Backend = backend;
    }

    /// <summary>The trial's number, from 1, in the order trials were started.</summary>
    public int Id { get; }
    /// <summary>The settings.</summary>
    public TrialSettings Settings { get; }
    /// <summary>The trainer seed (weights, shuffling, augmentation), derived from the experiment's seed and the trial number.</summary>
    public int Seed { get; }
    /// <summary>The backend the trial ran on.</summary>
    public string Backend { get; }
    /// <summary>Where the trial stands.</summary>
    public TrialStatus Status { get; internal set; } = TrialStatus.Running;
    /// <summary>The highest successive-halving rung (from 0) the trial was run to.</summary>
    public int Rung { get; internal set; }
    /// <summary>Epochs trained.</summary>
    public int Epochs => Points.Count;
    /// <summary>One point per epoch trained.</summary>
    public IReadOnlyList<TrialPoint> Points => _points;
    internal readonly List<TrialPoint> _points = [];
    /// <summary>Validation accuracy after the last epoch (the weights the trial holds); NaN before its first epoch.</summary>
    public double ValidationAccuracy => _points.Count == 0 ? double.NaN : _points[^1].ValidationAccuracy;
    /// <summary>Validation loss after the last epoch; NaN before its first epoch.</summary>
    public double ValidationLoss => _points.Count == 0 ? double.NaN : _points[^1].ValidationLoss;
    /// <summary>Training seconds spent on this trial, all rungs together.</summary>
    public double Seconds { get; internal set; }
    /// <summary>Seconds after the experiment's start when the trial was first started.</summary>
    public double StartedAt { get; internal set; }
    /// <summary>Why the trial failed (the exception's message); null otherwise.</summary>
    public string? Error { get; internal set; }
    /// <summary>The parameter count of the network.</summary>
    public long Parameters { get; internal set; }
    /// <summary>True when the trial has a validation accuracy and did not fail: it can be the best.</summary>
    public bool HasScore => Status != TrialStatus.Failed && _points.Count > 0 && !double.IsNaN(ValidationAccuracy);
}
