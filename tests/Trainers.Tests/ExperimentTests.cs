using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ConvNet.Data;
using MLNet.ConvNet.Optimizers;
using MLNet.ConvNet.Training;
using Xunit;

namespace MLNet.ConvNet.Trainers.Tests;

/// <summary>ConvNetExperiment on 600 Fashion-MNIST images with a small space of tiny networks (each trial well under a second).</summary>
public sealed class ExperimentTests
{
    private readonly MLContext _ml = new(seed: 1);

    /// <summary>One or two conv blocks of 4 or 8 channels, two optimizers, two batch sizes; rungs of 1 and 3 epochs.</summary>
    private static ConvNetExperiment.Options Small(int seed = 5, int? maxTrials = 5) => new()
    {
        Seed = seed, MaxTrials = maxTrials, MinEpochs = 1, MaxEpochs = 3, ReductionFactor = 3, ValidationFraction = 0.2,
        Backend = ConvNetBackend.Cpu,
        SearchSpace = new ConvNetSearchSpace
        {
            Architectures = [ConvNetSearchSpace.ConvNetFamily], Depths = [1, 2], Widths = [4, 8], BatchNorm = [true, false], Dropouts = [0, 0.2],
            Optimizers = [ConvNetOptimizer.Adam, ConvNetOptimizer.Sgd], AdaptiveLearningRate = new(1e-3, 3e-3), SgdLearningRate = new(0.02, 0.1),
            BatchSizes = [50, 100], LabelSmoothing = [0, 0.1], HorizontalFlips = [false, true], CropPaddings = [0, 1],
        },
    };

    private IDataView Data(int count = 600) => Tiny.Data(_ml, count);

    private static string Describe(ConvNetExperimentResult r) => string.Join("\n", r.Trials.Select(t =>
        $"{t.Id} {t.Settings} seed={t.Seed} epochs={t.Epochs} rung={t.Rung} {t.Status} acc={t.ValidationAccuracy:R} loss={t.ValidationLoss:R}"));

    [Fact]
    public void Same_seed_gives_the_same_trials_in_the_same_order_and_another_seed_other_trials()
    {
        var order1 = new List<(int, int)>();
        var o1 = Small(); o1.OnTrial = t => order1.Add((t.Id, t.Epochs));
        var first = new ConvNetExperiment(o1).Execute(Data(), TestContext.Current.CancellationToken);
        var order2 = new List<(int, int)>();
        var o2 = Small(); o2.OnTrial = t => order2.Add((t.Id, t.Epochs));
        var second = new ConvNetExperiment(o2).Execute(Data(), TestContext.Current.CancellationToken);
        var other = new ConvNetExperiment(Small(seed: 6)).Execute(Data(), TestContext.Current.CancellationToken);

        Assert.Equal(5, first.Trials.Count);
        Assert.Equal(Describe(first), Describe(second)); // settings, seeds, epochs, rungs and validation figures
        Assert.Equal(order1, order2);                     // the same rungs run in the same order
        Assert.Contains(order1, o => o.Item2 == 3);       // successive halving promoted someone to the 3-epoch rung
        Assert.NotEqual(first.Trials.Select(t => t.Settings), other.Trials.Select(t => t.Settings));
        Assert.All(first.Trials, t => Assert.Equal("cpu", t.Backend));
    }

    [Fact]
    public void Promotions_follow_successive_halving()
    {
        var result = new ConvNetExperiment(Small(maxTrials: 6)).Execute(Data(), TestContext.Current.CancellationToken);
        // Rungs 1 and 3: of the 6 trials that finished rung 0, the top floor(6 / 3) = 2 by validation accuracy went on.
        Assert.Equal([1, 3], result.RungEpochs);
        var atRung0 = result.Trials.Select(t => (t, acc: t.Points[0].ValidationAccuracy)).OrderByDescending(p => p.acc).ThenBy(p => p.t.Id).ToList();
        var promoted = result.Trials.Where(t => t.Epochs == 3).Select(t => t.Id).Order().ToArray();
        Assert.Equal(atRung0.Take(2).Select(p => p.t.Id).Order().ToArray(), promoted);
        Assert.All(result.Trials, t => Assert.Equal(t.Epochs == 3 ? 1 : 0, t.Rung));
    }

