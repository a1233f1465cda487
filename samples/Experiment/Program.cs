// An AutoML-style experiment over convnets on Fashion-MNIST, then CNN features for ML.NET's SDCA.
//
//   dotnet run -c Release --project samples/Experiment -- --minutes 10 --out experiment-output
//   dotnet run -c Release --project samples/Experiment -- --hand cnn2bn --minutes 10     (the hand-tuned baseline)
//
// Experiment mode: ConvNetExperiment with the default search space under a --minutes budget (or --trials N) on the
// training images (10% held out to score the trials), then the best model on the 10,000 test images; writes
// leaderboard.csv, leaderboard.json, leaderboard.txt, leaderboard.png and model.zip to --out. Then the featurizer:
// the best network's penultimate layer as a column, SDCA (maximum entropy) trained on it, evaluated on the test
// images, saved, reloaded and evaluated again; the same with LightGbm.
// Hand mode: the preset with the hand-tuned recipe of docs/mlnet-trainer.md (Adam 1e-3, cosine over --epochs 10,
// label smoothing 0.1), on all training images, cut at --minutes (the last finished epoch's weights), then tested.
// Options: --data DIR  --seed 1  --limit N (training images)  --max-epochs 9  --final-share 0.5  --threads N  --backend auto|cpu|cuda
using System.Diagnostics;
using Microsoft.ML;
using MLNet.ConvNet;
using MLNet.ConvNet.Data;
using MLNet.ConvNet.Layers;
using MLNet.ConvNet.Trainers;
using MLNet.ConvNet.Training;

var opt = CommandLineArgs.Parse(args);
int seed = opt.Int("seed", 1);
string outDir = opt.Str("out", "experiment-output");
Directory.CreateDirectory(outDir);
string dataDir = FashionMnist.FindDirectory(opt.StrOrNull("data"));
var trainSet = FashionMnist.LoadTrain(dataDir, opt.Has("limit") ? opt.Int("limit", 0) : null);
var testSet = FashionMnist.LoadTest(dataDir);
var ml = new MLContext(seed);
var labelToKey = ml.Transforms.Conversion.MapValueToKey("Label", keyData: ml.Data.LoadFromEnumerable(FashionMnist.ClassNames.Select(n => new ClassName { Label = n })));
IDataView ToView(InMemoryDataset d)
{
    var view = ml.Data.LoadFromEnumerable(ImageRow.From(d));
    return labelToKey.Fit(view).Transform(view);
}
var train = ToView(trainSet);
var test = ToView(testSet);
var backend = Enum.Parse<ConvNetBackend>(opt.Str("backend", "auto"), ignoreCase: true);
int? threads = opt.Has("threads") ? opt.Int("threads", 0) : null;
TimeSpan? budget = opt.Has("minutes") ? TimeSpan.FromMinutes(opt.Double("minutes", 10)) : null;
Console.WriteLine($"Fashion-MNIST from {dataDir}: {trainSet.Count:N0} training and {testSet.Count:N0} test images; {Environment.ProcessorCount} cores");

if (opt.Has("hand"))
{
    // The hand-tuned recipe, cut at the budget: the trainer checkpoints every epoch, and cancelling keeps the last one.
    string preset = opt.Str("hand", "cnn2bn");
    int epochs = opt.Int("epochs", 10);
    string checkpoints = Path.Combine(outDir, "hand-checkpoints");
    using var cut = new CancellationTokenSource();
    if (budget is { } b) cut.CancelAfter(b);
    var options = new ConvNetTrainer.Options
    {
        Network = preset, Epochs = epochs, Seed = seed, Backend = backend, MaxThreads = threads, LearningRate = 1e-3,
        Schedule = new MLNet.ConvNet.Optimizers.CosineSchedule(epochs), LabelSmoothing = 0.1,
        CheckpointDirectory = checkpoints, CancellationToken = cut.Token,
        OnEpoch = m => Console.WriteLine($"  epoch {m.Epoch}: train loss {m.TrainLoss:F4}, {m.Seconds:F1} s"),
    };
    var clock = Stopwatch.StartNew();
    Network network;
    IDataView scored;
    try
    {
        var model = ml.MulticlassClassification.Trainers.ConvNet(options).Fit(train);
        scored = model.Transform(test);
        network = model.Network;
    }
    catch (OperationCanceledException)
    {
        // Cut by the budget: score the last finished epoch's weights with the engine (Trainer.Evaluate).
        var checkpoint = Checkpoint.Load(Path.Combine(checkpoints, ConvNetTrainer.Defaults.CheckpointFileName));
        network = Presets.ByName(preset, 10).Build(new Shape(1, 28, 28));
        checkpoint.Restore(network);
        var evaluation = Trainer.Evaluate(network, testSet);
        Console.WriteLine($"hand {preset}: budget reached after {checkpoint.Epoch} of {epochs} epochs ({clock.Elapsed.TotalSeconds:F0} s)");
        Console.WriteLine($"test accuracy: {evaluation.Accuracy:F4}");
        return;
    }
    var metrics = ml.MulticlassClassification.Evaluate(scored);
    Console.WriteLine($"hand {preset}: {epochs} epochs in {clock.Elapsed.TotalSeconds:F0} s");
    Console.WriteLine($"test accuracy: {metrics.MicroAccuracy:F4}");
    return;
}

