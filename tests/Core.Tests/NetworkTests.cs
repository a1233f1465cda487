using MLNet.ConvNet.Backends.Cpu;
using MLNet.ConvNet.Layers;
using MLNet.ConvNet.Tests.TestKit;
using Xunit;
using ActivationKind = MLNet.ConvNet.Ops.ActivationKind;
using CrossEntropy = MLNet.ConvNet.Ops.CrossEntropy;
using LrnOptions = MLNet.ConvNet.Ops.LrnOptions;
using PoolingMode = MLNet.ConvNet.Ops.PoolingMode;
using PoolingOptions = MLNet.ConvNet.Ops.PoolingOptions;

namespace MLNet.ConvNet.Tests;

public class NetworkTests
{
    private static readonly Shape Mnist = new(1, 28, 28);

    [Fact]
    public void LeNet5HasTheBenchmarksParameterCount()
    {
        var net = Presets.LeNet5().Build(Mnist);
        // conv 6*1*25+6, conv 16*6*25+16, dense 400*120+120, 120*84+84, 84*10+10
        Assert.Equal(61_706, net.ParameterCount);
        Assert.Equal(new Shape(10), net.OutputShape);
        Assert.Equal(["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "dense1.weight", "dense1.bias",
            "dense2.weight", "dense2.bias", "dense3.weight", "dense3.bias"], net.Parameters.Select(p => p.Name));
        Assert.Equal(new Shape(16, 6, 5, 5), net.Parameters[2].Value.Shape);
        Assert.Equal(new Shape(120, 400), net.Parameters[4].Value.Shape);
    }

    [Fact]
    public void Cnn2BnHasTheBenchmarksParameterCount()
    {
        var net = Presets.Cnn2Bn().Build(Mnist);
        // conv 32*9+32, BN 64, conv 64*32*9+64, BN 128, dense 3136*128+128, 128*10+10
        Assert.Equal(421_834, net.ParameterCount);
        Assert.Equal(["bn1.running_mean", "bn1.running_var", "bn2.running_mean", "bn2.running_var"], net.Buffers.Select(b => b.Name));
    }

    [Fact]
    public void SmallVggAndResNetBuildForSeveralInputShapes()
    {
        var vgg = Presets.SmallVgg().Build(Mnist);
        int convs = 9 * (1 * 32 + 32 * 32 + 32 * 64 + 64 * 64), bns = 2 * (32 + 32 + 64 + 64 + 128);
        Assert.Equal(convs + bns + 64 * 7 * 7 * 128 + 128 * 10 + 10, vgg.ParameterCount);

        var resnet = Presets.SmallResNet().Build(Mnist);
        int stem = 9 * 16 + 2 * 16;
        int res16 = 2 * 9 * 16 * 16 + 2 * 2 * 16;
        int res32 = 9 * 16 * 32 + 9 * 32 * 32 + 2 * 2 * 32 + 16 * 32 + 2 * 32;
        int res64 = 9 * 32 * 64 + 9 * 64 * 64 + 2 * 2 * 64 + 32 * 64 + 2 * 64;
        Assert.Equal(stem + res16 + res32 + res64 + 64 * 10 + 10, resnet.ParameterCount);
        Assert.Contains(resnet.Parameters, p => p.Name == "res3.proj.weight");
        Assert.DoesNotContain(resnet.Parameters, p => p.Name.StartsWith("res1.proj"));

        foreach (var (name, shape) in new[] { ("vgg", new Shape(3, 32, 32)), ("resnet", new Shape(3, 32, 32)), ("resnet", new Shape(2, 5, 9)),
                                              ("resnet", new Shape(1, 40)), ("lenet5", new Shape(3, 28, 28)), ("cnn2bn", new Shape(1, 20, 24)) })
        {
            var net = Presets.ByName(name, classes: 7).Build(shape);
            var y = net.Forward(Tensor.FromHost(new float[2 * shape.Length], new Shape([2, .. shape.AsSpan()])), training: false);
            Assert.Equal(new Shape(2, 7), y.Shape);
        }
    }

