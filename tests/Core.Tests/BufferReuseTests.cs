using MLNet.ConvNet.Backends.Cpu;
using MLNet.ConvNet.Data;
using MLNet.ConvNet.Layers;
using MLNet.ConvNet.Ops;
using MLNet.ConvNet.Optimizers;
using MLNet.ConvNet.Tests.TestKit;
using MLNet.ConvNet.Training;
using Xunit;

namespace MLNet.ConvNet.Tests;

/// <summary>
/// Buffer reuse (Network.ReuseBuffers, the ops' "into" overloads, gradients written straight into Parameter.Gradient):
/// the same numbers as the allocating path, no aliasing surprises when reuse is off, clear errors for bad outputs.
/// </summary>
public class BufferReuseTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static InMemoryDataset RandomImages(int count, int seed, int classes = 10)
    {
        var rng = new Random(seed);
        var y = new int[count];
        for (int i = 0; i < count; i++) y[i] = rng.Next(classes);
        return new InMemoryDataset(TestData.Uniform(rng, count * 784, 1f), y, new Shape(1, 28, 28), classes);
    }

    /// <summary>
    /// The Trainer (reuse on, gradients written directly) and a plain loop over the allocating ops (reuse off,
    /// ZeroGrad then accumulate) take the same steps: bit-identical weights, for each preset that trains in a test's time.
    /// </summary>
    [Theory]
    [InlineData("lenet5")]
    [InlineData("cnn2bn")]
    [InlineData("resnet")]
    public void TrainerWithReuseMatchesAPlainAllocatingLoop(string preset)
    {
        var data = RandomImages(70, 3); // 70 = 32 + 32 + 6: a shorter last batch changes the buffers' shapes
        var a = Presets.ByName(preset).Build(data.SampleShape, seed: 5);
        var b = Presets.ByName(preset).Build(data.SampleShape, seed: 5);
        var trainer = new Trainer(a, new Adam(a.Parameters, 1e-3), new TrainerOptions { Epochs = 2, BatchSize = 32, Seed = 9 });
        trainer.Fit(data, cancellation: Ct);

        // The Trainer's shuffle: its own Rng stream, one permutation per epoch (Trainer.cs).
        var rng = new Rng(Rng.Mix(9, 0x5348_5546));
        var opt = new Adam(b.Parameters, 1e-3);
        Assert.False(b.ReuseBuffers);
        var features = new float[32 * 784];
        var labels = new int[32];
        for (int epoch = 0; epoch < 2; epoch++)
        {
            var order = rng.Permutation(data.Count);
            for (int start = 0; start < data.Count; start += 32)
            {
                int n = Math.Min(32, data.Count - start);
                data.CopyBatch(order.AsSpan(start, n), features.AsSpan(0, n * 784), labels.AsSpan(0, n));
                var x = Tensor.FromHost(features.AsSpan(0, n * 784), new Shape(n, 1, 28, 28));
                var ce = CrossEntropy.Forward(b.Forward(x, training: true), labels.AsSpan(0, n));
                opt.ZeroGrad();
                b.BackwardParameters(CrossEntropy.Backward(ce));
                opt.Step();
            }
        }
        Assert.Equal(b.ComputeHash(), a.ComputeHash());
        Assert.False(a.ReuseBuffers); // Fit restores the setting
    }

    [Fact]
    public void WithoutReuseEveryForwardReturnsANewTensor()
    {
        var net = Presets.LeNet5().Build(new Shape(1, 28, 28), seed: 1);
        var rng = new Random(4);
        var x1 = Tensor.FromHost(TestData.Uniform(rng, 2 * 784), 2, 1, 28, 28);
        var x2 = Tensor.FromHost(TestData.Uniform(rng, 2 * 784), 2, 1, 28, 28);
        var y1 = net.Forward(x1, training: false);
        var kept = y1.ToHost();
        var y2 = net.Forward(x2, training: false);
        Assert.NotSame(y1, y2);
        Assert.Equal(kept, y1.ToHost());               // the first result survives the second call
        Assert.NotEqual(kept, y2.ToHost());

        net.ReuseBuffers = true;
        Assert.All(net.AllLayers(), l => Assert.True(l.ReuseBuffers));
        var r1 = net.Forward(x1, training: false);
        var r2 = net.Forward(x2, training: false);
        Assert.Same(r1, r2);                           // documented: the network's buffer, overwritten by the next call
        Assert.Equal(y2.ToHost(), r2.ToHost());        // and the same numbers as the allocating path
    }

    /// <summary>
    /// An inference pass with reuse on writes the simple layers' outputs into two shared buffers (InferenceBuffers):
    /// the same numbers as the allocating path for every preset (Flatten's and Dropout's views of their input, a
    /// residual block's own buffers), through batch sizes that grow and shrink.
    /// </summary>
    [Theory]
    [InlineData("lenet5")]
    [InlineData("cnn2bn")]
    [InlineData("vgg")]
    [InlineData("resnet")]
    public void InferenceWithSharedOutputBuffersMatchesTheAllocatingPath(string preset)
    {
        var shape = new Shape(1, 28, 28);
        var shared = Presets.ByName(preset).Build(shape, seed: 2);
        var plain = Presets.ByName(preset).Build(shape, seed: 2);
        shared.ReuseBuffers = true;
        var rng = new Random(8);
        foreach (int n in new[] { 5, 2, 9, 5 })
        {
            var x = Tensor.FromHost(TestData.Uniform(rng, n * 784), new Shape(n, 1, 28, 28));
            Assert.Equal(plain.Forward(x, training: false).ToHost(), shared.Forward(x, training: false).ToHost());
        }
        // A training pass afterwards still works from the layers' own buffers and gives the allocating path's numbers.
        var t = Tensor.FromHost(TestData.Uniform(rng, 4 * 784), new Shape(4, 1, 28, 28));
        foreach (var d in shared.AllLayers().OfType<Layers.Dropout>()) d.Step = 0;
        foreach (var d in plain.AllLayers().OfType<Layers.Dropout>()) d.Step = 0;
        Assert.Equal(plain.Forward(t, training: true).ToHost(), shared.Forward(t, training: true).ToHost());
    }

    /// <summary>
    /// What the shared buffers are for: the first inference pass at a new batch size allocates about two layer outputs,
    /// not one per layer (cnn2bn: the two largest are 41 % of the sum). Measured on this thread with a one-thread
    /// backend, so kernels run here and other tests' allocations do not count.
    /// </summary>
    [Fact]
    public void AnInferencePassAllocatesTwoActivationsNotOnePerLayer()
    {
        var backend = new CpuBackend(1);
        var net = Presets.ByName("cnn2bn", 10, backend).Build(new Shape(1, 28, 28), seed: 3);
        net.ReuseBuffers = true;
        var rng = new Random(2);
        net.Forward(Tensor.FromHost(TestData.Uniform(rng, 2 * 784), new Shape(2, 1, 28, 28), backend), training: false); // warm the kernels' scratch
        const int n = 200;
        var x = Tensor.FromHost(TestData.Uniform(rng, n * 784), new Shape(n, 1, 28, 28), backend);
        long perLayer = 0;
        var s = new Shape(n, 1, 28, 28);
        foreach (var layer in net.Layers) { s = layer.OutputShape(s); if (layer is not Layers.Flatten and not Layers.Dropout) perLayer += 4L * s.Length; }
        long before = GC.GetAllocatedBytesForCurrentThread();
        net.Forward(x, training: false);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated < perLayer / 2, $"allocated {allocated:N0} bytes; the layer outputs are {perLayer:N0}");
        before = GC.GetAllocatedBytesForCurrentThread();
        net.Forward(x, training: false);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 64 * 1024); // warm: the views are kept
    }

    [Fact]
    public void ATensorSlotKeepsTheLastTwoShapesAndHandsOutNewTensorsWithoutReuse()
    {
        var slot = new TensorSlot();
        var backend = CpuBackend.Default;
        Shape full = new(64, 3), last = new(32, 3), evaluation = new(500, 3);
        var a = slot.Get(backend, full, reuse: true);
        var b = slot.Get(backend, last, reuse: true);
        Assert.Same(a, slot.Get(backend, full, reuse: true));   // a full batch and an epoch's last batch both stay
        Assert.Same(b, slot.Get(backend, last, reuse: true));
        var c = slot.Get(backend, evaluation, reuse: true);      // a third shape evicts the least recently used (full)
        Assert.Same(b, slot.Get(backend, last, reuse: true));
        Assert.NotSame(a, slot.Get(backend, full, reuse: true));
        Assert.Equal(evaluation, c.Shape);
        Assert.NotSame(slot.Get(backend, full, reuse: false), slot.Get(backend, full, reuse: false));
        var other = new CpuBackend(1);                          // a kept tensor never crosses to another backend
        Assert.Same(other, slot.Get(other, last, reuse: true).Backend);
    }

    [Fact]
    public void ResidualChildrenFollowTheSetting()
    {
        var net = Presets.SmallResNet().Build(new Shape(1, 28, 28), seed: 1);
        net.ReuseBuffers = true;
        Assert.All(net.AllLayers(), l => Assert.True(l.ReuseBuffers));
        net.ReuseBuffers = false;
        Assert.All(net.AllLayers(), l => Assert.False(l.ReuseBuffers));
    }

    /// <summary>
    /// Without ZeroGrad in between, a second backward pass adds to the gradients (the first one wrote them directly):
    /// the sum of two passes equals twice one pass, for every parameter kind (conv, batch norm, dense).
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void GradientsAccumulateAcrossBackwardPassesWithoutZeroGrad(bool reuse)
    {
        var net = CheckpointTests.SmallNet(2);
        net.ReuseBuffers = reuse;
        var opt = new Sgd(net.Parameters, 0.1);
        var x = Tensor.FromHost(TestData.Uniform(new Random(6), 6 * 64), 6, 1, 8, 8);
        int[] labels = [0, 1, 2, 2, 1, 0];
        // Dropout draws a new mask per forward pass; p = 0.3 would make the two passes differ, so take it out of play.
        foreach (var d in net.AllLayers().OfType<Layers.Dropout>()) d.Step = 0;
        opt.ZeroGrad();
        net.Backward(CrossEntropy.Backward(CrossEntropy.Forward(net.Forward(x, training: true), labels)));
        var once = net.Parameters.Select(p => p.Gradient.ToHost()).ToArray();
        foreach (var d in net.AllLayers().OfType<Layers.Dropout>()) d.Step = 0;
        // Batch norm's running statistics move, but training-mode outputs use batch statistics: the same gradients.
        net.Backward(CrossEntropy.Backward(CrossEntropy.Forward(net.Forward(x, training: true), labels)));
        for (int i = 0; i < once.Length; i++)
        {
            var twice = net.Parameters[i].Gradient.ToHost();
            Assert.Contains(once[i], v => v != 0f);
            for (int j = 0; j < twice.Length; j++)
                Assert.True(twice[j] == 2 * once[i][j], $"{net.Parameters[i].Name}[{j}]: {twice[j]} vs 2 x {once[i][j]}");
        }
    }

    [Fact]
    public void IntoOverloadsRejectWrongShapeBackendAndAliasing()
    {
        var rng = new Random(8);
        var x = Tensor.FromHost(TestData.Uniform(rng, 2 * 3 * 5 * 5), 2, 3, 5, 5);
        var w = Tensor.FromHost(TestData.Uniform(rng, 4 * 3 * 3 * 3), 4, 3, 3, 3);
        var g = ConvGeometry.Create(x.Shape, w.Shape, new ConvolutionOptions { Padding = 1 });

        var wrongShape = Assert.ThrowsAny<ArgumentException>(() => Convolution.Forward(g, x, w, null, Tensor.Zeros(new Shape(2, 4, 4, 4))));
        Assert.Equal("y", wrongShape.ParamName);
        Assert.Contains("[2, 4, 5, 5]", wrongShape.Message);

        var otherBackend = new CpuBackend(1).Allocate(g.Output);
        var wrongBackend = Assert.ThrowsAny<ArgumentException>(() => Convolution.Forward(g, x, w, null, otherBackend));
        Assert.Contains("lives on", wrongBackend.Message);

        var inPlace = Assert.ThrowsAny<ArgumentException>(() => Ops.Activation.Forward(ActivationKind.ReLU, x, x.Reshape(2, 3, 5, 5)));
        Assert.Contains("shares memory", inPlace.Message);

        var wrongInput = Assert.ThrowsAny<ArgumentException>(() => Convolution.Forward(g, Tensor.Zeros(new Shape(2, 3, 6, 6)), w, null, Tensor.Zeros(g.Output)));
        Assert.Equal("x", wrongInput.ParamName);

        var cache = BatchNormCache.Allocate(CpuBackend.Default, 5);
        var bnOut = Tensor.Zeros(x.Shape);
        var gamma = Tensor.Zeros(new Shape(3)); var beta = Tensor.Zeros(new Shape(3));
        var badCache = Assert.ThrowsAny<ArgumentException>(() =>
            Ops.BatchNorm.ForwardTraining(x, gamma, beta, Tensor.Zeros(new Shape(3)), Tensor.Zeros(new Shape(3)), cache, bnOut));
        Assert.Equal("cache", badCache.ParamName);
    }

    /// <summary>
    /// Each "into" overload, on the fast kernels, writes what the readable reference kernels compute for the same op
    /// (the allocating ops now call the "into" ones, so comparing the two would check nothing), and the cross-entropy
    /// against its float64 definition. Tolerance 2e-5 relative: the fast kernels sum in another order (FastKernelTests).
    /// </summary>
    [Fact]
    public void IntoOverloadsMatchTheReferenceKernels()
    {
        var rng = new Random(11);
        var reference = new MLNet.ConvNet.Backends.Reference.ReferenceBackend();
        Tensor R(params int[] dims) => Tensor.FromHost(TestData.Uniform(rng, new Shape(dims).Length), dims);
        Tensor Ref(Tensor t) => Tensor.FromHost(t.ToHost(), t.Shape, reference);
        void Close(Tensor got, Tensor want, string what) => GradCheck.AssertClose(got.ToHost(), TestData.ToDouble(want), what, relTol: 2e-5);

        var x = R(3, 4, 7, 6); var w = R(6, 2, 3, 3); var bias = R(6);
        var options = new ConvolutionOptions { Padding = 1, Stride = 2, Groups = 2 };
        var g = ConvGeometry.Create(x.Shape, w.Shape, options);
        var y = Tensor.Zeros(g.Output);
        Convolution.Forward(g, x, w, bias, y);
        Close(y, Convolution.Forward(Ref(x), Ref(w), Ref(bias), options), "conv y");
        var dy = R(g.Output.ToArray());
        var dx = Tensor.Zeros(x.Shape); var dw = Tensor.Zeros(w.Shape); var db = Tensor.Zeros(bias.Shape);
        Convolution.BackwardData(g, w, dy, dx); Convolution.BackwardFilter(g, x, dy, dw); Convolution.BackwardBias(dy, db);
        Close(dx, Convolution.BackwardData(x.Shape, Ref(w), Ref(dy), options), "conv dx");
        Close(dw, Convolution.BackwardFilter(Ref(x), w.Shape, Ref(dy), options), "conv dw");
        Close(db, Convolution.BackwardBias(Ref(dy)), "conv db");

        var poolOptions = new PoolingOptions { Window = 3, Stride = 2, Padding = 1 };
        var pg = PoolGeometry.Create(x.Shape, poolOptions);
        var py = Tensor.Zeros(pg.Output);
        Pooling.Forward(pg, x, py);
        Close(py, Pooling.Forward(Ref(x), poolOptions), "pool y");
        var pdy = R(pg.Output.ToArray()); var pdx = Tensor.Zeros(x.Shape);
        Pooling.Backward(pg, x, py, pdy, pdx);
        Close(pdx, Pooling.Backward(Ref(x), Ref(py), Ref(pdy), poolOptions), "pool dx");

        var d = R(3, 10); var dwt = R(4, 10); var dbias = R(4); var dout = Tensor.Zeros(new Shape(3, 4));
        Ops.Dense.Forward(d, dwt, dbias, dout);
        Close(dout, Ops.Dense.Forward(Ref(d), Ref(dwt), Ref(dbias)), "dense y");
        var ddy = R(3, 4); var ddx = Tensor.Zeros(d.Shape); var ddw = Tensor.Zeros(dwt.Shape);
        Ops.Dense.BackwardData(dwt, ddy, ddx); Ops.Dense.BackwardWeight(d, ddy, ddw);
        Close(ddx, Ops.Dense.BackwardData(d.Shape, Ref(dwt), Ref(ddy)), "dense dx");
        Close(ddw, Ops.Dense.BackwardWeight(Ref(d), Ref(ddy)), "dense dw");

        // Cross-entropy against its definition in float64: p = softmax(z), loss = logsumexp(z) - z[label], dz = (p - onehot) / N.
        int[] labels = [3, 0, 2];
        var z = dout.ToHost();
        var wantP = new double[z.Length]; var wantD = new double[z.Length];
        double wantMean = 0;
        for (int i = 0; i < 3; i++)
        {
            double max = Enumerable.Range(0, 4).Max(j => (double)z[i * 4 + j]);
            double sum = Enumerable.Range(0, 4).Sum(j => Math.Exp(z[i * 4 + j] - max));
            for (int j = 0; j < 4; j++)
            {
                wantP[i * 4 + j] = Math.Exp(z[i * 4 + j] - max) / sum;
                wantD[i * 4 + j] = (wantP[i * 4 + j] - (j == labels[i] ? 1 : 0)) / 3;
            }
            wantMean += (max + Math.Log(sum) - z[i * 4 + labels[i]]) / 3;
        }
        var labelTensor = Tensor.FromHost([3f, 0f, 2f], 3);
        var loss = Tensor.Zeros(new Shape(3)); var probabilities = Tensor.Zeros(dout.Shape);
        float mean = CrossEntropy.Forward(dout, labelTensor, loss, probabilities);
        Assert.Equal(wantMean, mean, 1e-6);
        GradCheck.AssertClose(probabilities.ToHost(), wantP, "cross-entropy probabilities");
        var dlogits = Tensor.Zeros(dout.Shape);
        CrossEntropy.Backward(probabilities, labelTensor, dlogits);
        GradCheck.AssertClose(dlogits.ToHost(), wantD, "cross-entropy dlogits");
        Assert.ThrowsAny<ArgumentException>(() => CrossEntropy.Forward(dout, Tensor.FromHost([3f, 0f, 4f], 3), loss, probabilities));
    }
}

