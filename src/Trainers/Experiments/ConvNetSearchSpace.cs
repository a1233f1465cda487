using MLNet.ConvNet.Backends;
using MLNet.ConvNet.Layers;
using MLNet.ConvNet.Optimizers;

namespace MLNet.ConvNet.Trainers;

/// <summary>The learning-rate schedules an experiment can try (each spans the experiment's <see cref="ConvNetExperiment.Options.MaxEpochs"/>).</summary>
public enum ExperimentSchedule
{
    /// <summary>A constant rate.</summary>
    Constant,
    /// <summary>Cosine decay from the base rate to 0 over MaxEpochs.</summary>
    Cosine,
    /// <summary>One epoch of linear warm-up from a tenth of the rate, then cosine decay over MaxEpochs.</summary>
    WarmupCosine,
}

/// <summary>A range of numbers to draw from: uniformly, or log-uniformly when <see cref="Log"/> is true (learning rates).</summary>
/// <param name="Min">The smallest value.</param>
/// <param name="Max">The largest value (equal to Min for a fixed value).</param>
/// <param name="Log">True: draw uniformly in log(value).</param>
public sealed record SearchRange(double Min, double Max, bool Log = true)
{
    /// <summary>A value at <paramref name="u"/> in [0, 1) of the range.</summary>
    public double At(double u) => Log ? Math.Exp(Math.Log(Min) + u * (Math.Log(Max) - Math.Log(Min))) : Min + u * (Max - Min);

    /// <summary>Text such as "[0.0003, 0.003] log".</summary>
    public override string ToString() => $"[{Min:G4}, {Max:G4}]" + (Log ? " log" : "");
}

/// <summary>
/// The choices an experiment draws each trial's settings from. Every list must hold at least one value; a list of one
/// value fixes that setting. Networks are the presets named in <see cref="Architectures"/> (<see cref="Presets.Names"/>)
/// and, for the name "convnet", a family built from <see cref="Depths"/>, <see cref="Widths"/>, <see cref="BatchNorm"/>
/// and <see cref="Dropouts"/> (see <see cref="BuildConvNet"/>). The presets are fixed networks: those four lists do not
/// change them.
/// </summary>
public sealed class ConvNetSearchSpace
{
    /// <summary>The name of the built family of networks in <see cref="Architectures"/>.</summary>
    public const string ConvNetFamily = "convnet";

    /// <summary>Architectures = [lenet5, cnn2bn, convnet]: preset names (<see cref="Presets.Names"/>) and/or "convnet".</summary>
    public IList<string> Architectures { get; set; } = ["lenet5", "cnn2bn", ConvNetFamily];

    /// <summary>Depths = [2, 3]: convolution blocks of the "convnet" family (each halves the image size).</summary>
    public IList<int> Depths { get; set; } = [2, 3];

    /// <summary>Widths = [16, 32]: channels of the first "convnet" block (doubling per block).</summary>
    public IList<int> Widths { get; set; } = [16, 32];

    /// <summary>BatchNorm = [true, false]: batch normalization after each convolution of the "convnet" family.</summary>
    public IList<bool> BatchNorm { get; set; } = [true, false];

    /// <summary>Dropouts = [0, 0.25]: dropout before the last layer of the "convnet" family, in [0, 1).</summary>
    public IList<double> Dropouts { get; set; } = [0, 0.25];

    /// <summary>Optimizers = [Adam, AdamW, Sgd] (SGD with Nesterov momentum 0.9).</summary>
    public IList<ConvNetOptimizer> Optimizers { get; set; } = [ConvNetOptimizer.Adam, ConvNetOptimizer.AdamW, ConvNetOptimizer.Sgd];

    /// <summary>AdaptiveLearningRate = [3e-4, 3e-3] log: the learning rate of Adam and AdamW.</summary>
    public SearchRange AdaptiveLearningRate { get; set; } = new(3e-4, 3e-3);

    /// <summary>SgdLearningRate = [0.01, 0.2] log: the learning rate of SGD.</summary>
    public SearchRange SgdLearningRate { get; set; } = new(0.01, 0.2);

    /// <summary>Schedules = [Constant, Cosine, WarmupCosine].</summary>
    public IList<ExperimentSchedule> Schedules { get; set; } = [ExperimentSchedule.Constant, ExperimentSchedule.Cosine, ExperimentSchedule.WarmupCosine];

    /// <summary>BatchSizes = [32, 64, 128].</summary>
    public IList<int> BatchSizes { get; set; } = [32, 64, 128];

    /// <summary>LabelSmoothing = [0, 0.1]: each in [0, 1).</summary>
    public IList<double> LabelSmoothing { get; set; } = [0, 0.1];

    /// <summary>HorizontalFlips = [false, true]: random left-right mirroring of training images.</summary>
    public IList<bool> HorizontalFlips { get; set; } = [false, true];

    /// <summary>CropPaddings = [0, 2]: random shifts of up to this many pixels (pad and crop); 0 is none.</summary>
    public IList<int> CropPaddings { get; set; } = [0, 2];

