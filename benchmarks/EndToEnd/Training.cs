using System.Diagnostics;
using System.IO.Compression;
using System.Numerics.Tensors;
using MLNet.ConvNet.Backends.Cpu;
using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Benchmarks;

// Fashion-MNIST training of the peer's two networks, written directly on the ops (the engine's layers and
// Trainer live on another branch): the same layers, initialisation rule (PyTorch's default: uniform in
// +-1/sqrt(fan_in)), Adam (lr 1e-3), batch 64, cross-entropy, normalisation and epoch shuffling as the peer.
public static partial class Program
{
    private static void Train(string name, Settings s)
    {
        Console.WriteLine();
        var backend = s.Backend();
        var (trainX, trainY) = LoadSet(s.Data, "train", s.Limit);
        var (testX, testY) = LoadSet(s.Data, "t10k", s.Limit > 0 ? Math.Min(s.Limit, 10000) : 0);
        var rng = new Random(s.Seed);
        var net = name == "lenet5" ? Net.LeNet5(backend, rng) : Net.Cnn2Bn(backend, rng);
        Report($"{name}.params", net.Parameters.Sum(p => p.Value.Length).ToString());
        var adam = new Adam(net.Parameters, 1e-3f);
        net.Profile = s.Profile;
        int n = trainY.Length, batch = 64;
        var perm = Enumerable.Range(0, n).ToArray();
        var xb = new float[batch * 784];
        var yb = new int[batch];
        var fullBatch = backend.Allocate(new Shape(batch, 1, 28, 28));
        for (int epoch = 1; epoch <= s.Epochs; epoch++)
        {
            for (int i = n - 1; i > 0; i--) { int j = rng.Next(i + 1); (perm[i], perm[j]) = (perm[j], perm[i]); }
            double lossSum = 0; int batches = 0;
            long gen0 = GC.CollectionCount(0), allocated0 = GC.GetTotalAllocatedBytes(precise: true);
            var sw = Stopwatch.StartNew();
            for (int start = 0; start < n; start += batch)
            {
                int len = Math.Min(batch, n - start);
                for (int i = 0; i < len; i++)
                {
                    trainX.AsSpan(perm[start + i] * 784, 784).CopyTo(xb.AsSpan(i * 784));
                    yb[i] = trainY[perm[start + i]];
                }
                // The full-batch input tensor is reused; only the last, shorter batch gets its own.
                var x = len == batch ? fullBatch : Tensor.FromHost(xb.AsSpan(0, len * 784), new Shape(len, 1, 28, 28), backend);
                if (len == batch) x.CopyFromHost(xb);
                var logits = net.Forward(x, training: true, seed: (ulong)(epoch * 100000 + batches));
                var ce = CrossEntropy.Forward(logits, yb.AsSpan(0, len));
                net.Backward(CrossEntropy.Backward(ce));
                adam.Step();
                lossSum += ce.MeanLoss;
                batches++;
            }
            sw.Stop();
            if (s.Profile) { Console.WriteLine($"{name} epoch {epoch} per-batch profile:"); net.PrintProfile(batches); }
            double sec = sw.Elapsed.TotalSeconds;
            long gcs = GC.CollectionCount(0) - gen0;
            double bytesPerStep = (double)(GC.GetTotalAllocatedBytes(precise: true) - allocated0) / batches;
            var (acc, inferSec) = Evaluate(net, backend, testX, testY);
            Console.WriteLine($"{name} epoch {epoch}: train {sec:F2}s ({n / sec:F0} img/s), mean loss {lossSum / batches:F4}, " +
                              $"test acc {acc * 100:F2}%, inference {inferSec:F3}s, gen0 GCs {gcs}, managed allocation {bytesPerStep / 1024:F1} KiB/step");
            Report($"{name}.epoch{epoch}.train_s", $"{sec:F2}");
            Report($"{name}.epoch{epoch}.train_img_per_s", $"{n / sec:F0}");
            Report($"{name}.epoch{epoch}.test_acc_pct", $"{acc * 100:F2}");
            Report($"{name}.epoch{epoch}.infer10k_s", $"{inferSec:F3} ({testY.Length / inferSec:F0} img/s)");
            Report($"{name}.epoch{epoch}.alloc_bytes_per_step", $"{bytesPerStep:F0}");
        }
        Report($"{name}.peak_working_set_mib", $"{Environment.WorkingSet / 1048576.0:F0} now, {System.Diagnostics.Process.GetCurrentProcess().PeakWorkingSet64 / 1048576.0:F0} peak (process)");
    }

