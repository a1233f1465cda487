// GPU run: the presets (lenet5, cnn2bn, vgg, resnet) on Fashion-MNIST through the ML.NET trainer (mlContext...Trainers.ConvNet), on the
// backend asked for, printing RESULT lines with the keys of the PyTorch GPU peer (shared/bench/pytorch-gpu-fashion,
// bench.py): "<prefix><net>.batch<B>.epoch<E>.train_img_per_s | .test_acc_pct | .infer10k_s", prefix "gpu." on the
// CUDA backend and "cpu." on the CPU, as the peer prefixes its own runs. Saves each fitted pipeline as
// <out>/<net>/model.zip. For every net it also prints "<prefix><net>.batch<B>.gflop_per_img" (training FLOPs per image,
// see TrainingGflopPerImage) and "...epoch<E>.train_tflops" (img/s x that / 1000), the key our own PyTorch script
// for the larger presets (benchmarks/Gpu/presets_peer.py) prints by the same convention. Built to be published self-contained and copied to a GPU machine that has no .NET
// (scripts/gpu-check.sh).
//
//   MLNet.ConvNet.GpuRun --backend cpu|cuda|auto --device 0 --nets lenet5,cnn2bn[,vgg,resnet] --epochs 3 --batch 64 --seed 42
//                        --data DIR --out DIR [--limit N] [--tf32] [--profile]
//   --profile (CUDA only): per-kernel device time of the training steps (CudaKernelProfiler), PROFILE lines; no RESULT.
//   MLNet.ConvNet.GpuRun --check-load DIR [--data DIR]     (loads every model.zip under DIR on the CPU, prints its accuracy)
//
// Differences from the peer, on purpose or for now:
// - train_img_per_s is the training time of the epoch as the trainer's last OnBatch reports it (shuffle, batch
//   gathering, forward, backward, Adam step); the data starts in an IDataView on the host, not on the GPU.
// - test_acc_pct and infer10k_s are reported for the last epoch only: the test set is scored once, after Fit, by the
//   fitted ML.NET pipeline (model.Transform + MulticlassClassification.Evaluate), which is what a user runs.
// - Weights start from the engine's initialisation (He normal), not PyTorch's.
using System.Diagnostics;
using System.Reflection;
using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ConvNet;
using MLNet.ConvNet.Backends;
using MLNet.ConvNet.Data;
using MLNet.ConvNet.Trainers;

CommandLineArgs opt;
try { opt = CommandLineArgs.Parse(args, "tf32", "profile"); }
catch (ArgumentException e) { Console.Error.WriteLine(e.Message); return 2; }

Console.WriteLine($"MLNet.ConvNet GPU run: .NET {Environment.Version}, {Environment.ProcessorCount} logical CPUs, " +
                  $"{System.Runtime.InteropServices.RuntimeInformation.OSDescription}");
string dataDir = FashionMnist.FindDirectory(opt.StrOrNull("data"));
var ml = new MLContext(opt.Int("seed", 42));
var testSet = FashionMnist.LoadTest(dataDir);
var test = Fashion.ToView(ml, testSet);

if (opt.StrOrNull("check-load") is { } loadDir) return Fashion.CheckLoad(loadDir, test);

string backendArg = opt.Str("backend", "auto").ToLowerInvariant();
var (trainerBackend, kind) = backendArg switch
{
    "cpu" => (ConvNetBackend.Cpu, BackendKind.Cpu),
    "cuda" => (ConvNetBackend.Cuda, BackendKind.Cuda),
    "auto" => (ConvNetBackend.Auto, BackendKind.Auto),
    _ => throw new ArgumentException($"--backend expects cpu, cuda or auto; got '{backendArg}'."),
};
int device = opt.Int("device", 0), epochs = opt.Int("epochs", 3), batch = opt.Int("batch", 64), seed = opt.Int("seed", 42);
bool tf32 = opt.Has("tf32");
if (opt.Has("profile") && kind != BackendKind.Cuda) { Console.Error.WriteLine("--profile times CUDA kernels: give --backend cuda."); return 2; }
string outDir = opt.Str("out", "gpu-run-output");
string[] nets = opt.Str("nets", "lenet5,cnn2bn").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

// Which backend, and why: asked of the same factory the trainer goes through, before any data is loaded, so that
// "--backend cuda" on a machine without a usable GPU ends here in a second with the factory's explanation.
string prefix, gpuName;
try
{
    var choice = BackendFactory.Create(new BackendOptions { Kind = kind, DeviceIndex = device, AllowTf32 = tf32 });
    bool onGpu = choice.Backend is not MLNet.ConvNet.Backends.Cpu.CpuBackend;
    prefix = onGpu ? "gpu." : "cpu.";
    gpuName = onGpu ? choice.Backend.Name : "none";
    Console.WriteLine($"backend: {choice.Backend.Name} ({choice.Reason})");
    (choice.Backend as IDisposable)?.Dispose(); // the trainer creates its own
}
catch (BackendUnavailableException e)
{
    Console.Error.WriteLine($"backend: unavailable: {e.Message}");
    return 3;
}
Console.WriteLine($"gpu: {gpuName}; device index {device}; --tf32 {(tf32 ? "given" : "not given")}");

