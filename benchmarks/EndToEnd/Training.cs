using System.Diagnostics;
using MLNet.ConvNet.Backends.Cpu;
using MLNet.ConvNet.Data;
using MLNet.ConvNet.Layers;
using MLNet.ConvNet.Optimizers;
using MLNet.ConvNet.Training;

namespace MLNet.ConvNet.Benchmarks;

// Fashion-MNIST training of the peer's two networks through the product's own path: the presets (Presets.LeNet5,
// Presets.Cnn2Bn, the same layers as the peer), Adam lr 1e-3, batch 64, the Trainer (seeded shuffle per epoch,
// cross-entropy, buffer reuse) and Trainer.Evaluate for the test set. Initialisation is the engine's (He normal),
// not PyTorch's default (uniform in +-1/sqrt(fan_in)); accuracies are compared within the issue's 0.5 points.
public static partial class Program
{
    private static void Train(string name, Settings s)
    {
        Console.WriteLine();
        var backend = s.Backend();
        int? limit = s.Limit > 0 ? s.Limit : null;
        var train = FashionMnist.LoadTrain(s.Data, limit);
        var test = FashionMnist.LoadTest(s.Data, limit is { } l ? Math.Min(l, 10000) : null);
        var net = Presets.ByName(name, 10, backend).Build(train.SampleShape, (ulong)s.Seed);
        Report($"{name}.params", net.ParameterCount.ToString());
        const int batch = 64;
        int batches = (train.Count + batch - 1) / batch;

        // Per epoch: bytes allocated and gen0 collections over the steady steps, batches 4 to N-1 (batches 1-3 re-warm
        // the batch-64 buffers after the previous epoch's evaluation at batch 1000 took their place, and the shorter last
        // batch gets buffers of its own), read after batch 3 and after batch N-1 only: the precise counter is not free,
        // so it is not read on every batch. The epoch's total (everything, evaluation excluded) beside it.
        long windowBytes = 0, bytes = 0, epochStartBytes = GC.GetTotalAllocatedBytes(precise: true), epochBytes = 0;
        int windowGen0 = 0, gen0 = 0, steadyBatches = 0;
        var trainer = new Trainer(net, new Adam(net.Parameters, 1e-3), new TrainerOptions
        {
            Epochs = s.Epochs, BatchSize = batch, Seed = (ulong)s.Seed,
            // Every step reported, as before the statistics stayed on the backend (one small read-back per step), so
            // the window below can start and end at chosen steps and the figures compare with earlier runs.
            ProgressInterval = 1,
            OnBatch = p =>
            {
                if (p.Batch == 3) { windowBytes = GC.GetTotalAllocatedBytes(precise: true); windowGen0 = GC.CollectionCount(0); }
                else if (p.Batch == p.BatchCount - 1 && p.Batch > 3)
                {
                    bytes = GC.GetTotalAllocatedBytes(precise: true) - windowBytes;
                    gen0 = GC.CollectionCount(0) - windowGen0;
                    steadyBatches = p.Batch - 3;
                }
                else if (p.Batch == p.BatchCount) epochBytes = GC.GetTotalAllocatedBytes(precise: true) - epochStartBytes;
            },
            OnEpoch = m =>
            {
                if (m.Epoch == 1)
                {
                    // Where the peak working set goes: before the first evaluation (data + training at batch 64)...
                    var info = GC.GetGCMemoryInfo();
                    Report($"{name}.peak_working_set_before_eval_mib", $"{Process.GetCurrentProcess().PeakWorkingSet64 / 1048576.0:F0} " +
                        $"(managed heap {info.HeapSizeBytes / 1048576.0:F0}, committed {info.TotalCommittedBytes / 1048576.0:F0}; " +
                        $"training set {(long)train.Count * train.SampleShape.Length * 4 / 1048576.0:F0}, test set {(long)test.Count * test.SampleShape.Length * 4 / 1048576.0:F0})");
                }
                var clock = Stopwatch.StartNew();
                var eval = Trainer.Evaluate(net, test, batchSize: 1000);
                double inferSec = clock.Elapsed.TotalSeconds;
                double bytesPerStep = steadyBatches == 0 ? 0 : (double)bytes / steadyBatches;
                Console.WriteLine($"{name} epoch {m.Epoch}: train {m.Seconds:F2}s ({train.Count / m.Seconds:F0} img/s), mean loss {m.TrainLoss:F4}, " +
                                  $"test acc {eval.Accuracy * 100:F2}%, inference {inferSec:F3}s, gen0 GCs {gen0}, managed allocation {bytesPerStep:F0} B/step");
                Report($"{name}.epoch{m.Epoch}.train_s", $"{m.Seconds:F2}");
                Report($"{name}.epoch{m.Epoch}.train_img_per_s", $"{train.Count / m.Seconds:F0}");
                Report($"{name}.epoch{m.Epoch}.test_acc_pct", $"{eval.Accuracy * 100:F2}");
                Report($"{name}.epoch{m.Epoch}.infer10k_s", $"{inferSec:F3} ({test.Count / inferSec:F0} img/s)");
                Report($"{name}.epoch{m.Epoch}.alloc_bytes_per_step", $"{bytesPerStep:F0}");
                Report($"{name}.epoch{m.Epoch}.gen0_collections_steady", $"{gen0}");
                Report($"{name}.epoch{m.Epoch}.alloc_bytes_epoch_total", $"{epochBytes}");
                bytes = 0; gen0 = 0; steadyBatches = 0; epochBytes = 0;
                epochStartBytes = GC.GetTotalAllocatedBytes(precise: true); // the evaluation is not a training step
            },
        });
        trainer.Fit(train);
        // ... and after every evaluation at batch 1000 (whose activations are 15.6 times a training batch's).
        var end = GC.GetGCMemoryInfo();
        Report($"{name}.peak_working_set_mib", $"{Environment.WorkingSet / 1048576.0:F0} now, {Process.GetCurrentProcess().PeakWorkingSet64 / 1048576.0:F0} peak (process; " +
            $"managed heap {end.HeapSizeBytes / 1048576.0:F0}, committed {end.TotalCommittedBytes / 1048576.0:F0}, GC {(System.Runtime.GCSettings.IsServerGC ? "server" : "workstation")})");
        if (s.Profile) Profile(name, net, train, Math.Min(batches, 100));
    }

