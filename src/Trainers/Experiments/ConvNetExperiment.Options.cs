using MLNet.ConvNet.Backends;

namespace MLNet.ConvNet.Trainers;

public sealed partial class ConvNetExperiment
{
    /// <summary>
    /// Options of <see cref="ConvNetExperiment"/>; each summary states the default. Set <see cref="TimeBudget"/>,
    /// <see cref="MaxTrials"/> or both. <see cref="Validate"/> (run by the constructor) throws an
    /// <see cref="ArgumentException"/> naming the option at fault.
    /// </summary>
    public sealed class Options
    {
        /// <summary>LabelColumnName = "Label": a key or a number holding class indices.</summary>
        public string LabelColumnName { get; set; } = ConvNetTrainer.Defaults.LabelColumnName;

        /// <summary>FeatureColumnName = "Features": a known-size vector of Single (<c>[C, H, W]</c>, or flat with <see cref="InputShape"/>).</summary>
        public string FeatureColumnName { get; set; } = ConvNetTrainer.Defaults.FeatureColumnName;

        /// <summary>InputShape = null: the sample shape for a flat feature vector, e.g. <c>[1, 28, 28]</c>.</summary>
        public int[]? InputShape { get; set; }

        /// <summary>SearchSpace = the defaults of <see cref="ConvNetSearchSpace"/>: the networks and training settings to draw from.</summary>
        public ConvNetSearchSpace SearchSpace { get; set; } = new();

        /// <summary>TimeBudget = null: wall-clock time for the search (not counting reading the data and the refit); the running trial is cut when it runs out.</summary>
        public TimeSpan? TimeBudget { get; set; }

        /// <summary>MaxTrials = null: the most trials started (promotions of started trials still run when it is reached).</summary>
        public int? MaxTrials { get; set; }

        /// <summary>MinEpochs = 1: epochs of the first successive-halving rung.</summary>
        public int MinEpochs { get; set; } = 1;

        /// <summary>MaxEpochs = 9: epochs of the last rung, and the length every schedule is planned over.</summary>
        public int MaxEpochs { get; set; } = 9;

        /// <summary>ReductionFactor = 3: each rung has this many times the epochs of the one before, and promotes the top 1/ReductionFactor.</summary>
        public int ReductionFactor { get; set; } = 3;

        /// <summary>ValidationFraction = 0.1: the fraction in (0, 1) of the training rows held out (seeded) to score the trials.</summary>
        public double ValidationFraction { get; set; } = 0.1;

        /// <summary>Seed = 0: seeds the holdout, every trial's settings and each trial's training. Same seed, data and options: the same trials in the same order.</summary>
        public int Seed { get; set; }

        /// <summary>RefitOnAllData = false: train the best trial's settings again on all the rows (holdout included) for its epochs, after the search (outside the budget).</summary>
        public bool RefitOnAllData { get; set; }

        /// <summary>
        /// FinalTrainingShare = 0: with <see cref="TimeBudget"/>, the share in [0, 1) of it kept from the search for a final
        /// training inside the budget: the best trial's settings trained on all the rows (holdout included)
        /// for as many epochs as the rest of the budget holds at the best trial's measured speed (at most ReductionFactor x
        /// MaxEpochs), a cosine decay planned over them, starting from the best trial's weights
        /// (<see cref="FinalTrainingContinues"/>). 0: no final training; the best trial's own model is returned (or
        /// refitted, with <see cref="RefitOnAllData"/>). 0.5 is a reasonable value.
        /// </summary>
        public double FinalTrainingShare { get; set; }

        /// <summary>
        /// FinalTrainingContinues = true: the final training (<see cref="FinalTrainingShare"/>) starts from the best
        /// trial's weights (its last epoch) instead of from scratch, so the epochs the search spent on it are kept; the
        /// optimizer starts afresh and the rate decays by a cosine over the final epochs (at least one). False: from
        /// scratch, for at least the best trial's own epochs.
        /// </summary>
        public bool FinalTrainingContinues { get; set; } = true;

        /// <summary>OnTrial = null: called after each rung a trial runs (also when it fails or is stopped); the trial's figures are up to date.</summary>
        public Action<ExperimentTrial>? OnTrial { get; set; }

