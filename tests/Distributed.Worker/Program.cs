// The program the MPI tests start with `mpirun.mpich -n N` (and alone, as the one-process reference), and the
// throughput/accuracy measurement of docs/scale.md. It trains through the ML.NET trainer with option Distributed = Auto,
// so the ranks find each other exactly as a user's program would. Arguments (all optional):
//   --data synthetic|fashion   synthetic: --rows seeded 28x28 images (default); fashion: Fashion-MNIST, evaluated on its test set
//   --rows R --batch B --epochs E --net NAME --seed S --threads T --lr LR --optimizer sgd|adam
//   --out FILE                 rank 0 writes every weight and buffer (float32, state-tensor order) there
//   --init-out FILE            and the untrained network's (the trainer builds it the same way: preset, seed)
//   --checkpoint DIR [--resume]
//   --fail-rank R --fail-step K --fail-mode throw|kill|exit   rank R fails at its K-th training step (from 1)
//   --allreduce-bench CALLS --floats F   no training: time CALLS allreduces of F floats (the step's gradient buffer)
using System.Diagnostics;
using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ConvNet;
using MLNet.ConvNet.Backends;
using MLNet.ConvNet.Data;
using MLNet.ConvNet.Distributed;
using MLNet.ConvNet.Distributed.Worker;
using MLNet.ConvNet.Trainers;