    /// <summary>
    /// StartFromRecipes = true: the first trials are the presets of <see cref="Architectures"/> with the recipe tuned by
    /// hand for them (docs/mlnet-trainer.md: Adam at 1e-3, cosine decay, label smoothing 0.1, batch 64, no augmentation),
    /// one per preset in the order of Architectures, each only when every one of those values is in this space; then
    /// the random draws. A known-good point in the first rung means the search ranks what it finds against it.
    /// </summary>
    public bool StartFromRecipes { get; set; } = true;

    /// <summary>Throws an <see cref="ArgumentException"/> naming the first empty list or value out of range.</summary>
    public void Validate()
    {
        static void NotEmpty<T>(IList<T>? list, string name)
        {
            if (list is null || list.Count == 0)
                throw new ArgumentException($"ConvNetExperiment option SearchSpace.{name} is empty: give it at least one value.", $"SearchSpace.{name}");
        }
        static void Require(bool ok, string name, object? value, string rule)
        {
            if (!ok) throw new ArgumentOutOfRangeException($"SearchSpace.{name}", value, $"ConvNetExperiment option SearchSpace.{name} holds {value}: {rule}");
        }
        NotEmpty(Architectures, nameof(Architectures));
        foreach (var a in Architectures)
            Require(a == ConvNetFamily || Presets.Names.Contains(a), nameof(Architectures), a, $"choose from {string.Join(", ", Presets.Names)}, {ConvNetFamily}.");
        if (Architectures.Contains(ConvNetFamily))
        {
            NotEmpty(Depths, nameof(Depths)); NotEmpty(Widths, nameof(Widths)); NotEmpty(BatchNorm, nameof(BatchNorm)); NotEmpty(Dropouts, nameof(Dropouts));
            foreach (var d in Depths) Require(d >= 1, nameof(Depths), d, "must be >= 1.");
            foreach (var w in Widths) Require(w >= 1, nameof(Widths), w, "must be >= 1.");
            foreach (var p in Dropouts) Require(p >= 0 && p < 1, nameof(Dropouts), p, "must be in [0, 1).");
        }
        NotEmpty(Optimizers, nameof(Optimizers));
        foreach (var o in Optimizers) Require(Enum.IsDefined(o), nameof(Optimizers), o, "unknown optimizer.");
        if (Optimizers.Any(o => o != ConvNetOptimizer.Sgd)) CheckRange(AdaptiveLearningRate, nameof(AdaptiveLearningRate));
        if (Optimizers.Contains(ConvNetOptimizer.Sgd)) CheckRange(SgdLearningRate, nameof(SgdLearningRate));
        NotEmpty(Schedules, nameof(Schedules));
        foreach (var s in Schedules) Require(Enum.IsDefined(s), nameof(Schedules), s, "unknown schedule.");
        NotEmpty(BatchSizes, nameof(BatchSizes));
        foreach (var b in BatchSizes) Require(b >= 1, nameof(BatchSizes), b, "must be >= 1.");
        NotEmpty(LabelSmoothing, nameof(LabelSmoothing));
        foreach (var e in LabelSmoothing) Require(e >= 0 && (float)e < 1, nameof(LabelSmoothing), e, "must be in [0, 1).");
        NotEmpty(HorizontalFlips, nameof(HorizontalFlips));
        NotEmpty(CropPaddings, nameof(CropPaddings));
        foreach (var p in CropPaddings) Require(p >= 0, nameof(CropPaddings), p, "must be >= 0.");
    }

    private static void CheckRange(SearchRange? range, string name)
    {
        if (range is null || !(range.Min > 0) || !(range.Max >= range.Min) || !double.IsFinite(range.Max))
            throw new ArgumentOutOfRangeException($"SearchSpace.{name}", range, $"ConvNetExperiment option SearchSpace.{name} = {range?.ToString() ?? "null"}: needs 0 < Min <= Max, finite.");
    }

    /// <summary>
    /// The "convnet" family: per block i (from 0) conv3x3 of <c>width * 2^i</c> channels (padding 1; no bias when batch
    /// norm follows), batch norm when asked, relu, maxpool 2; then flatten, dense 128, relu, dropout when &gt; 0, and
    /// dense <paramref name="classes"/>. Each block halves the spatial size (rounding down), so 28x28 takes at most 4 blocks.
    /// </summary>
    public static Network BuildConvNet(int depth, int width, bool batchNorm, double dropout, int classes, IBackend? backend = null)
    {
        var layers = new List<Layer>();
        for (int i = 0; i < depth; i++)
        {
            layers.Add(new Conv(width << i, 3, Conv.DefaultOptions with { Padding = 1 }, bias: !batchNorm));
            if (batchNorm) layers.Add(new BatchNorm());
            layers.Add(Activation.Relu());
            layers.Add(new Pool());
        }
        layers.AddRange([new Flatten(), new Dense(128), Activation.Relu()]);
        if (dropout > 0) layers.Add(new Dropout((float)dropout));
        layers.Add(new Dense(classes));
        return new Network(layers, backend);
    }
}