// 1. The experiment.
var experimentOptions = new ConvNetExperiment.Options
{
    TimeBudget = budget, MaxTrials = opt.Has("trials") ? opt.Int("trials", 0) : null, Seed = seed,
    MaxEpochs = opt.Int("max-epochs", 9), Backend = backend, MaxThreads = threads, Log = Console.WriteLine,
};
if (experimentOptions.TimeBudget is null && experimentOptions.MaxTrials is null) experimentOptions.TimeBudget = TimeSpan.FromMinutes(10);
// With a time budget, keep part of it (--final-share, default 0.5; 0: none) to train the best settings on all the images.
if (experimentOptions.TimeBudget is not null) experimentOptions.FinalTrainingShare = opt.Double("final-share", 0.5);
using var stop = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop.Cancel(); }; // Ctrl+C: stop the search, keep the best so far
var result = ml.MulticlassClassification.ConvNetExperiment(experimentOptions).Execute(train, stop.Token);
Console.WriteLine();
Console.WriteLine(result.ToTable());
result.SaveCsv(Path.Combine(outDir, "leaderboard.csv"));
result.SaveJson(Path.Combine(outDir, "leaderboard.json"));
File.WriteAllText(Path.Combine(outDir, "leaderboard.txt"), result.ToTable());
ExperimentPlot.SavePng(result, Path.Combine(outDir, "leaderboard.png"));
Console.WriteLine($"{result.Trials.Count} trials in {result.Elapsed.TotalSeconds:F0} s on backend '{result.Backend}'; leaderboard files in {outDir}");
if (result.Model is not { } best) { Console.WriteLine("no trial finished an epoch"); return; }

var testMetrics = ml.MulticlassClassification.Evaluate(best.Transform(test));
Console.WriteLine($"best trial {result.BestTrial!.Id} ({result.BestTrial.Settings}): validation {result.BestTrial.ValidationAccuracy:F4} after {result.BestTrial.Epochs} epochs" +
    (result.FinalEpochs is { } final ? $"; the model: its settings trained on all {trainSet.Count:N0} images for {final} epochs inside the budget" : "; the model: that trial's own"));
ml.Model.Save(best, train.Schema, Path.Combine(outDir, "model.zip"));
Console.WriteLine($"experiment test accuracy: {testMetrics.MicroAccuracy:F4}");

// 2. The featurizer: the best network's penultimate layer as "CnnFeatures", SDCA on top; saved, reloaded, evaluated again.
var featurizeThenSdca = ml.Transforms.ConvNetFeaturizer(best)
    .Append(ml.Transforms.NormalizeMinMax("CnnFeatures"))
    .AppendCacheCheckpoint(ml)
    .Append(ml.MulticlassClassification.Trainers.SdcaMaximumEntropy(labelColumnName: "Label", featureColumnName: "CnnFeatures", maximumNumberOfIterations: 20));
var sdcaClock = Stopwatch.StartNew();
var sdca = featurizeThenSdca.Fit(train);
var sdcaMetrics = ml.MulticlassClassification.Evaluate(sdca.Transform(test));
Console.WriteLine($"featurizer ({best.Network.Layers.Count - 1} of {best.Network.Layers.Count} layers) + SDCA: trained in {sdcaClock.Elapsed.TotalSeconds:F0} s; " +
    $"test accuracy {sdcaMetrics.MicroAccuracy:F4}, macro {sdcaMetrics.MacroAccuracy:F4}, log-loss {sdcaMetrics.LogLoss:F4}");
string sdcaPath = Path.Combine(outDir, "featurizer-sdca.zip");
ml.Model.Save(sdca, train.Schema, sdcaPath);
var reloaded = new MLContext(seed).Model.Load(sdcaPath, out _);
var reloadedMetrics = ml.MulticlassClassification.Evaluate(reloaded.Transform(test));
Console.WriteLine($"featurizer + SDCA reloaded from {sdcaPath}: test accuracy {reloadedMetrics.MicroAccuracy:F4}, log-loss {reloadedMetrics.LogLoss:F4}");

// 3. The same features for LightGbm (Microsoft.ML.LightGbm; trees need no normalisation).
var featurizeThenLightGbm = ml.Transforms.ConvNetFeaturizer(best)
    .AppendCacheCheckpoint(ml)
    .Append(ml.MulticlassClassification.Trainers.LightGbm(labelColumnName: "Label", featureColumnName: "CnnFeatures", numberOfIterations: 100));
var lightGbmClock = Stopwatch.StartNew();
var lightGbm = featurizeThenLightGbm.Fit(train);
var lightGbmMetrics = ml.MulticlassClassification.Evaluate(lightGbm.Transform(test));
Console.WriteLine($"featurizer + LightGbm (100 iterations): trained in {lightGbmClock.Elapsed.TotalSeconds:F0} s; " +
    $"test accuracy {lightGbmMetrics.MicroAccuracy:F4}, macro {lightGbmMetrics.MacroAccuracy:F4}, log-loss {lightGbmMetrics.LogLoss:F4}");
string lightGbmPath = Path.Combine(outDir, "featurizer-lightgbm.zip");
ml.Model.Save(lightGbm, train.Schema, lightGbmPath);
var lightGbmReloaded = new MLContext(seed).Model.Load(lightGbmPath, out _);
var lightGbmReloadedMetrics = ml.MulticlassClassification.Evaluate(lightGbmReloaded.Transform(test));
Console.WriteLine($"featurizer + LightGbm reloaded from {lightGbmPath}: test accuracy {lightGbmReloadedMetrics.MicroAccuracy:F4}, log-loss {lightGbmReloadedMetrics.LogLoss:F4}");