/// <summary>
/// After warm-up a training step allocates nothing on the managed heap (issue 5). Measured with the process-wide
/// counter, so this class runs alone (other tests allocate on other threads).
/// </summary>
[Collection(nameof(AllocationCollection))]
public class TrainingAllocationTests
{
    [Theory]
    [InlineData("lenet5", 1)]
    [InlineData("lenet5", 2)]
    [InlineData("cnn2bn", 2)]
    public void AWarmTrainingStepAllocatesNothing(string preset, int threads)
    {
        var backend = new CpuBackend(threads);
        var rng = new Random(1);
        int count = 64 * 46;
        var y = new int[count];
        for (int i = 0; i < count; i++) y[i] = rng.Next(10);
        var data = new InMemoryDataset(TestData.Uniform(rng, count * 784, 1f), y, new Shape(1, 28, 28), 10);
        var net = Presets.ByName(preset, backend: backend).Build(data.SampleShape, seed: 2);
        var perStep = new List<long>();
        long last = 0;
        var trainer = new Trainer(net, new Adam(net.Parameters, 1e-3), new TrainerOptions
        {
            Epochs = 1, BatchSize = 64, ProgressInterval = 1,
            OnBatch = p =>
            {
                long now = GC.GetTotalAllocatedBytes(precise: true);
                // Batches 1-40 warm up: buffers, ArrayPool's per-thread caches, which fill on whichever thread first takes a
                // given loop index (the pool hands indices out dynamically), and the JIT's tiering, which recompiles a
                // method after 30 calls on a background thread (its allocations show in this process-wide counter; with
                // 10 batches of warm-up a CI run once saw 7 KB and 10 KB in batches 11 and 12).
                if (p.Batch > 40) perStep.Add(now - last);
                last = GC.GetTotalAllocatedBytes(precise: true);
            },
        });
        trainer.Fit(data, cancellation: TestContext.Current.CancellationToken);
        Assert.Equal(6, perStep.Count);
        Assert.True(perStep.All(b => b == 0), $"{preset}, {threads} thread(s): bytes allocated per step after warm-up: {string.Join(", ", perStep)}");
    }
}

[CollectionDefinition(nameof(AllocationCollection), DisableParallelization = true)]
public class AllocationCollection;
