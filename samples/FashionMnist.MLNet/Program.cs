// Fashion-MNIST through ML.NET: the README's main job. Reads the IDX files into an IDataView, trains a convnet
// with mlContext.MulticlassClassification.Trainers.ConvNet (console progress bar: loss, images/s, ETA), evaluates
// on the 10,000 test images (accuracy, log-loss, confusion matrix), saves model.zip, model.onnx and the training
// curve, reloads model.zip in a new MLContext (ConvNetModel.Load) and predicts a few test images. The last line is "test accuracy: 0.xxxx".
//
//   dotnet run -c Release --project samples/FashionMnist.MLNet -- --epochs 3 --net lenet5 --lr 0.003 --schedule cosine
//   mpirun.mpich -n 2 dotnet samples/FashionMnist.MLNet/bin/Release/net10.0/FashionMnist.MLNet.dll --threads 1
//     (two processes train one model, docs/scale.md; rank 0 evaluates, saves and prints the rest)
//
// Options: --data DIR (else $FASHION_MNIST_DIR, else /usr/share/datasets/fashion-mnist)  --net lenet5|cnn2bn|vgg|resnet
//          --epochs 3  --batch 64  --lr 0.001  --optimizer adam|adamw|sgd  --seed 42  --threads N  --backend auto|cpu|cuda  --limit N (training
//          images)  --flip  --crop-padding P  --label-smoothing E (in [0, 1), default 0)  --schedule constant|cosine
//          --validation-fraction F  --patience N  --out DIR (default fashion-mnist-output)
//          --data-cache auto|memory|disk (where the trainer keeps the rows it read; default auto)
using System.Diagnostics;
using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ConvNet.Data;
using MLNet.ConvNet.Distributed;
using MLNet.ConvNet.Trainers;
using MLNet.ConvNet.Training;

var opt = CommandLineArgs.Parse(args, "flip");
int epochs = opt.Int("epochs", 3), batchSize = opt.Int("batch", 64), seed = opt.Int("seed", 42);
string net = opt.Str("net", "lenet5"), outDir = opt.Str("out", "fashion-mnist-output");
double validationFraction = opt.Double("validation-fraction", 0);
Directory.CreateDirectory(outDir);
var total = Stopwatch.StartNew();

// 1. The data as IDataViews: pixels scaled to [0, 1] then standardised, shaped [1, 28, 28]; the label a key whose
//    KeyValues are the class names in Fashion-MNIST's order.
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
Console.WriteLine($"Fashion-MNIST from {dataDir}: {trainSet.Count:N0} training and {testSet.Count:N0} test images, features {train.Schema["Features"].Type}");

// 2. The trainer, then the predicted key back to its class name.
var progress = new ProgressBar(epochs);
var options = new ConvNetTrainer.Options
{
    Network = net, Epochs = epochs, BatchSize = batchSize, LearningRate = opt.Double("lr", 1e-3), Seed = seed,
    Optimizer = Enum.Parse<ConvNetOptimizer>(opt.Str("optimizer", "adam"), ignoreCase: true),
    MaxThreads = opt.Has("threads") ? opt.Int("threads", 0) : null,
    Backend = Enum.Parse<ConvNetBackend>(opt.Str("backend", "auto"), ignoreCase: true),
    Log = Console.WriteLine, // which backend runs, where the rows are kept, and why
    DataCache = Enum.Parse<SampleStorage>(opt.Str("data-cache", "auto"), ignoreCase: true),
    RandomHorizontalFlip = opt.Has("flip"), RandomCropPadding = opt.Int("crop-padding", 0),
    LabelSmoothing = opt.Double("label-smoothing", 0),
    // --schedule cosine: the rate falls from --lr to 0 along a half cosine over the run; constant otherwise.
    Schedule = opt.Str("schedule", "constant") switch
    {
        "constant" => null,
        "cosine" => new MLNet.ConvNet.Optimizers.CosineSchedule(epochs),
        var other => throw new ArgumentException($"--schedule expects constant or cosine; got '{other}'."),
    },
    ValidationFraction = validationFraction, EarlyStoppingPatience = opt.Int("patience", 0),
    // Without a validation split, the test set is evaluated after every epoch to report its accuracy (a monitor only:
    // nothing in training depends on it unless --patience is given).
    ValidationSet = validationFraction > 0 ? null : test,
    OnBatch = progress.Batch,
    // A report reads the step statistics back from the backend; the steps in between read nothing.
    ProgressInterval = Console.IsOutputRedirected ? 200 : 10,
    OnEpoch = progress.Epoch,
};
var pipeline = ml.MulticlassClassification.Trainers.ConvNet(options)
    .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedClass", "PredictedLabel"));