    [Theory]
    [InlineData("lenet5", new[] { 1, 8, 8 }, "layer 3 'conv2' (Conv) cannot take input [N, 6, 4, 4]")]
    [InlineData("cnn2bn", new[] { 1, 2, 2 }, "layer 7 'pool2' (Pool) cannot take input [N, 64, 1, 1]")]
    [InlineData("vgg", new[] { 3, 3, 3 }, "layer 13 'pool2' (Pool) cannot take input [N, 64, 1, 1]")]
    public void BuildNamesTheLayerWhereASpatialSizeShrinksBelowOne(string preset, int[] sample, string expected)
    {
        var net = Presets.ByName(preset);
        var e = Assert.Throws<ArgumentException>(() => net.Build(new Shape(sample)));
        Assert.Contains(expected, e.Message);
        Assert.Null(net.InputShape);
        Assert.All(net.Layers, l => Assert.Null(l.BuiltInput)); // nothing half built
    }

    [Fact]
    public void BadNetworksAndInputsThrowClearly()
    {
        Assert.Throws<ArgumentException>(() => new Network());
        var dense = new Dense(3);
        Assert.Throws<ArgumentException>(() => new Network(dense, dense));
        Assert.Contains("'x'", Assert.Throws<ArgumentException>(() => new Network(new Dense(2) { Name = "x" }, new Dense(2) { Name = "x" })).Message);
        var net = Presets.LeNet5();
        Assert.Throws<InvalidOperationException>(() => net.Forward(Tensor.FromHost(new float[784], 1, 1, 28, 28), false));
        net.Build(Mnist);
        var e = Assert.Throws<ArgumentException>(() => net.Forward(Tensor.FromHost(new float[2 * 784], 2, 1, 784), false));
        Assert.Contains("[N, 1, 28, 28]", e.Message);
        Assert.Throws<InvalidOperationException>(() => net.Build(Mnist));
    }

    [Fact]
    public void InitializationIsSeededAndFollowsHeOrGlorot()
    {
        Assert.Equal(Presets.LeNet5().Build(Mnist, seed: 3).ComputeHash(), Presets.LeNet5().Build(Mnist, seed: 3).ComputeHash());
        Assert.NotEqual(Presets.LeNet5().Build(Mnist, seed: 3).ComputeHash(), Presets.LeNet5().Build(Mnist, seed: 4).ComputeHash());

        // ReLU net: He normal, std sqrt(2 / fanIn). dense1 has 48,000 weights, so the sample std is within 2% (>20 sigma).
        var lenet = Presets.LeNet5().Build(Mnist, seed: 1);
        var w = lenet.Parameters.First(p => p.Name == "dense1.weight").Value.ToHost();
        double std = Math.Sqrt(w.Sum(v => (double)v * v) / w.Length);
        Assert.InRange(std / Math.Sqrt(2.0 / 400), 0.98, 1.02);
        Assert.All(lenet.Parameters.First(p => p.Name == "dense1.bias").Value.ToHost(), b => Assert.Equal(0f, b));

        // No ReLU: Glorot uniform in +-sqrt(6 / (fanIn + fanOut)); variance a^2 / 3.
        var tanh = new Network(new Dense(300), new Activation(ActivationKind.Tanh), new Dense(100)).Build(new Shape(200), seed: 1);
        var g = tanh.Parameters[0].Value.ToHost();
        double a = Math.Sqrt(6.0 / (200 + 300));
        Assert.All(g, v => Assert.InRange(v, -a, a));
        Assert.InRange(g.Average(v => (double)v * v) / (a * a / 3), 0.97, 1.03);
        var bn = Presets.Cnn2Bn().Build(Mnist);
        Assert.All(bn.Parameters.First(p => p.Name == "bn1.gamma").Value.ToHost(), v => Assert.Equal(1f, v));
        Assert.All(bn.Buffers.First(p => p.Name == "bn1.running_var").Value.ToHost(), v => Assert.Equal(1f, v));
    }