    [Fact]
    public void The_best_model_holds_the_best_trials_weights_and_saves_and_loads()
    {
        var data = Data();
        var result = new ConvNetExperiment(Small()).Execute(data, TestContext.Current.CancellationToken);
        var best = result.BestTrial!;
        Assert.Equal(result.Trials.Where(t => t.HasScore).Max(t => t.ValidationAccuracy), best.ValidationAccuracy);

        // The holdout rebuilt independently: the model's accuracy there is the trial's validation accuracy.
        var (_, _, holdout) = ReadAndSplit(data, 0.2, ConvNetExperiment.HoldoutSeed(5));
        Assert.Equal(120, holdout.Count);
        Assert.Equal(result.Model!.Network.ParameterCount, best.Parameters);
        Assert.Equal(best.ValidationAccuracy, Trainer.Evaluate(result.Model!.Network, holdout, cancellation: TestContext.Current.CancellationToken).Accuracy);

        // Saved and loaded like the trainer's model: the same scores to float rounding.
        string dir = Tiny.TempDirectory();
        try
        {
            string path = Path.Combine(dir, "best.zip");
            _ml.Model.Save(result.Model, data.Schema, path);
            var loaded = new MLContext(seed: 1).Model.Load(path, out _);
            var expected = result.Model.Transform(data).GetColumn<float[]>("Score").ToArray();
            var actual = loaded.Transform(data).GetColumn<float[]>("Score").ToArray();
            for (int i = 0; i < expected.Length; i++)
                for (int k = 0; k < 10; k++) Assert.Equal(expected[i][k], actual[i][k], 1e-5);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void A_promoted_trial_ends_with_the_weights_of_one_uninterrupted_run()
    {
        // 3 trials, rungs 1 and 3: the best of rung 0 is promoted and resumed from its checkpoint to epoch 3.
        string dir = Tiny.TempDirectory();
        try
        {
            var options = Small(maxTrials: 3);
            options.WorkingDirectory = dir;
            var experiment = new ConvNetExperiment(options);
            var data = Data();
            var result = experiment.Execute(data, TestContext.Current.CancellationToken);
            var promoted = Assert.Single(result.Trials, t => t.Epochs == 3);
            var resumed = Checkpoint.Load(Path.Combine(dir, $"trial-{promoted.Id}", ConvNetTrainer.Defaults.CheckpointFileName));

            // The same settings trained for 3 epochs in one go, on the same rows.
            var (classes, train, holdout) = ReadAndSplit(data, 0.2, ConvNetExperiment.HoldoutSeed(5));
            var cpu = Backends.BackendFactory.Create(new Backends.BackendOptions { Kind = Backends.BackendKind.Cpu }).Backend;
            var direct = new ConvNetTrainer(experiment.TrainerOptions(promoted.Settings, promoted.Seed, 3))
                .Train(cpu, train, holdout, classes.Count, new Shape(1, 28, 28), data.Schema["Features"]);
            var fromCheckpoint = promoted.Settings.CreateNetwork(classes.Count, cpu).Build(new Shape(1, 28, 28));
            resumed.Restore(fromCheckpoint);
            Assert.Equal(direct.Network.ComputeHash(), fromCheckpoint.ComputeHash());
            Assert.Equal(direct.History.Select(m => m.ValidationAccuracy), promoted.Points.Select(p => p.ValidationAccuracy));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Refit_trains_the_best_settings_on_all_rows_for_its_epochs()
    {
        var options = Small(maxTrials: 3);
        options.RefitOnAllData = true;
        var result = new ConvNetExperiment(options).Execute(Data(), TestContext.Current.CancellationToken);
        Assert.Equal(result.BestTrial!.Epochs, result.Model!.History.Count);
        Assert.All(result.Model.History, m => Assert.False(m.HasValidation));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void The_final_training_trains_the_best_trial_on_all_rows_for_the_epochs_the_budget_holds(bool continues)
    {
        // A 5-minute budget for trials well under a second: the rest of it holds the cap, ReductionFactor x MaxEpochs = 9.
        string dir = Path.Combine(Path.GetTempPath(), $"convnet-final-{Guid.NewGuid():N}");
        try
        {
            var options = Small(maxTrials: 3);
            options.TimeBudget = TimeSpan.FromMinutes(5);
            options.FinalTrainingShare = 0.5;
            options.FinalTrainingContinues = continues;
            options.WorkingDirectory = dir; // kept: the best trial's checkpoint is the final training's starting point
            var data = Data();
            var experiment = new ConvNetExperiment(options);
            var result = experiment.Execute(data, TestContext.Current.CancellationToken);
            var best = result.BestTrial!;
            Assert.Equal(9, result.FinalEpochs);
            Assert.Equal(9, result.Model!.History.Count);
            Assert.All(result.Model.History, m => Assert.False(m.HasValidation));
            Assert.True(result.Elapsed < TimeSpan.FromMinutes(5), $"took {result.Elapsed}");

            // Rebuilt outside the experiment: the best trial's weights read from its checkpoint (continuing) or a fresh
            // network (from scratch), trained directly on all 600 rows for 9 epochs under a cosine over 9: the same weights.
            var (classes, _, _) = ReadAndSplit(data, 0.2, ConvNetExperiment.HoldoutSeed(5));
            var memory = new DataViewReader.Storage(SampleStorage.Memory, long.MaxValue, Path.GetTempPath(), KeepFile: false);
            var (rows, _, _, _) = DataViewReader.Read(data, "Label", "Features", new Shape(1, 28, 28), null, "training", memory, TestContext.Current.CancellationToken);
            var trainerOptions = experiment.TrainerOptions(best.Settings, best.Seed, 9);
            trainerOptions.Schedule = best.Settings.Schedule == ExperimentSchedule.WarmupCosine && !continues
                ? new WarmupSchedule(1, new CosineSchedule(9)) : new CosineSchedule(9);
            var checkpoint = Path.Combine(dir, $"trial-{best.Id}", ConvNetTrainer.Defaults.CheckpointFileName);
            var cpu = Backends.BackendFactory.Create(new Backends.BackendOptions { Kind = Backends.BackendKind.Cpu }).Backend;
            if (continues)
            {
                trainerOptions.PretrainedModel = checkpoint;
                trainerOptions.ReplaceHead = false;
                // The starting point is the trial's last epoch: the checkpoint's network scores the trial's figure on the holdout.
                var (_, _, holdout) = ReadAndSplit(data, 0.2, ConvNetExperiment.HoldoutSeed(5));
                var trialNetwork = best.Settings.CreateNetwork(classes.Count, cpu).Build(new Shape(1, 28, 28));
                Checkpoint.Load(checkpoint).Restore(trialNetwork);
                Assert.Equal(best.ValidationAccuracy, Trainer.Evaluate(trialNetwork, holdout, cancellation: TestContext.Current.CancellationToken).Accuracy);
            }
            var direct = new ConvNetTrainer(trainerOptions).Train(cpu, rows, null, classes.Count, new Shape(1, 28, 28), data.Schema["Features"]);
            Assert.Equal(direct.Network.ComputeHash(), result.Model.Network.ComputeHash());

            // And the other starting point gives other weights: the option is what decided.
            var other = experiment.FinalTrainerOptions(best, 9, continues ? null : checkpoint);
            var otherRun = new ConvNetTrainer(other).Train(cpu, rows, null, classes.Count, new Shape(1, 28, 28), data.Schema["Features"]);
            Assert.NotEqual(otherRun.Network.ComputeHash(), result.Model.Network.ComputeHash());
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }

    [Theory]
    [InlineData(ExperimentSchedule.Constant, true)]
    [InlineData(ExperimentSchedule.Constant, false)]
    [InlineData(ExperimentSchedule.Cosine, false)]
    [InlineData(ExperimentSchedule.WarmupCosine, true)]
    [InlineData(ExperimentSchedule.WarmupCosine, false)]
    public void The_final_schedule_decays_to_zero_whatever_the_trial_used(ExperimentSchedule schedule, bool fromScratch)
    {
        var settings = new TrialSettings { Architecture = "lenet5", Schedule = schedule };
        var final = settings.CreateFinalSchedule(20, fromScratch);
        bool warmup = schedule == ExperimentSchedule.WarmupCosine && fromScratch;
        // Half-cosine over 20 epochs: 1 at the start (after the warm-up), 0.5 at the middle, 0 at the end.
        Assert.Equal(warmup ? 0.1 : 1.0, final.Factor(0), 6);
        Assert.Equal(0.5, final.Factor(10), 6);
        Assert.Equal(0.0, final.Factor(20), 6);
        Assert.True(final.Factor(19) < 0.01);
    }

    [Theory]
    [InlineData(100.0, 10.0, 1, 27, 9)]   // 90 s of the 100 hold 9 epochs of 10 s
    [InlineData(1000.0, 1.0, 3, 27, 27)]  // capped
    [InlineData(25.0, 10.0, 3, 27, 0)]    // 2 epochs fit, fewer than the best trial's 3: none
    [InlineData(5.0, 10.0, 1, 27, 0)]     // not even one
    [InlineData(-3.0, 10.0, 1, 27, 0)]    // the budget is already spent
    public void Final_epochs_are_what_the_rest_of_the_budget_holds(double secondsLeft, double perEpoch, int min, int max, int expected) =>
        Assert.Equal(expected, ConvNetExperiment.FinalEpochs(secondsLeft, perEpoch, min, max));

    [Fact]
    public void The_presets_recipes_come_first_when_the_space_holds_them_then_the_same_draws()
    {
        ConvNetExperiment.Options Options(bool recipes, bool cosine = true)
        {
            var o = Small(maxTrials: 3);
            o.MinEpochs = 1; o.MaxEpochs = 1;
            o.SearchSpace.Architectures = ["lenet5", ConvNetSearchSpace.ConvNetFamily];
            o.SearchSpace.BatchSizes = [64, 100];
            o.SearchSpace.StartFromRecipes = recipes;
            if (!cosine) o.SearchSpace.Schedules = [ExperimentSchedule.Constant, ExperimentSchedule.WarmupCosine];
            return o;
        }
        var with = new ConvNetExperiment(Options(true)).Execute(Data(), TestContext.Current.CancellationToken).Trials;
        var without = new ConvNetExperiment(Options(false)).Execute(Data(), TestContext.Current.CancellationToken).Trials;
        var noCosine = new ConvNetExperiment(Options(true, cosine: false)).Execute(Data(), TestContext.Current.CancellationToken).Trials;

        var recipe = with[0].Settings;
        Assert.Equal(("lenet5", ConvNetOptimizer.Adam, 1e-3, ExperimentSchedule.Cosine, 64, 0.1, false, 0),
            (recipe.Architecture, recipe.Optimizer, recipe.LearningRate, recipe.Schedule, recipe.BatchSize, recipe.LabelSmoothing, recipe.HorizontalFlip, recipe.CropPadding));
        // One preset in the space, so one recipe; trial 2 on is the seed's draw for that trial number, as without recipes.
        Assert.Equal(without.Skip(1).Select(t => t.Settings), with.Skip(1).Select(t => t.Settings));
        Assert.NotEqual(recipe, without[0].Settings);
        // Cosine is not in that space: no recipe, the draws from the first trial on.
        Assert.NotEqual(ExperimentSchedule.Cosine, noCosine[0].Settings.Schedule);
        Assert.All(noCosine, t => Assert.NotEqual(ExperimentSchedule.Cosine, t.Settings.Schedule));
    }

    [Fact]
    public void Cancelling_returns_the_best_so_far()
    {
        using var stop = new CancellationTokenSource();
        var options = Small(maxTrials: null);
        options.TimeBudget = TimeSpan.FromMinutes(5);
        options.OnTrial = t => { if (t.Id == 2) stop.Cancel(); };
        var result = new ConvNetExperiment(options).Execute(Data(), stop.Token);
        Assert.True(result.Cancelled);
        Assert.False(result.BudgetExhausted);
        Assert.Equal(2, result.Trials.Count);
        Assert.Equal(result.Trials.OrderByDescending(t => t.ValidationAccuracy).ThenBy(t => t.Id).First(), result.BestTrial);
        Assert.NotNull(result.Model);
        Assert.Equal(600, result.Model.Transform(Data()).GetColumn<float[]>("Score").Count());
    }

    [Fact]
    public void A_time_budget_stops_the_search_and_cuts_the_running_trial()
    {
        var options = Small(maxTrials: null);
        options.TimeBudget = TimeSpan.FromSeconds(3);
        ExperimentTrial? lastRun = null;
        options.OnTrial = t => lastRun = t;
        var result = new ConvNetExperiment(options).Execute(Data(), TestContext.Current.CancellationToken);
        Assert.True(result.BudgetExhausted);
        Assert.False(result.Cancelled);
        Assert.True(result.Trials.Count >= 1);
        // Only the rung that ran last can have been cut. It need not be the newest trial: a promotion resumes an older one.
        Assert.All(result.Trials.Where(t => t != lastRun), t => Assert.NotEqual(TrialStatus.Stopped, t.Status));
        Assert.NotNull(result.BestTrial);
    }

    [Fact]
    public void A_diverging_trial_is_recorded_with_its_error_and_the_search_goes_on()
    {
        var options = Small(maxTrials: 6);
        options.SearchSpace.SgdLearningRate = new SearchRange(1e12, 1e12); // SGD trials blow up
        options.SearchSpace.BatchNorm = [false];
        var result = new ConvNetExperiment(options).Execute(Data(), TestContext.Current.CancellationToken);
        var failed = result.Trials.Where(t => t.Status == TrialStatus.Failed).ToList();
        Assert.NotEmpty(failed);
        Assert.All(failed, t => Assert.Equal(ConvNetOptimizer.Sgd, t.Settings.Optimizer));
        Assert.All(failed, t => Assert.Contains("NonFiniteLossException", t.Error));
        Assert.Contains(result.Trials, t => t.Status == TrialStatus.Completed);
        Assert.Equal(ConvNetOptimizer.Adam, result.BestTrial!.Settings.Optimizer);
        Assert.Equal(TrialStatus.Failed, result.Leaderboard[^1].Status);
    }

    [Fact]
    public void Leaderboard_files_hold_every_trial()
    {
        var result = new ConvNetExperiment(Small(maxTrials: 4)).Execute(Data(), TestContext.Current.CancellationToken);
        string dir = Tiny.TempDirectory();
        try
        {
            result.SaveCsv(Path.Combine(dir, "l.csv"));
            result.SaveJson(Path.Combine(dir, "l.json"));
            ExperimentPlot.SavePng(result, Path.Combine(dir, "l.png"));
            var csv = File.ReadAllLines(Path.Combine(dir, "l.csv"));
            Assert.Equal(5, csv.Length);
            Assert.StartsWith("rank,trial,status,network,optimizer,learning_rate", csv[0]);
            Assert.StartsWith($"1,{result.BestTrial!.Id},", csv[1]);
            using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "l.json")));
            var trials = json.RootElement.GetProperty("trials");
            Assert.Equal(4, trials.GetArrayLength());
            Assert.Equal(result.BestTrial.Id, json.RootElement.GetProperty("bestTrial").GetInt32());
            Assert.Equal(result.BestTrial.Epochs, trials[0].GetProperty("points").GetArrayLength());
            Assert.Equal(result.BestTrial.Settings.LearningRate, trials[0].GetProperty("settings").GetProperty("learningRate").GetDouble());
            Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], File.ReadAllBytes(Path.Combine(dir, "l.png")).Take(4));
            var table = result.ToTable().Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(2 + 4, table.Length);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Theory]
    [InlineData("Architectures")]
    [InlineData("Optimizers")]
    [InlineData("BatchSizes")]
    [InlineData("Schedules")]
    [InlineData("LabelSmoothing")]
    [InlineData("Depths")]
    public void An_empty_search_space_list_is_named(string list)
    {
        var options = Small();
        var space = options.SearchSpace;
        switch (list)
        {
            case "Architectures": space.Architectures = []; break;
            case "Optimizers": space.Optimizers = []; break;
            case "BatchSizes": space.BatchSizes = []; break;
            case "Schedules": space.Schedules = []; break;
            case "LabelSmoothing": space.LabelSmoothing = []; break;
            case "Depths": space.Depths = []; break;
        }
        var e = Assert.ThrowsAny<ArgumentException>(() => new ConvNetExperiment(options));
        Assert.Equal("SearchSpace." + list, e.ParamName);
        Assert.Contains("SearchSpace." + list, e.Message);
    }

    [Fact]
    public void Bad_budgets_and_options_are_named()
    {
        void Expect(string option, Action<ConvNetExperiment.Options> change)
        {
            var options = Small();
            change(options);
            var e = Assert.ThrowsAny<ArgumentException>(() => _ml.MulticlassClassification.ConvNetExperiment(options));
            Assert.Equal(option, e.ParamName);
            Assert.Contains(option, e.Message);
        }
        Expect("TimeBudget", o => o.TimeBudget = TimeSpan.Zero);
        Expect("TimeBudget", o => o.TimeBudget = TimeSpan.FromSeconds(-1));
        Expect("TimeBudget", o => { o.TimeBudget = null; o.MaxTrials = null; });
        Expect("MaxTrials", o => o.MaxTrials = 0);
        Expect("MaxEpochs", o => o.MaxEpochs = 0);
        Expect("ReductionFactor", o => o.ReductionFactor = 1);
        Expect("ValidationFraction", o => o.ValidationFraction = 0);
        Expect("FinalTrainingShare", o => { o.TimeBudget = TimeSpan.FromMinutes(1); o.FinalTrainingShare = 1; });
        Expect("FinalTrainingShare", o => { o.TimeBudget = TimeSpan.FromMinutes(1); o.FinalTrainingShare = -0.1; });
        Expect("FinalTrainingShare", o => o.FinalTrainingShare = 0.4); // Small() has no TimeBudget
        Expect("FinalTrainingShare", o => { o.TimeBudget = TimeSpan.FromMinutes(1); o.FinalTrainingShare = 0.4; o.RefitOnAllData = true; });
        Expect("SearchSpace.Architectures", o => o.SearchSpace.Architectures = ["alexnet"]);
        Expect("SearchSpace.AdaptiveLearningRate", o => o.SearchSpace.AdaptiveLearningRate = new SearchRange(0, 1e-3));
        Expect("SearchSpace.Dropouts", o => o.SearchSpace.Dropouts = [1.5]);
    }

    [Fact]
    public void A_space_whose_networks_cannot_take_the_input_is_an_error_naming_the_option()
    {
        var options = Small();
        options.SearchSpace.Depths = [6]; // 28 -> 14 -> 7 -> 3 -> 1 -> 0: the fifth pooling has nothing left
        var e = Assert.ThrowsAny<ArgumentException>(() => new ConvNetExperiment(options).Execute(Data(), TestContext.Current.CancellationToken));
        Assert.Equal("SearchSpace.Architectures", e.ParamName);
        Assert.Contains("convnet-d6", e.Message);
        Assert.Contains("[1, 28, 28]", e.Message);
    }

    [Fact]
    public void Networks_that_do_not_fit_are_left_out_and_listed()
    {
        var options = Small(maxTrials: 4);
        options.SearchSpace.Depths = [1, 6];
        var result = new ConvNetExperiment(options).Execute(Data(), TestContext.Current.CancellationToken);
        Assert.Contains(result.ExcludedNetworks, x => x.Network.StartsWith("convnet-d6"));
        Assert.DoesNotContain(result.ExcludedNetworks, x => x.Network.StartsWith("convnet-d1"));
        Assert.All(result.Trials, t => Assert.Equal(1, t.Settings.Depth));
    }

    /// <summary>The training rows read into memory and split as the experiment does, independently of it.</summary>
    private static (LabelClasses Classes, IDataset Train, IDataset Holdout) ReadAndSplit(IDataView data, double fraction, ulong seed)
    {
        var memory = new DataViewReader.Storage(SampleStorage.Memory, long.MaxValue, Path.GetTempPath(), KeepFile: false);
        var (all, labels, classes, _) = DataViewReader.Read(data, "Label", "Features", new Shape(1, 28, 28), null, "training", memory, TestContext.Current.CancellationToken);
        var (train, _, holdout) = DataViewReader.Split(all, labels, fraction, seed);
        return (classes, train, holdout);
    }
}
