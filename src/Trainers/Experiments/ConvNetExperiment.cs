using System.Diagnostics;
using MLNet.ConvNet.Backends;
using MLNet.ConvNet.Data;
using MLNet.ConvNet.Layers;
using MLNet.ConvNet.Training;
using Microsoft.ML;

namespace MLNet.ConvNet.Trainers;

/// <summary>
/// An AutoML-style search over convolutional networks and their training settings under a time and/or trial budget;
/// made by <c>mlContext.MulticlassClassification.ConvNetExperiment(options)</c>. <see cref="Execute"/> returns every
/// trial (the leaderboard) and the best model, a <see cref="ConvNetTransformer"/> that saves and loads like the trainer's.
/// </summary>
/// <remarks>
/// <para>Data: the training IDataView is read once into memory (as <see cref="ConvNetTrainer"/> does) and a seeded
/// <see cref="Options.ValidationFraction"/> of it is held out; every trial trains on the rest and is scored on that
/// holdout (validation accuracy). The test set is never seen.</para>
/// <para>Strategy: the presets' hand-tuned recipes first (<see cref="ConvNetSearchSpace.StartFromRecipes"/>), then
/// seeded random search, with asynchronous successive halving (ASHA), run one trial at a time. The
/// rungs are <see cref="Options.MinEpochs"/> x <see cref="Options.ReductionFactor"/>^k epochs up to
/// <see cref="Options.MaxEpochs"/> (1, 3, 9 by default). Each time the machine is free, the experiment promotes a trial
/// that is in the top 1/ReductionFactor of those that finished a rung (the highest rung first) to the next rung,
/// continuing its training from its checkpoint; when there is none, it starts a new trial at rung 0. A trial's
/// settings depend only on the seed and its number, and a trial's run is its training for MaxEpochs cut at the rungs
/// (its schedule spans MaxEpochs), so a promoted trial continues exactly as an uninterrupted run would.</para>
/// <para>Budgets: <see cref="Options.TimeBudget"/> stops the search (the running trial is cut at that moment; its
/// finished epochs count), <see cref="Options.MaxTrials"/> stops starting new trials (promotions still run). The
/// cancellation token stops the search the same way: <see cref="Execute"/> then returns the best so far. Refitting
/// (<see cref="Options.RefitOnAllData"/>) comes after the budget and is not counted in it; the final training
/// (<see cref="Options.FinalTrainingShare"/>) is inside it: the search stops at (1 - share) of the budget, and the best
/// trial goes on training on all the rows (or its settings from scratch) for the epochs the rest holds
/// (<see cref="FinalEpochs"/>), its rate decaying to zero.</para>
/// <para>Failures: a trial whose loss diverges or that throws is recorded (<see cref="TrialStatus.Failed"/> with its
/// error) and the search goes on. Networks of the space that cannot take the data's samples are left out before the
/// search (listed in <see cref="ConvNetExperimentResult.ExcludedNetworks"/>); when none fits, Execute throws naming
/// SearchSpace.Architectures.</para>
/// </remarks>
public sealed partial class ConvNetExperiment
{
    private readonly Options _options;

    /// <summary>An experiment with <paramref name="options"/> (validated here; see <see cref="Options.Validate"/>).</summary>
    public ConvNetExperiment(Options options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
    }