var trainSet = FashionMnist.LoadTrain(dataDir, opt.Has("limit") ? opt.Int("limit", 0) : null);
var train = Fashion.ToView(ml, trainSet);
Console.WriteLine($"Fashion-MNIST from {dataDir}: {trainSet.Count:N0} training and {testSet.Count:N0} test images");
Directory.CreateDirectory(outDir);

int failures = 0;
foreach (string net in nets)
{
    try { Fashion.TrainOne(ml, net, train, test, trainSet.Count, trainerBackend, device, tf32, epochs, batch, seed, prefix, outDir, opt.Has("profile")); }
    catch (Exception e) when (e is not OutOfMemoryException)
    {
        // One net failing (e.g. a kernel the CUDA backend lacks) must not hide the other's figures.
        Console.Error.WriteLine($"{net}: FAILED: {e.GetType().Name}: {e.Message}");
        Console.Error.WriteLine(e.StackTrace);
        failures++;
    }
}
return failures == 0 ? 0 : 1;

static class Fashion
{
    public static void Report(string key, string value) => Console.WriteLine($"RESULT {key} = {value}");

    /// <summary>Parameter tensors of a preset (one AdamStep call each per step).</summary>
    public static int CountParameters(string net) => MLNet.ConvNet.Layers.Presets.ByName(net).Build(new Shape(1, 28, 28)).Parameters.Count;

    /// <summary>The images as an IDataView: Features [1, 28, 28] (standardised), Label a key over the class names.</summary>
    public static IDataView ToView(MLContext ml, InMemoryDataset d)
    {
        var keys = ml.Data.LoadFromEnumerable(FashionMnist.ClassNames.Select(n => new ClassName { Label = n }));
        var view = ml.Data.LoadFromEnumerable(ImageRow.From(d));
        // Cached so that the conversion above runs once, not on every pass the trainer or Evaluate makes.
        return ml.Data.Cache(ml.Transforms.Conversion.MapValueToKey("Label", keyData: keys).Fit(view).Transform(view));
    }

    public static void TrainOne(MLContext ml, string net, IDataView train, IDataView test, int trainCount, ConvNetBackend backend,
        int device, bool tf32, int epochs, int batch, int seed, string prefix, string outDir, bool profile = false)
    {
        Console.WriteLine();
        Console.WriteLine($"training {net}: {epochs} epochs, batch {batch}, Adam lr 1e-3, seed {seed}, backend option {backend}");
        string key(int epoch) => $"{prefix}{net}.batch{batch}.epoch{epoch}";
        double gflopPerImage = TrainingGflopPerImage(net);
        Report($"{prefix}{net}.batch{batch}.gflop_per_img", $"{gflopPerImage:F4}");
        var options = new ConvNetTrainer.Options
        {
            Network = net, Epochs = epochs, BatchSize = batch, Optimizer = ConvNetOptimizer.Adam, LearningRate = 1e-3, Seed = seed,
            Backend = backend,
            // The last batch of an epoch carries the epoch's training time before any validation or checkpoint
            // (EpochMetrics.Seconds would include those), so the rate here is the training rate alone.
            OnBatch = p =>
            {
                if (p.Batch != p.BatchCount) return;
                double s = p.EpochElapsed.TotalSeconds;
                Report($"{key(p.Epoch)}.train_img_per_s", $"{p.SampleCount / s:F0}");
                Report($"{key(p.Epoch)}.train_tflops", $"{p.SampleCount / s * gflopPerImage / 1000:F3}");
                Console.WriteLine($"{net} epoch {p.Epoch}: {s:F2} s training, last batch loss {p.Loss:F4}");
            },
        };
        options.DeviceIndex = device;
        options.AllowTf32 = tf32;
        options.Log = Console.WriteLine;

        var clock = Stopwatch.StartNew();
        // --profile: the CUDA backend behind a profiler that charges each call's device time to its kernel (see
        // CudaKernelProfiler; recording costs a few microseconds per call, so img/s of a profiled run are not reported).
        MLNet.ConvNet.Backends.Cuda.CudaKernelProfiler? profiler = null;
        if (profile)
        {
            var gpu = (MLNet.ConvNet.Backends.Cuda.CudaBackend)BackendFactory.Create(
                new BackendOptions { Kind = BackendKind.Cuda, DeviceIndex = device, AllowTf32 = tf32 }).Backend;
            options.CustomBackend = profiler = new MLNet.ConvNet.Backends.Cuda.CudaKernelProfiler(gpu);
            options.OnBatch = null;
        }
        var model = ml.MulticlassClassification.Trainers.ConvNet(options).Fit(train);
        Console.WriteLine($"{net}: Fit took {clock.Elapsed.TotalSeconds:F1} s (data reading, network build and {epochs} epochs)");
        if (profiler is not null)
        {
            var kernels = profiler.Summary();
            double total = kernels.Sum(k => k.Milliseconds);
            int steps = kernels.FirstOrDefault(k => k.Kernel == "AdamStep").Calls / Math.Max(1, CountParameters(net));
            Console.WriteLine($"{net}: profile of {kernels.Sum(k => k.Calls):N0} calls, {total:F1} ms of device time (about {steps} steps: {total / Math.Max(1, steps) * 1000:F0} us per step)");
            foreach (var k in kernels)
                Console.WriteLine($"PROFILE {net}.batch{batch} {k.Kernel,-28} calls {k.Calls,7} ms {k.Milliseconds,9:F2} share {k.Milliseconds / total * 100,5:F1} % per call {k.Milliseconds / k.Calls * 1000,7:F1} us");
            return;
        }

        // Scoring the 10,000 test images through the fitted pipeline, with ML.NET's own metrics. The first pass also
        // pays one-time costs (ONNX/scorer set-up, JIT); the second, warm pass is the one reported, as the peer's
        // eval of a model that has already run.
        clock.Restart();
        var metrics = ml.MulticlassClassification.Evaluate(model.Transform(test));
        double cold = clock.Elapsed.TotalSeconds;
        clock.Restart();
        ml.MulticlassClassification.Evaluate(model.Transform(test));
        double warm = clock.Elapsed.TotalSeconds;
        long n = test.GetRowCount() ?? 10000;
        Console.WriteLine($"{net}: ML.NET Evaluate: accuracy {metrics.MicroAccuracy:F4}, log-loss {metrics.LogLoss:F4}; scoring {cold:F3} s cold, {warm:F3} s warm");
        Report($"{key(epochs)}.test_acc_pct", $"{metrics.MicroAccuracy * 100:F2}");
        Report($"{key(epochs)}.infer10k_s", $"{warm:F4} ({n / warm:F0} img/s)");

        string dir = Path.Combine(outDir, net);
        Directory.CreateDirectory(dir);
        string zip = Path.Combine(dir, "model.zip");
        ml.Model.Save(model, train.Schema, zip);
        Console.WriteLine($"{net}: saved {zip} ({new FileInfo(zip).Length / 1024:N0} KiB)");
    }