    private static (double Accuracy, double Seconds) Evaluate(Net net, CpuBackend backend, float[] testX, int[] testY)
    {
        int n = testY.Length, correct = 0;
        bool profile = net.Profile;
        net.Profile = false;
        var sw = Stopwatch.StartNew();
        for (int start = 0; start < n; start += 1000)
        {
            int len = Math.Min(1000, n - start);
            var x = Tensor.FromHost(testX.AsSpan(start * 784, len * 784), new Shape(len, 1, 28, 28), backend);
            var logits = net.Forward(x, training: false, seed: 0).ToHost();
            for (int i = 0; i < len; i++)
                if (TensorPrimitives.IndexOfMax(logits.AsSpan(i * 10, 10)) == testY[start + i]) correct++;
        }
        double seconds = sw.Elapsed.TotalSeconds;
        net.Profile = profile;
        return ((double)correct / n, seconds);
    }

    /// <summary>Images scaled to [0, 1] then (x - 0.2860) / 0.3530, as the peer; labels as ints.</summary>
    private static (float[] X, int[] Y) LoadSet(string dir, string prefix, int limit)
    {
        byte[] img = ReadGz(Path.Combine(dir, $"{prefix}-images-idx3-ubyte.gz"));
        byte[] lab = ReadGz(Path.Combine(dir, $"{prefix}-labels-idx1-ubyte.gz"));
        int n = lab.Length - 8;
        if (limit > 0) n = Math.Min(n, limit);
        var x = new float[n * 784];
        for (int i = 0; i < x.Length; i++) x[i] = (img[16 + i] / 255f - 0.2860f) / 0.3530f;
        var y = new int[n];
        for (int i = 0; i < n; i++) y[i] = lab[8 + i];
        return (x, y);
    }

    private static byte[] ReadGz(string path)
    {
        using var gz = new GZipStream(File.OpenRead(path), CompressionMode.Decompress);
        using var ms = new MemoryStream();
        gz.CopyTo(ms);
        return ms.ToArray();
    }
}

/// <summary>A parameter and its gradient (filled by the backward pass).</summary>
internal sealed class Parameter(Tensor value)
{
    public Tensor Value { get; } = value;
    public Tensor? Gradient { get; init; }
}

/// <summary>
/// One step of a sequential network: forward keeps what backward needs. Outputs and gradients live in
/// buffers kept per layer and reused while the batch shape stays the same, and the kernels are called
/// through the backend (IBackend) directly, so a warm training step allocates no tensors.
/// </summary>
internal abstract class Layer(CpuBackend b)
{
    protected CpuBackend B { get; } = b;
    public virtual IEnumerable<Parameter> Parameters => [];
    public abstract Tensor Forward(Tensor x, bool training, ulong seed);
    public abstract Tensor Backward(Tensor dy);

    /// <summary>The tensor in <paramref name="slot"/> when it has <paramref name="shape"/>, else a new one put there.</summary>
    protected Tensor Buffer(ref Tensor? slot, Shape shape)
    {
        if (slot is null || slot.Shape != shape) slot = B.Allocate(shape);
        return slot;
    }
}