    [Fact]
    public void BackwardMatchesFloat32FiniteDifferencesOfTheLoss()
    {
        // A smooth network (LRN, tanh, average pooling) so finite differences do not straddle kinks.
        var net = new Network(new Conv(3, 3, Conv.DefaultOptions with { Padding = 1 }), new Lrn(new LrnOptions { Size = 3, Alpha = 0.5f }),
            new BatchNorm(), new Activation(ActivationKind.Tanh),
            new Pool(new PoolingOptions { Mode = PoolingMode.AverageIncludingPadding }), new Flatten(), new Dense(4)).Build(new Shape(2, 6, 6), seed: 5);
        var rng = new Random(6);
        var x = Tensor.FromHost(TestData.Uniform(rng, 4 * 72, 1f), 4, 2, 6, 6);
        int[] labels = [0, 3, 1, 2];
        double Loss() => CrossEntropy.Forward(net.Forward(x, training: true), labels).MeanLoss;

        foreach (var p in net.Parameters) p.Gradient.CopyFromHost(new float[p.Value.Length]);
        var ce = CrossEntropy.Forward(net.Forward(x, training: true), labels);
        var dx = net.Backward(CrossEntropy.Backward(ce)).ToHost();

        // Central differences in float32 with h = 1e-2. Error budget: truncation h^2/6 |L'''| ~ 2e-5 for these O(1)
        // derivatives; rounding |L| * 6e-8 / h ~ 1e-5 (the loss is a mean of float32 per-sample losses of ~1.5).
        // Observed: at most ~5e-5 on gradients of scale ~0.3. Tolerance 1e-3 of the largest gradient plus 2e-5
        // (~3e-4 here) keeps a 5x margin, while a missing term or a wrong index in any layer's backward (an O(0.1)
        // relative error) fails.
        const float h = 1e-2f;
        void Check(Tensor value, float[] analytic, string what)
        {
            var v = value.ToHost();
            var numeric = new double[v.Length];
            for (int i = 0; i < v.Length; i++)
            {
                float keep = v[i];
                v[i] = keep + h; value.CopyFromHost(v); double up = Loss();
                v[i] = keep - h; value.CopyFromHost(v); double down = Loss();
                v[i] = keep; value.CopyFromHost(v);
                numeric[i] = (up - down) / ((double)(keep + h) - (keep - h));
            }
            GradCheck.AssertClose(analytic, numeric, what, relTol: 1e-3, absTol: 2e-5);
        }
        foreach (var p in net.Parameters) Check(p.Value, p.Gradient.ToHost(), p.Name);
        Check(x, dx, "dx");
    }

    [Fact]
    public void ForwardAndBackwardDoNotDependOnTheThreadCount()
    {
        (string Hash, float[] Grad) Run(CpuBackend b)
        {
            var net = Presets.Cnn2Bn(backend: b).Build(Mnist, seed: 2);
            var x = Tensor.FromHost(TestData.Uniform(new Random(3), 8 * 784, 1f), new Shape(8, 1, 28, 28), b);
            var ce = CrossEntropy.Forward(net.Forward(x, training: true), [0, 1, 2, 3, 4, 5, 6, 7]);
            net.Backward(CrossEntropy.Backward(ce));
            return (net.ComputeHash(), net.Parameters.SelectMany(p => p.Gradient.ToHost()).ToArray());
        }
        var one = Run(new CpuBackend(maxThreads: 1));
        var four = Run(new CpuBackend(maxThreads: 4));
        Assert.Equal(one.Hash, four.Hash); // includes the running statistics the forward pass updated
        Assert.Equal(one.Grad, four.Grad);
    }