    /// <summary>
    /// Runs the search on <paramref name="trainData"/> (see the class remarks) and returns the trials and the best model.
    /// Cancelling <paramref name="cancellation"/> ends the search early and returns what was found so far.
    /// </summary>
    public ConvNetExperimentResult Execute(IDataView trainData, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(trainData);
        var o = _options;
        var clock = Stopwatch.StartNew();
        ulong seed = unchecked((ulong)o.Seed);
        var (backend, backendReason) = CreateBackend();

        // Read and decode the data once for every trial.
        var label = DataViewReader.LabelColumn(trainData.Schema, o.LabelColumnName);
        var feature = DataViewReader.FeatureColumn(trainData.Schema, o.FeatureColumnName);
        var sampleShape = ConvNetTrainer.SampleShape(feature, o.InputShape, "ConvNetExperiment");
        // In memory: every trial visits the rows many times (a disk cache is the trainer's choice for data larger than memory).
        var memory = new DataViewReader.Storage(SampleStorage.Memory, long.MaxValue, Path.GetTempPath(), KeepFile: false);
        var (all, labels, classes, _) = DataViewReader.Read(trainData, label.Name, feature.Name, sampleShape, null, "training", memory, cancellation);
        var (train, _, validation) = DataViewReader.Split(all, labels, o.ValidationFraction, HoldoutSeed(o.Seed));
        o.Log?.Invoke($"ConvNetExperiment: {train.Count} training and {validation.Count} holdout rows, samples {sampleShape}, {classes.Count} classes; backend '{backend.Name}': {backendReason}.");

        var (networks, excluded, parameterCounts) = NetworksThatFit(backend, sampleShape, classes.Count, feature);
        var recipes = TrialSettings.Recipes(o.SearchSpace, networks);
        int[] rungs = Rungs(o.MinEpochs, o.MaxEpochs, o.ReductionFactor);

        bool ownDirectory = o.WorkingDirectory is null;
        string workDirectory = o.WorkingDirectory ?? Path.Combine(Path.GetTempPath(), $"convnet-experiment-{Guid.NewGuid():N}");
        Directory.CreateDirectory(workDirectory);
        var trials = new List<ExperimentTrial>();
        using var budget = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        var searchStart = clock.Elapsed; // the budget counts from here: reading the data is not in it
        if (o.TimeBudget is { } limit) budget.CancelAfter(limit * (1 - o.FinalTrainingShare));
        try
        {
            while (!budget.IsCancellationRequested)
            {
                var (trial, rung) = NextPromotion(trials, rungs) is { } promoted ? (promoted, promoted.Rung + 1) : (null, 0);
                if (trial is null)
                {
                    if (o.MaxTrials is { } max && trials.Count >= max) break;
                    int id = trials.Count + 1;
                    var settings = id <= recipes.Count ? recipes[id - 1] : TrialSettings.Draw(o.SearchSpace, networks, new Rng(Rng.Mix(seed, (ulong)id)));
                    trial = new ExperimentTrial(id, settings, (int)(Rng.Mix(seed, 0x5452_0000UL + (ulong)id) & 0x7FFF_FFFF), backend.Name)
                    {
                        StartedAt = clock.Elapsed.TotalSeconds, Parameters = parameterCounts[settings.NetworkName],
                    };
                    trials.Add(trial);
                }
                RunRung(trial, rung, rungs, backend, train, validation, classes.Count, sampleShape, feature, workDirectory, clock, budget.Token);
                o.OnTrial?.Invoke(trial);
            }

            var best = trials.Where(t => t.HasScore).OrderByDescending(t => t.ValidationAccuracy).ThenBy(t => t.Id).FirstOrDefault();
            ConvNetTransformer? model = null;
            int? finalEpochs = null;
            if (best is not null)
            {
                o.Log?.Invoke($"ConvNetExperiment: best trial {best.Id} ({best.Settings}), validation accuracy {best.ValidationAccuracy:F4} after {best.Epochs} epochs.");
                if (o.FinalTrainingShare > 0 && !cancellation.IsCancellationRequested)
                {
                    var deadline = searchStart + o.TimeBudget!.Value;
                    (model, finalEpochs) = FinalTraining(best, backend, all, train.Count, classes, sampleShape, feature, label.Name, trainData, workDirectory, deadline, clock, cancellation);
                }
                model ??= o.RefitOnAllData
                    ? Refit(best, backend, all, classes, sampleShape, feature, label.Name, trainData, cancellation)
                    : Reload(best, backend, classes, sampleShape, feature, label.Name, trainData, workDirectory);
            }
            return new ConvNetExperimentResult(trials, best, model, backend.Name, backendReason, clock.Elapsed,
                cancellation.IsCancellationRequested, !cancellation.IsCancellationRequested && budget.IsCancellationRequested,
                excluded, rungs, train.Count, validation.Count, finalEpochs);
        }
        finally
        {
            if (ownDirectory) TryDelete(workDirectory);
        }
    }

    /// <summary>The seed of the holdout split for experiment seed <paramref name="seed"/> (tests rebuild the holdout with it).</summary>
    internal static ulong HoldoutSeed(int seed) => Rng.Mix(unchecked((ulong)seed), 0x484F4C44);