/// <summary>Cross-correlation with bias; the first layer (<paramref name="inputGradient"/> false) skips dx, as autograd does for the data.</summary>
internal sealed class ConvLayer(CpuBackend b, Random rng, int inC, int outC, int k, int pad, bool inputGradient = true) : Layer(b)
{
    private readonly Parameter _w = new(Init(b, rng, inC * k * k, outC, inC, k, k)) { Gradient = b.Allocate(new Shape(outC, inC, k, k)) };
    private readonly Parameter _b = new(Init(b, rng, inC * k * k, outC)) { Gradient = b.Allocate(new Shape(outC)) };
    private readonly ConvolutionOptions _o = new() { Padding = pad, Mode = ConvolutionMode.CrossCorrelation };
    private ConvGeometry? _g;
    private Tensor? _x, _y, _dx;
    public override IEnumerable<Parameter> Parameters => [_w, _b];
    public override Tensor Forward(Tensor x, bool training, ulong seed)
    {
        if (_g is null || _g.Input != x.Shape) _g = ConvGeometry.Create(x.Shape, _w.Value.Shape, _o);
        _x = x;
        var y = Buffer(ref _y, _g.Output);
        B.ConvolutionForward(_g, x, _w.Value, _b.Value, y);
        return y;
    }
    public override Tensor Backward(Tensor dy)
    {
        B.ConvolutionBackwardFilter(_g!, _x!, dy, _w.Gradient!);
        B.SumPerChannel(dy, _b.Gradient!);
        if (!inputGradient) return dy;
        var dx = Buffer(ref _dx, _g!.Input);
        B.ConvolutionBackwardData(_g, _w.Value, dy, dx);
        return dx;
    }

    /// <summary>PyTorch's default for conv and linear layers: uniform in +-1/sqrt(fan_in).</summary>
    internal static Tensor Init(CpuBackend b, Random rng, int fanIn, params int[] dims)
    {
        var shape = new Shape(dims);
        var data = new float[shape.Length];
        double bound = 1 / Math.Sqrt(fanIn);
        for (int i = 0; i < data.Length; i++) data[i] = (float)((rng.NextDouble() * 2 - 1) * bound);
        return Tensor.FromHost(data, shape, b);
    }
}

internal sealed class DenseLayer(CpuBackend b, Random rng, int inputs, int outputs) : Layer(b)
{
    private readonly Parameter _w = new(ConvLayer.Init(b, rng, inputs, outputs, inputs)) { Gradient = b.Allocate(new Shape(outputs, inputs)) };
    private readonly Parameter _b = new(ConvLayer.Init(b, rng, inputs, outputs)) { Gradient = b.Allocate(new Shape(outputs)) };
    private Tensor? _x, _y, _dx;
    public override IEnumerable<Parameter> Parameters => [_w, _b];
    public override Tensor Forward(Tensor x, bool training, ulong seed)
    {
        _x = x;
        var y = Buffer(ref _y, new Shape(x.Shape[0], outputs));
        B.MatMul(x, false, _w.Value, true, y);       // y = x Wᵀ
        B.AddChannelBias(y, _b.Value);
        return y;
    }
    public override Tensor Backward(Tensor dy)
    {
        B.MatMul(dy, true, _x!, false, _w.Gradient!);  // dW = dyᵀ x
        B.SumPerChannel(dy, _b.Gradient!);
        var dx = Buffer(ref _dx, _x!.Shape);
        B.MatMul(dy, false, _w.Value, false, dx);     // dx = dy W
        return dx;
    }
}

internal sealed class ReluLayer(CpuBackend b) : Layer(b)
{
    private Tensor? _x, _y, _dx;
    public override Tensor Forward(Tensor x, bool training, ulong seed)
    {
        _x = x;
        var y = Buffer(ref _y, x.Shape);
        B.ActivationForward(ActivationKind.ReLU, 0f, x, y);
        return y;
    }
    public override Tensor Backward(Tensor dy)
    {
        var dx = Buffer(ref _dx, dy.Shape);
        B.ActivationBackward(ActivationKind.ReLU, 0f, _x!, _y!, dy, dx);
        return dx;
    }
}