    /// <summary>
    /// Milliseconds per batch of each layer's forward and backward over <paramref name="steps"/> training steps (after
    /// training, so everything is warm), the loop the Trainer runs written out with a stopwatch around every layer.
    /// </summary>
    private static void Profile(string name, Network net, InMemoryDataset train, int steps)
    {
        var layers = net.Layers;
        var forward = new double[layers.Count];
        var backward = new double[layers.Count];
        double optimizerMs = 0;
        var optimizer = new Adam(net.Parameters, 1e-3);
        var features = new float[64 * train.SampleShape.Length];
        var labels = new int[64];
        var x = net.Backend.Allocate(new Shape([64, .. train.SampleShape.AsSpan()]));
        var order = Enumerable.Range(0, 64 * steps).Select(i => i % train.Count).ToArray();
        net.ReuseBuffers = true;
        for (int step = 0; step < steps; step++)
        {
            train.CopyBatch(order.AsSpan(step * 64, 64), features, labels);
            x.CopyFromHost(features);
            var h = x;
            for (int i = 0; i < layers.Count;)
            {
                // Network.Forward's steps: a fused group in one call, timed on its first layer's line.
                long t0 = Stopwatch.GetTimestamp();
                int ran = net.ForwardAt(i, ref h, training: true);
                forward[i] += Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
                i += ran;
            }
            var dy = Ops.CrossEntropy.Backward(Ops.CrossEntropy.Forward(h, labels));
            optimizer.ZeroGrad();
            for (int i = layers.Count - 1; i >= 0 && dy is not null; i--)
            {
                // Network.Backward's steps: a group that ran fused goes back in one call, timed on its first layer's line.
                long t0 = Stopwatch.GetTimestamp();
                dy = net.BackwardAt(ref i, dy, inputGradient: i > 0);
                backward[i] += Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
            }
            long s0 = Stopwatch.GetTimestamp();
            optimizer.Step();
            optimizerMs += Stopwatch.GetElapsedTime(s0).TotalMilliseconds;
        }
        net.ReuseBuffers = false;
        Console.WriteLine($"{name} per-batch profile ({steps} steps of 64, ms):");
        for (int i = 0; i < layers.Count;)
        {
            var fusion = Network.FusionAt(layers, i, trains: true);
            string type = fusion switch
            {
                Network.Fusion.BatchNormRelu => "BatchNorm+ReLU",
                Network.Fusion.ReluMaxPool => "ReLU+MaxPool",
                _ => layers[i].GetType().Name,
            };
            Console.WriteLine($"  {i,2} {layers[i].Name,-10} {type,-14} fwd {forward[i] / steps,7:F3}  bwd {backward[i] / steps,7:F3}");
            for (int k = 1; k < Network.Span(fusion); k++)
                Console.WriteLine($"  {i + k,2} {layers[i + k].Name,-10} (fused above)");
            i += Network.Span(fusion);
        }
        Console.WriteLine($"     optimizer step {optimizerMs / steps,7:F3}");
    }

}