    /// <summary>The rungs' epoch counts: MinEpochs x ReductionFactor^k below MaxEpochs, then MaxEpochs.</summary>
    internal static int[] Rungs(int minEpochs, int maxEpochs, int reductionFactor)
    {
        var rungs = new List<int>();
        for (long e = minEpochs; e < maxEpochs; e *= reductionFactor) rungs.Add((int)e);
        rungs.Add(maxEpochs);
        return rungs.ToArray();
    }

    /// <summary>
    /// ASHA's promotion rule: from the highest rung down, a trial that finished rung k, ranks in the top
    /// floor(n / ReductionFactor) of the n trials that finished rung k, and has not gone further; null when there is none.
    /// </summary>
    private ExperimentTrial? NextPromotion(List<ExperimentTrial> trials, int[] rungs)
    {
        for (int k = rungs.Length - 2; k >= 0; k--)
        {
            int epochs = rungs[k];
            var finished = trials.Where(t => t.Epochs >= epochs).ToList();
            int top = finished.Count / _options.ReductionFactor;
            var promotable = finished
                .OrderByDescending(t => t.Points[epochs - 1].ValidationAccuracy).ThenBy(t => t.Id)
                .Take(top)
                .FirstOrDefault(t => t.Rung == k && t.Status == TrialStatus.Completed);
            if (promotable is not null) return promotable;
        }
        return null;
    }

    /// <summary>
    /// Trains <paramref name="trial"/> up to rung <paramref name="rung"/>'s epochs through the trainer's own code path,
    /// resuming from its checkpoint (from the previous rung). Divergence and other errors mark it failed; the budget's
    /// cancellation marks it stopped.
    /// </summary>
    private void RunRung(ExperimentTrial trial, int rung, int[] rungs, IBackend backend, IDataset train, IDataset validation,
        int classCount, Shape sampleShape, Microsoft.ML.DataViewSchema.Column feature, string workDirectory, Stopwatch clock, CancellationToken token)
    {
        var o = _options;
        var s = trial.Settings;
        var started = Stopwatch.StartNew();
        trial.Status = TrialStatus.Running;
        trial.Rung = rung;
        try
        {
            var options = TrainerOptions(s, trial.Seed, rungs[rung]);
            options.CheckpointDirectory = TrialDirectory(workDirectory, trial);
            options.Resume = true;
            options.CancellationToken = token;
            options.OnEpoch = m => trial._points.Add(new TrialPoint(m.Epoch, clock.Elapsed.TotalSeconds, m.ValidationAccuracy, m.ValidationLoss, m.TrainLoss));
            new ConvNetTrainer(options).Train(backend, train, validation, classCount, sampleShape, feature);
            trial.Status = TrialStatus.Completed;
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            trial.Status = TrialStatus.Stopped;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            trial.Status = TrialStatus.Failed;
            trial.Error = $"{e.GetType().Name}: {e.Message}";
        }
        trial.Seconds += started.Elapsed.TotalSeconds;
        o.Log?.Invoke($"ConvNetExperiment: trial {trial.Id} rung {rung} ({trial.Epochs} epochs, {trial.Settings}): {trial.Status}" +
            (trial.Error is null ? $", validation accuracy {trial.ValidationAccuracy:F4}" : $": {trial.Error}"));
    }

    /// <summary>The trainer options of a trial's settings, trained to <paramref name="epochs"/> of a run planned over MaxEpochs.</summary>
    internal ConvNetTrainer.Options TrainerOptions(TrialSettings s, int seed, int epochs) => new()
    {
        LabelColumnName = _options.LabelColumnName,
        FeatureColumnName = _options.FeatureColumnName,
        InputShape = _options.InputShape,
        NetworkFactory = s.CreateNetwork,
        Epochs = epochs,
        BatchSize = s.BatchSize,
        Optimizer = s.Optimizer,
        LearningRate = s.LearningRate,
        Momentum = 0.9,
        Nesterov = s.Optimizer == ConvNetOptimizer.Sgd,
        Schedule = s.CreateSchedule(_options.MaxEpochs),
        LabelSmoothing = s.LabelSmoothing,
        RandomHorizontalFlip = s.HorizontalFlip,
        RandomCropPadding = s.CropPadding,
        Seed = seed,
    };