internal sealed class MaxPoolLayer(CpuBackend b) : Layer(b)
{
    private PoolGeometry? _g;
    private Tensor? _x, _y, _dx;
    public override Tensor Forward(Tensor x, bool training, ulong seed)
    {
        if (_g is null || _g.Input != x.Shape) _g = PoolGeometry.Create(x.Shape);
        _x = x;
        var y = Buffer(ref _y, _g.Output);
        B.PoolingForward(_g, x, y);
        return y;
    }
    public override Tensor Backward(Tensor dy)
    {
        var dx = Buffer(ref _dx, _g!.Input);
        B.PoolingBackward(_g, _x!, _y!, dy, dx);
        return dx;
    }
}

internal sealed class BatchNormLayer(CpuBackend b, int channels) : Layer(b)
{
    private readonly Parameter _gamma = new(Filled(b, channels, 1f)) { Gradient = b.Allocate(new Shape(channels)) };
    private readonly Parameter _beta = new(Filled(b, channels, 0f)) { Gradient = b.Allocate(new Shape(channels)) };
    private readonly Tensor _mean = Filled(b, channels, 0f), _var = Filled(b, channels, 1f);
    private readonly Tensor _savedMean = b.Allocate(new Shape(channels)), _savedInvStd = b.Allocate(new Shape(channels));
    private Tensor? _x, _y, _dx;
    public override IEnumerable<Parameter> Parameters => [_gamma, _beta];
    public override Tensor Forward(Tensor x, bool training, ulong seed)
    {
        _x = x;
        var y = Buffer(ref _y, x.Shape);
        if (training) B.BatchNormForwardTraining(x, _gamma.Value, _beta.Value, BatchNorm.DefaultEpsilon, BatchNorm.DefaultMomentum, _mean, _var, y, _savedMean, _savedInvStd);
        else B.BatchNormForwardInference(x, _gamma.Value, _beta.Value, _mean, _var, BatchNorm.DefaultEpsilon, y);
        return y;
    }
    public override Tensor Backward(Tensor dy)
    {
        var dx = Buffer(ref _dx, dy.Shape);
        B.BatchNormBackward(_x!, dy, _gamma.Value, _savedMean, _savedInvStd, dx, _gamma.Gradient!, _beta.Gradient!);
        return dx;
    }
    private static Tensor Filled(CpuBackend b, int n, float v) { var t = b.Allocate(new Shape(n)); b.Fill(t, v); return t; }
}

internal sealed class DropoutLayer(CpuBackend b, float p) : Layer(b)
{
    private Tensor? _mask, _y, _dx;
    private bool _active;
    public override Tensor Forward(Tensor x, bool training, ulong seed)
    {
        _active = training;
        if (!training) return x;
        var mask = Buffer(ref _mask, x.Shape); var y = Buffer(ref _y, x.Shape);
        B.DropoutForward(x, p, seed, mask, y);
        return y;
    }
    public override Tensor Backward(Tensor dy)
    {
        if (!_active) return dy;
        var dx = Buffer(ref _dx, dy.Shape);
        B.Multiply(dy, _mask!, dx);
        return dx;
    }
}

internal sealed class FlattenLayer(CpuBackend b) : Layer(b)
{
    private Shape _shape;
    public override Tensor Forward(Tensor x, bool training, ulong seed) { _shape = x.Shape; return x.Reshape(x.Shape[0], x.Shape.SizeFrom(1)); }
    public override Tensor Backward(Tensor dy) => dy.Reshape(_shape);
}

internal sealed class Net(params Layer[] layers)
{
    public List<Parameter> Parameters { get; } = [.. layers.SelectMany(l => l.Parameters)];

    /// <summary>Per layer: forward and backward ticks (filled when <see cref="Profile"/> is on).</summary>
    public long[] ForwardTicks { get; } = new long[layers.Length];
    public long[] BackwardTicks { get; } = new long[layers.Length];
    public bool Profile { get; set; }