    [Theory]
    [InlineData(1, 0, false)]
    [InlineData(3, 0, false)]
    [InlineData(3, 0, true)]
    [InlineData(3, 2, true)]                               // frozen up to the ReLU: the pair straddles the boundary, not fused
    [InlineData(3, 3, true)]                               // the pair frozen: fused in inference mode
    public void ReluThenMaxPoolRunsFusedWithTheSameBitsAsLayerByLayer(int threads, int frozen, bool parametersOnly)
    {
        // Network runs each ReLU and the max Pool after it as one backend call (Pool.ForwardRelu); the layers called one
        // by one run the two ops apart. Loss, weights, gradients, input gradient and inference outputs: the same bits.
        var b = new CpuBackend(maxThreads: threads);
        int[] labels = [.. Enumerable.Range(0, 16).Select(i => i % 10)];
        var x = Tensor.FromHost(TestData.Uniform(new Random(8), 16 * 784, 1f), new Shape(16, 1, 28, 28), b);
        static int[] Bits(IEnumerable<float> v) => [.. v.Select(BitConverter.SingleToInt32Bits)];

        var fused = Presets.LeNet5(backend: b).Build(Mnist, seed: 9);
        fused.FrozenLayerCount = frozen;
        var ceFused = CrossEntropy.Forward(fused.Forward(x, training: true), labels);
        Tensor? dxFused = null;
        if (parametersOnly) fused.BackwardParameters(CrossEntropy.Backward(ceFused));
        else dxFused = fused.Backward(CrossEntropy.Backward(ceFused));

        var apart = Presets.LeNet5(backend: b).Build(Mnist, seed: 9);
        int first = Enumerable.Range(frozen, apart.Layers.Count - frozen).First(i => apart.Layers[i].Parameters.Count > 0);
        Tensor h = x;
        for (int i = 0; i < apart.Layers.Count; i++) h = apart.Layers[i].Forward(h, training: i >= frozen);
        var ce = CrossEntropy.Forward(h, labels);
        Tensor? d = CrossEntropy.Backward(ce);
        for (int i = apart.Layers.Count - 1; i >= (parametersOnly ? first : 0); i--) d = apart.Layers[i].Backward(d!, inputGradient: !parametersOnly || i > first);

        Assert.Equal(BitConverter.SingleToInt32Bits(ce.MeanLoss), BitConverter.SingleToInt32Bits(ceFused.MeanLoss));
        Assert.Equal(apart.ComputeHash(), fused.ComputeHash());
        for (int i = first; i < apart.Layers.Count; i++)
            foreach (var (p, q) in apart.Layers[i].Parameters.Zip(fused.Layers[i].Parameters))
                Assert.True(Bits(p.Gradient.ToHost()).SequenceEqual(Bits(q.Gradient.ToHost())), p.Name);
        if (dxFused is not null) Assert.Equal(Bits(d!.ToHost()), Bits(dxFused.ToHost()));

        // Inference, with buffer reuse off and on: the same outputs as the layers one by one.
        h = x;
        foreach (var layer in apart.Layers) h = layer.Forward(h, training: false);
        var want = Bits(h.ToHost());
        Assert.Equal(want, Bits(fused.Forward(x, training: false).ToHost()));
        fused.ReuseBuffers = true;
        Assert.Equal(want, Bits(fused.Forward(x, training: false).ToHost()));

        // After a fused training pass the pool refuses a direct Backward, and the ReLU holds nothing.
        if (frozen == 0)
        {
            fused.ReuseBuffers = false;
            fused.Forward(x, training: true);
            Assert.IsType<Activation>(fused.Layers[1]);
            Assert.IsType<Pool>(fused.Layers[2]);
            var dy = b.Allocate(new Shape(16, 6, 14, 14));
            Assert.Contains("BackwardRelu", Assert.Throws<InvalidOperationException>(() => fused.Layers[2].Backward(dy)).Message);
            Assert.Contains("Forward first", Assert.Throws<InvalidOperationException>(() => fused.Layers[1].Backward(b.Allocate(new Shape(16, 6, 28, 28)))).Message);
        }
    }

