// Trains a preset convnet on Fashion-MNIST with the engine alone (no ML.NET): Adam, batch 64, console progress,
// test accuracy after every epoch. The last line is "test accuracy: 0.xxxx".
//
//   dotnet run -c Release --project samples/FashionMnist -- --epochs 3 --net lenet5
//
// Options: --epochs 3 --net lenet5|cnn2bn|vgg|resnet --limit N (training images) --threads N --seed 42
//          --batch 64 --lr 0.001 --data DIR (default $FASHION_MNIST_DIR or /usr/share/datasets/fashion-mnist)
//          --checkpoint FILE (written after every epoch) --resume FILE
using System.Diagnostics;
using MLNet.ConvNet;
using MLNet.ConvNet.Backends.Cpu;
using MLNet.ConvNet.Data;
using MLNet.ConvNet.Layers;
using MLNet.ConvNet.Optimizers;
using MLNet.ConvNet.Training;

var opt = CommandLineArgs.Parse(args);
int epochs = opt.Int("epochs", 3), batchSize = opt.Int("batch", 64), seed = opt.Int("seed", 42);
int? limit = opt.Has("limit") ? opt.Int("limit", 0) : null;
int? threads = opt.Has("threads") ? opt.Int("threads", 0) : null;
string net = opt.Str("net", "lenet5");
double lr = opt.Double("lr", 1e-3);

var backend = new CpuBackend(threads);
var clock = Stopwatch.StartNew();
var train = FashionMnist.LoadTrain(opt.StrOrNull("data"), limit);
var test = FashionMnist.LoadTest(opt.StrOrNull("data"));
Console.WriteLine($"Fashion-MNIST: {train.Count} training and {test.Count} test images ({clock.Elapsed.TotalSeconds:F1} s to load)");

var network = Presets.ByName(net, FashionMnist.ClassNames.Count, backend).Build(train.SampleShape, (ulong)seed);
Console.WriteLine($"{net}: {network.ParameterCount:N0} parameters, {backend.MaxThreads} thread(s), Adam lr {lr}, batch {batchSize}, seed {seed}");
var optimizer = new Adam(network.Parameters, lr);

bool interactive = !Console.IsOutputRedirected;
double testAccuracy = double.NaN;
var trainer = new Trainer(network, optimizer, new TrainerOptions
{
    Epochs = epochs, BatchSize = batchSize, Seed = (ulong)seed,
    CheckpointPath = opt.StrOrNull("checkpoint"), ResumeFrom = opt.StrOrNull("resume"),
    // A report reads the step statistics back from the backend; the steps in between read nothing.
    ProgressInterval = interactive ? 5 : 100,
    OnBatch = p =>
    {
        double rate = p.SamplesDone / Math.Max(p.EpochElapsed.TotalSeconds, 1e-9);
        var eta = TimeSpan.FromSeconds((p.SampleCount - p.SamplesDone) / Math.Max(rate, 1e-9));
        int filled = 24 * p.SamplesDone / p.SampleCount;
        string line = $"epoch {p.Epoch}/{epochs} [{new string('=', filled)}{new string(' ', 24 - filled)}] {p.SamplesDone}/{p.SampleCount}" +
                      $"  loss {p.Loss:F4}  {rate:N0} img/s  ETA {eta:m\\:ss}";
        if (interactive) Console.Write("\r" + line + "   ");
        else Console.WriteLine(line);
    },
    OnEpoch = m =>
    {
        if (interactive) Console.WriteLine();
        var eval = Trainer.Evaluate(network, test);
        testAccuracy = eval.Accuracy;
        double imgPerSec = train.Count / m.Seconds;
        Console.WriteLine($"epoch {m.Epoch}: train loss {m.TrainLoss:F4} acc {m.TrainAccuracy:F4} | test loss {eval.Loss:F4} acc {eval.Accuracy:F4} | {m.Seconds:F1} s, {imgPerSec:N0} img/s");
        Console.WriteLine($"RESULT {net}.epoch{m.Epoch}.train_img_per_s = {imgPerSec:F0}");
        Console.WriteLine($"RESULT {net}.epoch{m.Epoch}.test_acc_pct = {100 * eval.Accuracy:F2}");
    },
});

try
{
    trainer.Fit(train);
}
catch (NonFiniteLossException e)
{
    Console.Error.WriteLine(e.Message);
    return 2;
}
if (double.IsNaN(testAccuracy)) testAccuracy = Trainer.Evaluate(network, test).Accuracy; // nothing left to train after a resume
Console.WriteLine($"weights sha256 {network.ComputeHash()}  total {clock.Elapsed.TotalSeconds:F1} s");
Console.WriteLine($"test accuracy: {testAccuracy:F4}");
return 0;