        /// <summary>Log = null: a line per notable event (data, backend, each rung's outcome, the best trial).</summary>
        public Action<string>? Log { get; set; }

        /// <summary>WorkingDirectory = null: where the trials' checkpoints go (null: a temporary folder, deleted at the end; a given folder is kept).</summary>
        public string? WorkingDirectory { get; set; }

        /// <summary>Backend = Auto: where every trial runs (see <see cref="ConvNetBackend"/>); chosen once for the experiment.</summary>
        public ConvNetBackend Backend { get; set; }

        /// <summary>DeviceIndex = 0: the CUDA device. Ignored by the CPU.</summary>
        public int DeviceIndex { get; set; }

        /// <summary>AllowTf32 = false: TF32 tensor cores on CUDA. Ignored by the CPU.</summary>
        public bool AllowTf32 { get; set; }

        /// <summary>MaxThreads = null (all cores): threads of the CPU backend.</summary>
        public int? MaxThreads { get; set; }

        /// <summary>CustomBackend = null: a backend instance to run on instead of the one <see cref="Backend"/> would choose (tests, tracing).</summary>
        public IBackend? CustomBackend { get; set; }

        /// <summary>Throws an <see cref="ArgumentException"/> (or subclass) naming the first option out of range.</summary>
        public void Validate()
        {
            static void Require(bool ok, string option, object? value, string rule)
            {
                if (!ok) throw new ArgumentOutOfRangeException(option, value, $"ConvNetExperiment option {option} = {value ?? "null"}: {rule}");
            }
            Require(!string.IsNullOrEmpty(LabelColumnName), nameof(LabelColumnName), LabelColumnName, "give the label column's name.");
            Require(!string.IsNullOrEmpty(FeatureColumnName), nameof(FeatureColumnName), FeatureColumnName, "give the feature column's name.");
            Require(InputShape is null || (InputShape.Length > 0 && InputShape.All(d => d > 0)), nameof(InputShape),
                InputShape is null ? null : "[" + string.Join(", ", InputShape) + "]", "every dimension must be > 0.");
            Require(SearchSpace is not null, nameof(SearchSpace), SearchSpace, "give a search space.");
            SearchSpace!.Validate();
            Require(TimeBudget is not null || MaxTrials is not null, nameof(TimeBudget), TimeBudget, "set TimeBudget, MaxTrials or both: the search needs a budget.");
            Require(TimeBudget is null || TimeBudget > TimeSpan.Zero, nameof(TimeBudget), TimeBudget, "must be > 0.");
            Require(MaxTrials is null || MaxTrials >= 1, nameof(MaxTrials), MaxTrials, "must be >= 1.");
            Require(MinEpochs >= 1, nameof(MinEpochs), MinEpochs, "must be >= 1.");
            Require(MaxEpochs >= MinEpochs, nameof(MaxEpochs), MaxEpochs, $"must be >= MinEpochs ({MinEpochs}).");
            Require(ReductionFactor >= 2, nameof(ReductionFactor), ReductionFactor, "must be >= 2.");
            Require(FinalTrainingShare >= 0 && FinalTrainingShare < 1, nameof(FinalTrainingShare), FinalTrainingShare, "must be in [0, 1): the share of TimeBudget kept for the final training.");
            Require(FinalTrainingShare == 0 || TimeBudget is not null, nameof(FinalTrainingShare), FinalTrainingShare, "a final training inside the budget needs TimeBudget.");
            Require(FinalTrainingShare == 0 || !RefitOnAllData, nameof(FinalTrainingShare), FinalTrainingShare, "the final training already trains on all the rows: set it or RefitOnAllData, not both.");
            Require(ValidationFraction > 0 && ValidationFraction < 1, nameof(ValidationFraction), ValidationFraction, "must be in (0, 1): the trials are scored on the holdout.");
            Require(Enum.IsDefined(Backend), nameof(Backend), Backend, "unknown backend.");
            Require(DeviceIndex >= 0, nameof(DeviceIndex), DeviceIndex, "must be >= 0.");
            Require(MaxThreads is null || MaxThreads >= 1, nameof(MaxThreads), MaxThreads, "must be >= 1.");
        }
    }
}
