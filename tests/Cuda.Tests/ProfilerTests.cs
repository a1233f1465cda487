using MLNet.ConvNet.Backends;
using MLNet.ConvNet.Backends.Cuda;
using MLNet.ConvNet.Data;
using MLNet.ConvNet.Layers;
using MLNet.ConvNet.Optimizers;
using MLNet.ConvNet.Training;
using Xunit;

namespace MLNet.ConvNet.Cuda.Tests;

/// <summary>The kernel profiler: a wrapper over the CUDA backend that training runs through unchanged.</summary>
public sealed class ProfilerTests(ITestOutputHelper output)
{
    /// <summary>
    /// LeNet-5 trained through the profiler: the weights match those of the same training on the bare backend (the
    /// wrapper changes nothing but adds events), and the summary charges device time to the convolution and optimizer
    /// kernels. A first bare run warms up cuDNN's algorithm choice, so both compared runs use the same algorithms; a few
    /// steps only, because some of cuDNN's algorithms add with atomics and two runs drift apart step by step (over 20
    /// steps of SGD two runs on the H200 ended 6.5e-4 apart, relative to the largest weight).
    /// </summary>
    [Fact]
    public void Training_through_the_profiler_gives_the_same_weights_and_a_breakdown()
    {
        var gpu = Gpu.Require();
        var rng = new Random(3);
        var features = new float[64 * 4 * 784];
        for (int i = 0; i < features.Length; i++) features[i] = (float)rng.NextDouble();
        var data = new InMemoryDataset(features, Enumerable.Range(0, 64 * 4).Select(i => i % 10).ToArray(), new Shape(1, 28, 28), 10);
        float[] Train(IBackend backend)
        {
            var net = Presets.LeNet5(10, backend).Build(new Shape(1, 28, 28), seed: 5);
            new Trainer(net, new Sgd(net.Parameters, 0.01), new TrainerOptions { Epochs = 1, BatchSize = 64, Seed = 1 })
                .Fit(data, cancellation: TestContext.Current.CancellationToken);
            return net.Parameters.SelectMany(p => p.Value.ToHost()).ToArray();
        }
        Train(gpu); // warm-up: cuDNN's algorithm search for every convolution shape
        var profiler = new CudaKernelProfiler(gpu, skipCalls: 0, maxCalls: 100_000);
        var profiled = Train(profiler);
        var kernels = profiler.Summary();
        foreach (var k in kernels) output.WriteLine($"{k.Kernel,-28} {k.Calls,6} {k.Milliseconds,9:F3} ms");
        var plain = Train(gpu);
        var again = Train(gpu);
        output.WriteLine($"bare run vs bare run: largest difference {plain.Zip(again, (a, b) => Math.Abs((double)a - b)).Max():G3}");
        // Deterministic algorithms are not guaranteed, so the weights are compared to fp32 accuracy, not bit for bit.
        double worst = plain.Zip(profiled, (a, b) => Math.Abs((double)a - b)).Max(), scale = plain.Max(v => Math.Abs((double)v));
        output.WriteLine($"profiled run vs bare run: largest difference {worst:G3}, largest weight {scale:G3}");
        Assert.True(worst <= 1e-4 * scale, $"weights through the profiler differ by {worst:G3} (scale {scale:G3})");
        Assert.Contains(kernels, k => k.Kernel == "ConvolutionForward" && k.Calls == 4 * 2 && k.Milliseconds > 0);
        Assert.Contains(kernels, k => k.Kernel == "SgdStep" && k.Calls > 0);
        Assert.True(kernels.All(k => k.Milliseconds >= 0));
    }
}