    public Tensor Forward(Tensor x, bool training, ulong seed)
    {
        for (int i = 0; i < layers.Length; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            x = layers[i].Forward(x, training, seed);
            if (Profile) ForwardTicks[i] += Stopwatch.GetTimestamp() - t0;
        }
        return x;
    }

    public void Backward(Tensor dy)
    {
        for (int i = layers.Length - 1; i >= 0; i--)
        {
            long t0 = Stopwatch.GetTimestamp();
            dy = layers[i].Backward(dy);
            if (Profile) BackwardTicks[i] += Stopwatch.GetTimestamp() - t0;
        }
    }

    /// <summary>One line per layer: milliseconds per batch forward and backward; then the counters restart.</summary>
    public void PrintProfile(int batches)
    {
        try { PrintLines(batches); }
        finally { Array.Clear(ForwardTicks); Array.Clear(BackwardTicks); }
    }

    private void PrintLines(int batches)
    {
        for (int i = 0; i < layers.Length; i++)
            Console.WriteLine($"  {i,2} {layers[i].GetType().Name,-15} fwd {ForwardTicks[i] * 1000.0 / Stopwatch.Frequency / batches,7:F3} ms  bwd {BackwardTicks[i] * 1000.0 / Stopwatch.Frequency / batches,7:F3} ms");
    }

    /// <summary>conv5x5 1->6 pad 2, relu, maxpool2; conv5x5 6->16, relu, maxpool2; dense 400->120 relu, 120->84 relu, 84->10.</summary>
    public static Net LeNet5(CpuBackend b, Random r) => new(
        new ConvLayer(b, r, 1, 6, 5, 2, inputGradient: false), new ReluLayer(b), new MaxPoolLayer(b),
        new ConvLayer(b, r, 6, 16, 5, 0), new ReluLayer(b), new MaxPoolLayer(b), new FlattenLayer(b),
        new DenseLayer(b, r, 400, 120), new ReluLayer(b), new DenseLayer(b, r, 120, 84), new ReluLayer(b), new DenseLayer(b, r, 84, 10));

    /// <summary>conv3x3 1->32 pad 1, BN, relu, maxpool2; conv3x3 32->64 pad 1, BN, relu, maxpool2; dense 3136->128 relu, dropout 0.25, 128->10.</summary>
    public static Net Cnn2Bn(CpuBackend b, Random r) => new(
        new ConvLayer(b, r, 1, 32, 3, 1, inputGradient: false), new BatchNormLayer(b, 32), new ReluLayer(b), new MaxPoolLayer(b),
        new ConvLayer(b, r, 32, 64, 3, 1), new BatchNormLayer(b, 64), new ReluLayer(b), new MaxPoolLayer(b), new FlattenLayer(b),
        new DenseLayer(b, r, 3136, 128), new ReluLayer(b), new DropoutLayer(b, 0.25f), new DenseLayer(b, r, 128, 10));
}

/// <summary>Adam (beta1 0.9, beta2 0.999, eps 1e-8, bias-corrected), element-wise over each parameter's span.</summary>
internal sealed class Adam(List<Parameter> parameters, float lr)
{
    private readonly List<(Parameter P, float[] M, float[] V)> _state = [.. parameters.Select(p => (p, new float[p.Value.Length], new float[p.Value.Length]))];
    private int _t;

    public void Step()
    {
        _t++;
        float c1 = 1 - MathF.Pow(0.9f, _t), c2 = 1 - MathF.Pow(0.999f, _t);
        float step = lr / c1, sqrtC2 = MathF.Sqrt(c2);
        foreach (var (p, m, v) in _state)
        {
            Span<float> w = CpuBackend.Span(p.Value);
            ReadOnlySpan<float> g = CpuBackend.Span(p.Gradient!);
            for (int i = 0; i < w.Length; i++)
            {
                m[i] = 0.9f * m[i] + 0.1f * g[i];
                v[i] = 0.999f * v[i] + 0.001f * g[i] * g[i];
                w[i] -= step * m[i] / (MathF.Sqrt(v[i]) / sqrtC2 + 1e-8f);
            }
        }
    }
}