var a = Arguments.Parse(args);
var launch = MpiLaunch.Detect();
if (a.Has("allreduce-bench"))
{
    var world = MpiCommunicator.World;
    var buffer = new float[a.Int("floats", 61707)];
    var times = new double[a.Int("allreduce-bench", 500)];
    for (int i = 0; i < 20; i++) world.AllreduceSum(buffer); // warm-up
    for (int i = 0; i < times.Length; i++)
    {
        long start = Stopwatch.GetTimestamp();
        world.AllreduceSum(buffer);
        times[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    }
    Array.Sort(times);
    if (world.Rank == 0)
        Console.WriteLine($"RESULT allreduce ranks={world.Size} floats={buffer.Length} bytes={buffer.Length * 4} median_ms={times[times.Length / 2]:F3} " +
            $"p10_ms={times[times.Length / 10]:F3} p90_ms={times[times.Length * 9 / 10]:F3} mean_ms={times.Average():F3}");
    return;
}
var ml = new MLContext(seed: 0);
IDataView train, test = null!;
if (a.Get("data", "synthetic") == "fashion")
{
    train = Rows.From(ml, FashionMnist.LoadTrain(limit: a.Int("rows", 60000)));
    test = Rows.From(ml, FashionMnist.LoadTest());
}
else train = Rows.From(ml, Rows.Synthetic(a.Int("rows", 320), seed: 7));

int failRank = a.Int("fail-rank", -1), failStep = a.Int("fail-step", 0);
string failMode = a.Get("fail-mode", "throw");
var cpu = BackendFactory.Create(new BackendOptions { Kind = BackendKind.Cpu, MaxThreads = a.Int("threads", 1) }).Backend;
var options = new ConvNetTrainer.Options
{
    Network = a.Get("net", "lenet5"), Epochs = a.Int("epochs", 1), BatchSize = a.Int("batch", 16), Seed = a.Int("seed", 1),
    LearningRate = double.Parse(a.Get("lr", "0.001"), System.Globalization.CultureInfo.InvariantCulture),
    Optimizer = a.Get("optimizer", "adam") == "sgd" ? ConvNetOptimizer.Sgd : ConvNetOptimizer.Adam,
    MaxThreads = a.Int("threads", 1), Backend = ConvNetBackend.Cpu,
    CheckpointDirectory = a.Has("checkpoint") ? a.Get("checkpoint", "") : null, Resume = a.Has("resume"),
    CustomBackend = launch.Rank == failRank ? new FailingBackend(cpu, failStep, failMode, launch.Rank) : null,
    Log = line => Console.WriteLine(line),
    OnEpoch = m => Console.WriteLine($"epoch {m.Epoch}: loss {m.TrainLoss:F4} accuracy {m.TrainAccuracy:F4} ({m.Seconds:F2} s)"),
};
var clock = Stopwatch.StartNew();
var model = ml.MulticlassClassification.Trainers.ConvNet(options).Fit(train);
double seconds = clock.Elapsed.TotalSeconds;
if (!launch.IsRankZero) return;

long rows = train.GetRowCount() ?? 0;
Console.WriteLine($"RESULT ranks={launch.Size} threads={a.Int("threads", 1)} seconds={seconds:F2} samples_per_s={rows * options.Epochs / seconds:F0} " +
    $"parameters={model.Network.ParameterCount}");
if (a.Has("out"))
{
    var values = model.Network.StateTensors().SelectMany(s => s.Value.ToHost()).ToArray();
    File.WriteAllBytes(a.Get("out", ""), System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray());
}
if (a.Has("init-out"))
{
    var initial = MLNet.ConvNet.Layers.Presets.ByName(options.Network, 10, cpu).Build(new Shape(1, 28, 28), (ulong)options.Seed);
    var values = initial.StateTensors().SelectMany(s => s.Value.ToHost()).ToArray();
    File.WriteAllBytes(a.Get("init-out", ""), System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray());
}
if (test is not null)
{
    var metrics = ml.MulticlassClassification.Evaluate(model.Transform(test));
    Console.WriteLine($"RESULT test_accuracy={metrics.MicroAccuracy:F4}");
}

namespace MLNet.ConvNet.Distributed.Worker
{
    /// <summary>"--name value" and "--flag" arguments.</summary>
    internal sealed class Arguments
    {
        private readonly Dictionary<string, string> _values = [];

        public static Arguments Parse(string[] args)
        {
            var a = new Arguments();
            for (int i = 0; i < args.Length; i++)
            {
                if (!args[i].StartsWith("--")) throw new ArgumentException($"Unexpected argument '{args[i]}'.");
                bool hasValue = i + 1 < args.Length && !args[i + 1].StartsWith("--");
                a._values[args[i][2..]] = hasValue ? args[++i] : "";
            }
            return a;
        }

        public bool Has(string name) => _values.ContainsKey(name);
        public string Get(string name, string fallback) => _values.GetValueOrDefault(name, fallback);
        public int Int(string name, int fallback) => _values.TryGetValue(name, out var v) ? int.Parse(v) : fallback;
    }

    /// <summary>A row for ML.NET: a 1x28x28 image and its class index.</summary>
    internal sealed class Rows
    {
        [VectorType(1, 28, 28)]
        public float[] Features { get; set; } = [];
        public float Label { get; set; }

        /// <summary>
        /// <paramref name="count"/> seeded images of 10 classes: a class's fixed random pattern plus noise, so that a network
        /// learns something in a few steps.
        /// </summary>
        public static InMemoryDataset Synthetic(int count, ulong seed)
        {
            var rng = new Rng(seed);
            var patterns = Enumerable.Range(0, 10).Select(_ => Enumerable.Range(0, 784).Select(_ => (float)rng.NextDouble()).ToArray()).ToArray();
            var features = new float[count * 784];
            var labels = new int[count];
            for (int i = 0; i < count; i++)
            {
                labels[i] = rng.NextInt(10);
                for (int j = 0; j < 784; j++) features[i * 784 + j] = 0.5f * patterns[labels[i]][j] + 0.5f * (float)rng.NextDouble();
            }
            return new InMemoryDataset(features, labels, new Shape(1, 28, 28), 10);
        }

        public static IDataView From(MLContext ml, InMemoryDataset data)
        {
            var rows = new Rows[data.Count];
            var x = new float[784];
            var label = new int[1];
            for (int i = 0; i < data.Count; i++)
            {
                data.CopyBatch([i], x, label);
                rows[i] = new Rows { Features = (float[])x.Clone(), Label = label[0] };
            }
            return ml.Data.LoadFromEnumerable(rows);
        }
    }

    /// <summary>The CPU backend, failing at the rank's K-th training step (counted by the per-step LossAndCorrect kernel).</summary>
    internal sealed class FailingBackend(IBackend inner, int step, string mode, int rank) : DelegatingBackend(inner)
    {
        private int _steps;

        protected override void OnKernel(string kernel = "")
        {
            if (kernel != nameof(LossAndCorrect) || ++_steps != step) return;
            Console.Error.WriteLine($"worker: rank {rank} fails at step {step} ({mode})");
            Console.Error.Flush();
            switch (mode)
            {
                case "kill": Process.GetCurrentProcess().Kill(); break;
                case "exit": Environment.Exit(3); break;
                default: throw new InvalidOperationException($"injected failure at step {step} on rank {rank}");
            }
        }
    }
}