    [Theory]
    [InlineData(1, false)]
    [InlineData(3, false)]
    [InlineData(3, true)]
    public void BatchNormThenReluRunsFusedWithTheSameBitsAsLayerByLayer(int threads, bool parametersOnly)
    {
        // Network runs each trained BatchNorm and the ReLU after it as one backend call; the layers called one by one
        // (Layer.Forward and Layer.Backward) run the two ops apart. Outputs, running statistics, gradients: the same bits.
        var b = new CpuBackend(maxThreads: threads);
        int[] labels = [.. Enumerable.Range(0, 16).Select(i => i % 10)];
        var x = Tensor.FromHost(TestData.Uniform(new Random(7), 16 * 784, 1f), new Shape(16, 1, 28, 28), b);
        static int[] Bits(IEnumerable<float> v) => [.. v.Select(BitConverter.SingleToInt32Bits)];

        var fused = Presets.Cnn2Bn(backend: b).Build(Mnist, seed: 6);
        var ceFused = CrossEntropy.Forward(fused.Forward(x, training: true), labels);
        Tensor? dxFused = null;
        if (parametersOnly) fused.BackwardParameters(CrossEntropy.Backward(ceFused));
        else dxFused = fused.Backward(CrossEntropy.Backward(ceFused));

        var apart = Presets.Cnn2Bn(backend: b).Build(Mnist, seed: 6);
        Tensor h = x;
        foreach (var layer in apart.Layers) h = layer.Forward(h, training: true);
        var ce = CrossEntropy.Forward(h, labels);
        Tensor d = CrossEntropy.Backward(ce);
        for (int i = apart.Layers.Count - 1; i >= 0; i--) d = apart.Layers[i].Backward(d);

        Assert.Equal(BitConverter.SingleToInt32Bits(ce.MeanLoss), BitConverter.SingleToInt32Bits(ceFused.MeanLoss));
        Assert.Equal(apart.ComputeHash(), fused.ComputeHash()); // weights and the running statistics the passes updated
        for (int i = 0; i < apart.Parameters.Count; i++)
            Assert.True(Bits(apart.Parameters[i].Gradient.ToHost()).SequenceEqual(Bits(fused.Parameters[i].Gradient.ToHost())), apart.Parameters[i].Name);
        if (dxFused is not null) Assert.Equal(Bits(d.ToHost()), Bits(dxFused.ToHost()));

        // The pair's layers hold no cache of their own after a fused pass: called directly, they refuse.
        Assert.IsType<BatchNorm>(fused.Layers[1]);
        Assert.IsType<Activation>(fused.Layers[2]);
        var dy = b.Allocate(new Shape(16, 32, 28, 28));
        Assert.Contains("BackwardRelu", Assert.Throws<InvalidOperationException>(() => fused.Layers[1].Backward(dy)).Message);
        Assert.Contains("Forward first", Assert.Throws<InvalidOperationException>(() => fused.Layers[2].Backward(dy)).Message);
    }

    [Theory]
    [InlineData("lenet5")]
    [InlineData("resnet")]
    public void BackwardParametersGivesTheSameGradientsAsBackward(string preset)
    {
        float[] Grads(bool full)
        {
            var net = Presets.ByName(preset).Build(Mnist, seed: 4);
            var x = Tensor.FromHost(TestData.Uniform(new Random(5), 3 * 784, 1f), 3, 1, 28, 28);
            var d = CrossEntropy.Backward(CrossEntropy.Forward(net.Forward(x, training: true), [1, 2, 3]));
            if (full) net.Backward(d); else net.BackwardParameters(d);
            return net.Parameters.SelectMany(p => p.Gradient.ToHost()).ToArray();
        }
        var want = Grads(full: true);
        Assert.Contains(want, g => g != 0);
        Assert.Equal(want, Grads(full: false));
    }

    [Fact]
    public void SummaryListsLayersShapesAndTotal()
    {
        var s = Presets.LeNet5().Build(Mnist).Summary();
        Assert.Contains("conv2", s);
        Assert.Contains("[N, 16, 10, 10]", s);
        Assert.EndsWith("parameters 61,706", s);
    }
}