    /// <summary>The best trial's network with the weights of its checkpoint (its last epoch: the one it was scored on).</summary>
    private ConvNetTransformer Reload(ExperimentTrial best, IBackend backend, LabelClasses classes, Shape sampleShape,
        Microsoft.ML.DataViewSchema.Column feature, string labelName, IDataView schemaSource, string workDirectory)
    {
        var checkpoint = Checkpoint.Load(TrialCheckpoint(workDirectory, best));
        var network = best.Settings.CreateNetwork(classes.Count, backend).Build(sampleShape, 0);
        checkpoint.Restore(network);
        return new ConvNetTransformer(network, classes, feature.Name, labelName, checkpoint.History.ToArray(), null, false, schemaSource);
    }

    /// <summary>Trains the best trial's settings again from scratch on all the rows (training and holdout) for its epochs.</summary>
    private ConvNetTransformer Refit(ExperimentTrial best, IBackend backend, IDataset all, LabelClasses classes, Shape sampleShape,
        Microsoft.ML.DataViewSchema.Column feature, string labelName, IDataView schemaSource, CancellationToken cancellation)
    {
        _options.Log?.Invoke($"ConvNetExperiment: refitting trial {best.Id} on all {all.Count} rows for {best.Epochs} epochs.");
        var options = TrainerOptions(best.Settings, best.Seed, best.Epochs);
        options.CancellationToken = cancellation;
        var run = new ConvNetTrainer(options).Train(backend, all, null, classes.Count, sampleShape, feature);
        return new ConvNetTransformer(run.Network, classes, feature.Name, labelName, run.History, null, false, schemaSource);
    }

    /// <summary>
    /// The epochs of the final training: as many as <paramref name="secondsLeft"/> holds at <paramref name="secondsPerEpoch"/>
    /// with a tenth kept in reserve, at most <paramref name="maxEpochs"/>; 0 when fewer than <paramref name="minEpochs"/>
    /// fit (the best trial's own model is then as trained as the budget allows).
    /// </summary>
    internal static int FinalEpochs(double secondsLeft, double secondsPerEpoch, int minEpochs, int maxEpochs)
    {
        if (!(secondsPerEpoch > 0) || !(secondsLeft > 0)) return 0;
        int fit = (int)Math.Min(maxEpochs, Math.Floor(0.9 * secondsLeft / secondsPerEpoch));
        return fit >= minEpochs ? fit : 0;
    }

