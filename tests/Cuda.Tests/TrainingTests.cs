using MLNet.ConvNet.Backends;
using MLNet.ConvNet.Backends.Cpu;
using MLNet.ConvNet.Data;
using MLNet.ConvNet.Layers;
using MLNet.ConvNet.Ops;
using MLNet.ConvNet.Optimizers;
using MLNet.ConvNet.Training;
using Xunit;

namespace MLNet.ConvNet.Cuda.Tests;

/// <summary>Training on the GPU against training on the CPU, and device memory over many steps.</summary>
public sealed class TrainingTests(ITestOutputHelper output)
{
    /// <summary>
    /// The same network (same seed) trained on the CPU and on the GPU with the same batches: the loss of every step and
    /// the weights after it agree to fp32 accuracy. SGD with momentum rather than Adam, because Adam's m/sqrt(v) turns
    /// a rounding difference in a near-zero gradient into a full-size step and would hide a real error in that noise.
    /// Dropout (cnn2bn) uses the same counter-based mask on both backends, so it needs no special case.
    /// </summary>
    [Theory]
    [InlineData("lenet5")]
    [InlineData("cnn2bn")]
    public void Gpu_training_follows_cpu_training_step_by_step(string net)
    {
        var gpu = Gpu.Require();
        var cpu = new CpuBackend();
        const int batch = 32, steps = 6;
        var rng = new Random(7);
        var cpuNet = Presets.ByName(net, 10, cpu).Build(new Shape(1, 28, 28), seed: 3);
        var gpuNet = Presets.ByName(net, 10, gpu).Build(new Shape(1, 28, 28), seed: 3);
        var cpuOpt = new Sgd(cpuNet.Parameters, learningRate: 0.05, momentum: 0.9);
        var gpuOpt = new Sgd(gpuNet.Parameters, learningRate: 0.05, momentum: 0.9);
        for (int step = 0; step < steps; step++)
        {
            var x = new float[batch * 784];
            for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
            var labels = Enumerable.Range(0, batch).Select(_ => rng.Next(10)).ToArray();
            float cpuLoss = Step(cpuNet, cpuOpt, x, labels, cpu);
            float gpuLoss = Step(gpuNet, gpuOpt, x, labels, gpu);
            output.WriteLine($"{net} step {step + 1}: loss cpu {cpuLoss:G9} gpu {gpuLoss:G9}");
            Assert.True(Math.Abs(cpuLoss - gpuLoss) <= 1e-4 * Math.Max(1, Math.Abs(cpuLoss)), $"step {step + 1}: loss {gpuLoss} on the GPU, {cpuLoss} on the CPU");
            for (int p = 0; p < cpuNet.Parameters.Count; p++)
            {
                var a = cpuNet.Parameters[p].Value.ToHost();
                var b = gpuNet.Parameters[p].Value.ToHost();
                double scale = a.Max(v => Math.Abs((double)v)), worst = a.Zip(b, (u, v) => Math.Abs((double)u - v)).Max();
                Assert.True(worst <= 1e-4 * Math.Max(scale, 1e-3), $"step {step + 1}, {cpuNet.Parameters[p].Name}: GPU differs from CPU by {worst:G3} (largest weight {scale:G3})");
            }
        }
    }

    private static float Step(Network net, Optimizer opt, float[] x, int[] labels, IBackend backend)
    {
        using var input = Tensor.FromHost(x, new Shape(labels.Length, 1, 28, 28), backend);
        var logits = net.Forward(input, training: true);
        var ce = CrossEntropy.Forward(logits, labels);
        opt.ZeroGrad();
        net.BackwardParameters(CrossEntropy.Backward(ce));
        opt.Step();
        return ce.MeanLoss;
    }

    /// <summary>
    /// After warm-up a training step takes no new device memory: the product's training loop (Trainer.Fit) over
    /// 110 batches, the driver's allocation count and the bytes held read at the first progress report from batch 10 on
    /// and at the last batch.
    /// </summary>
    [Fact]
    public void Device_memory_is_flat_over_a_hundred_steps()
    {
        var gpu = Gpu.Require();
        const int batch = 16, batches = 110;
        var rng = new Random(1);
        var features = new float[batch * batches * 784];
        for (int i = 0; i < features.Length; i++) features[i] = (float)rng.NextDouble();
        var data = new InMemoryDataset(features, Enumerable.Range(0, batch * batches).Select(i => i % 10).ToArray(), new Shape(1, 28, 28), 10);
        var net = Presets.Cnn2Bn(10, gpu).Build(new Shape(1, 28, 28), seed: 1);
        (long Count, long Bytes) warm = default, last = default;
        var trainer = new Trainer(net, new Adam(net.Parameters), new TrainerOptions
        {
            Epochs = 1, BatchSize = batch,
            OnBatch = p =>
            {
                if (warm == default && p.Batch >= 10) warm = (gpu.DriverAllocations, gpu.AllocatedBytes);
                if (p.Batch == batches) last = (gpu.DriverAllocations, gpu.AllocatedBytes);
            },
        });
        trainer.Fit(data, cancellation: TestContext.Current.CancellationToken);
        output.WriteLine($"driver allocations {warm.Count} -> {last.Count}, bytes held {warm.Bytes:N0} -> {last.Bytes:N0}");
        Assert.NotEqual(0, warm.Count);
        Assert.Equal(warm, last);
    }
}