    /// <summary>
    /// Training FLOPs per 1x28x28 image of the preset <paramref name="net"/>, in GFLOP, by the usual convention:
    /// convolutions and dense layers only (batch norm, activations, pooling, dropout and the optimizer are left out),
    /// one multiply-add = 2 FLOPs, and forward + backward = 3 x forward (the backward pass computes both the input and
    /// the weight gradient, each costing about one forward). Read from the shapes of the preset built on the CPU.
    /// </summary>
    public static double TrainingGflopPerImage(string net)
    {
        var network = MLNet.ConvNet.Layers.Presets.ByName(net, FashionMnist.ClassNames.Count).Build(new Shape(1, 28, 28));
        long multiplyAdds = 0;
        // AllLayers walks into residual blocks, so their inner convolutions and projection shortcuts are counted.
        foreach (var layer in network.AllLayers())
        {
            if (layer is MLNet.ConvNet.Layers.Conv conv)
            {
                // Each output element takes (input channels / groups) x kernel volume multiply-adds: the weight
                // [O, I/groups, k...] holds exactly that many per output channel.
                int outputPerImage = conv.OutputShape(conv.BuiltInput!.Value).SizeFrom(1);
                multiplyAdds += (long)outputPerImage * (conv.Weight!.Value.Length / conv.OutChannels);
            }
            else if (layer is MLNet.ConvNet.Layers.Dense dense)
            {
                multiplyAdds += dense.Weight!.Value.Length; // in x out
            }
        }
        return 3.0 * 2.0 * multiplyAdds / 1e9;
    }

    /// <summary>Loads every model.zip under <paramref name="path"/> (or the file itself) in a fresh MLContext and evaluates it.</summary>
    public static int CheckLoad(string path, IDataView test)
    {
        var zips = File.Exists(path) ? [path]
            : Directory.Exists(path) ? Directory.GetFiles(path, "model.zip", SearchOption.AllDirectories).Order().ToArray()
            : [];
        if (zips.Length == 0) { Console.Error.WriteLine($"check-load: no model.zip at '{path}'"); return 2; }
        foreach (string zip in zips)
        {
            // A new context, as a CPU-only application would have: the saved pipeline scores through ONNX Runtime.
            var ml = new MLContext();
            var model = ml.Model.Load(zip, out _);
            var metrics = ml.MulticlassClassification.Evaluate(model.Transform(test));
            string name = Path.GetFileName(Path.GetDirectoryName(Path.GetFullPath(zip))) ?? "model";
            Console.WriteLine($"check-load {zip}: accuracy {metrics.MicroAccuracy:F4} on {test.GetRowCount()} test images");
            Report($"checkload.{name}.test_acc_pct", $"{metrics.MicroAccuracy * 100:F2}");
        }
        return 0;
    }
}