Console.WriteLine($"training {net}: {epochs} epochs, batch {batchSize}, {options.Optimizer} lr {options.LearningRate}, label smoothing {options.LabelSmoothing}, seed {seed}");
var fitClock = Stopwatch.StartNew();
var model = pipeline.Fit(train);
fitClock.Stop();
var convnet = model.OfType<ConvNetTransformer>().Single();
if (!MpiLaunch.Detect().IsRankZero) return 0; // under mpirun every rank holds the same model; rank 0 writes the files
Console.WriteLine($"trained in {fitClock.Elapsed.TotalSeconds:F1} s; {convnet.Network.ParameterCount:N0} parameters; weights sha256 {convnet.Network.ComputeHash()[..16]}");

// 3. Evaluate on the 10,000 test images.
var metrics = ml.MulticlassClassification.Evaluate(model.Transform(test));
Console.WriteLine($"test: accuracy {metrics.MicroAccuracy:F4}, macro accuracy {metrics.MacroAccuracy:F4}, log-loss {metrics.LogLoss:F4}");
Console.WriteLine(metrics.ConfusionMatrix.GetFormattedConfusionTable());

// 4. Save: the ML.NET model (its ONNX graph inside), the ONNX file, the training curve.
string zip = Path.Combine(outDir, "model.zip"), onnx = Path.Combine(outDir, "model.onnx"), png = Path.Combine(outDir, "training-curve.png");
ml.Model.Save(model, train.Schema, zip);
convnet.ExportOnnx(onnx);
convnet.SaveTrainingCurve(png, title: $"{net} on Fashion-MNIST");
Console.WriteLine($"saved {zip} ({new FileInfo(zip).Length / 1024:N0} KiB), {onnx}, {png}");

// 5. A new MLContext loads model.zip and predicts, as a serving application would (docs/deployment.md). The model is
//    ML.NET's own (ML.NET and ONNX Runtime run it); ConvNetModel.Load keeps it working whatever PredictionEngines over
//    it are disposed, and its predictor may be called from many threads at once.
var ml2 = new MLContext();
var loaded = ConvNetModel.Load(ml2, zip, out _);
var reloaded = ml2.MulticlassClassification.Evaluate(loaded.Transform(test));
Console.WriteLine($"reloaded model: test accuracy {reloaded.MicroAccuracy:F4} ({(reloaded.MicroAccuracy == metrics.MicroAccuracy ? "identical" : "DIFFERENT")})");
using var predictor = loaded.CreatePredictor<ImageInput, ImagePrediction>();
foreach (int i in new[] { 0, 1, 2, 3, 4 })
{
    var p = predictor.Predict(new ImageInput { Features = testSet.Features.Slice(i * 784, 784).ToArray() });
    Console.WriteLine($"  test image {i}: predicted {p.PredictedClass,-12} ({p.Score.Max():P1})  true {FashionMnist.ClassNames[testSet.Labels[i]]}");
}
Console.WriteLine($"total {total.Elapsed.TotalSeconds:F1} s");
Console.WriteLine($"test accuracy: {metrics.MicroAccuracy:F4}");
return 0;

/// <summary>What the saved model needs to predict: the pixels only.</summary>
sealed class ImageInput
{
    [VectorType(1, 28, 28)]
    public float[] Features { get; set; } = [];
}

sealed class ImagePrediction
{
    public float[] Score { get; set; } = [];
    public string PredictedClass { get; set; } = "";
}

/// <summary>A console progress bar per epoch (loss, images/s, ETA), and one summary line per epoch.</summary>
sealed class ProgressBar(int epochs)
{
    private readonly bool _interactive = !Console.IsOutputRedirected;
    private double _lossSum;
    private int _lossCount, _epoch;

    /// <summary>Called every ProgressInterval steps: the loss shown is the mean over the reported steps of the epoch so far.</summary>
    public void Batch(BatchProgress p)
    {
        if (p.Epoch != _epoch) { _epoch = p.Epoch; _lossSum = 0; _lossCount = 0; }
        _lossSum += p.Loss * p.BatchSize;
        _lossCount += p.BatchSize;
        double rate = p.SamplesDone / Math.Max(p.EpochElapsed.TotalSeconds, 1e-9);
        var eta = TimeSpan.FromSeconds((p.SampleCount - p.SamplesDone) / Math.Max(rate, 1e-9));
        int filled = 30 * p.SamplesDone / p.SampleCount;
        string line = $"epoch {p.Epoch}/{epochs} [{new string('#', filled)}{new string('.', 30 - filled)}] {p.SamplesDone,6}/{p.SampleCount}" +
                      $"  loss {_lossSum / _lossCount:F4}  {rate,6:N0} img/s  ETA {eta:m\\:ss}";
        if (_interactive) Console.Write("\r" + line);
        else Console.WriteLine(line);
    }

    public void Epoch(EpochMetrics m)
    {
        if (_interactive) Console.WriteLine();
        string validation = m.HasValidation ? $" | held-out loss {m.ValidationLoss:F4} accuracy {m.ValidationAccuracy:F4}" : "";
        Console.WriteLine($"epoch {m.Epoch}: train loss {m.TrainLoss:F4} accuracy {m.TrainAccuracy:F4}{validation} | {m.Seconds:F1} s");
    }
}