    /// <summary>
    /// The best trial's settings trained on <paramref name="all"/> the rows for the epochs that fit before
    /// <paramref name="deadline"/> (<see cref="FinalEpochs"/>; the speed is the best trial's own, scaled to the larger
    /// data), a cosine decay planned over them (<see cref="TrialSettings.CreateFinalSchedule"/>). With option
    /// FinalTrainingContinues it starts from the best trial's last checkpoint (a new optimizer state; at least one epoch),
    /// else from scratch (at least the trial's own epochs). (null, null) when they do not fit or the deadline cuts the
    /// run: the caller then returns the best trial's own model.
    /// </summary>
    private (ConvNetTransformer?, int?) FinalTraining(ExperimentTrial best, IBackend backend, IDataset all, int trainRows, LabelClasses classes,
        Shape sampleShape, Microsoft.ML.DataViewSchema.Column feature, string labelName, IDataView schemaSource, string workDirectory,
        TimeSpan deadline, Stopwatch clock, CancellationToken cancellation)
    {
        var o = _options;
        bool continues = o.FinalTrainingContinues;
        double perEpoch = best.Seconds / Math.Max(1, best.Epochs) * all.Count / Math.Max(1, trainRows);
        double left = (deadline - clock.Elapsed).TotalSeconds;
        int epochs = FinalEpochs(left, perEpoch, continues ? 1 : best.Epochs, o.ReductionFactor * o.MaxEpochs);
        if (epochs == 0)
        {
            o.Log?.Invoke($"ConvNetExperiment: no final training: {left:F0} s left hold fewer than {(continues ? "one epoch" : $"trial {best.Id}'s {best.Epochs} epochs")} at {perEpoch:F1} s each; returning its model.");
            return (null, null);
        }
        o.Log?.Invoke($"ConvNetExperiment: final training of trial {best.Id}'s settings {(continues ? $"from its weights after {best.Epochs} epochs" : "from scratch")} " +
            $"on all {all.Count} rows for {epochs} epochs, cosine decay ({perEpoch:F1} s each expected, {left:F0} s left).");
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        stop.CancelAfter(TimeSpan.FromSeconds(Math.Max(0, left)));
        var options = FinalTrainerOptions(best, epochs, continues ? TrialCheckpoint(workDirectory, best) : null);
        options.CancellationToken = stop.Token;
        try
        {
            var run = new ConvNetTrainer(options).Train(backend, all, null, classes.Count, sampleShape, feature);
            return (new ConvNetTransformer(run.Network, classes, feature.Name, labelName, run.History, null, false, schemaSource), epochs);
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            o.Log?.Invoke($"ConvNetExperiment: the final training was cut by {(cancellation.IsCancellationRequested ? "cancellation" : "the budget")}; returning trial {best.Id}'s model.");
            return (null, null);
        }
    }

    /// <summary>
    /// The trainer options of the final training: <paramref name="best"/>'s settings for <paramref name="epochs"/>, the
    /// final schedule, starting from the checkpoint <paramref name="startFrom"/> (its head kept) or from scratch (null).
    /// </summary>
    internal ConvNetTrainer.Options FinalTrainerOptions(ExperimentTrial best, int epochs, string? startFrom)
    {
        var options = TrainerOptions(best.Settings, best.Seed, epochs);
        options.Schedule = best.Settings.CreateFinalSchedule(epochs, fromScratch: startFrom is null);
        if (startFrom is not null) { options.PretrainedModel = startFrom; options.ReplaceHead = false; }
        return options;
    }

    /// <summary>The folder of a trial's checkpoints under the working directory.</summary>
    private static string TrialDirectory(string workDirectory, ExperimentTrial trial) => Path.Combine(workDirectory, $"trial-{trial.Id}");

    /// <summary>The checkpoint a trial's training writes after each epoch.</summary>
    private static string TrialCheckpoint(string workDirectory, ExperimentTrial trial) =>
        Path.Combine(TrialDirectory(workDirectory, trial), ConvNetTrainer.Defaults.CheckpointFileName);

    /// <summary>
    /// The space's networks that can take the samples (each built once to check), those left out with the reason, and
    /// the parameter count of each that fits. Throws naming SearchSpace.Architectures when none fits.
    /// </summary>
    private (List<TrialSettings> Fit, List<(string Network, string Reason)> Excluded, Dictionary<string, long> Parameters) NetworksThatFit(IBackend backend, Shape sampleShape, int classes,
        Microsoft.ML.DataViewSchema.Column feature)
    {
        var fit = new List<TrialSettings>();
        var excluded = new List<(string, string)>();
        var parameters = new Dictionary<string, long>();
        foreach (var n in TrialSettings.Networks(_options.SearchSpace))
        {
            try { parameters[n.NetworkName] = n.CreateNetwork(classes, backend).Build(sampleShape, 0).ParameterCount; fit.Add(n); }
            catch (ArgumentException e) { excluded.Add((n.NetworkName, e.Message)); }
        }
        foreach (var (name, reason) in excluded) _options.Log?.Invoke($"ConvNetExperiment: network {name} left out: {reason}");
        if (fit.Count == 0)
            throw new ArgumentException($"ConvNetExperiment option SearchSpace.Architectures: no network of the search space can take the samples {sampleShape} of " +
                $"feature column '{feature.Name}' ({feature.Type}): " + string.Join("; ", excluded.Select(e => $"{e.Item1}: {e.Item2}")), "SearchSpace.Architectures");
        return (fit, excluded, parameters);
    }

    private (IBackend Backend, string Reason) CreateBackend()
    {
        var o = _options;
        if (o.CustomBackend is { } custom) return (custom, "option CustomBackend");
        var choice = BackendFactory.Create(new ConvNetTrainer.Options { Backend = o.Backend, DeviceIndex = o.DeviceIndex, MaxThreads = o.MaxThreads, AllowTf32 = o.AllowTf32 }.ToBackendOptions());
        return (choice.Backend, $"option Backend = {o.Backend}: {choice.Reason}");
    }

    private static void TryDelete(string directory)
    {
        try { Directory.Delete(directory, recursive: true); }
        catch (IOException) { } // a temporary folder left behind is not worth failing the experiment for
        catch (UnauthorizedAccessException) { }
    }
}
