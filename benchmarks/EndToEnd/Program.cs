using MLNet.ConvNet.Backends;
using System.Diagnostics;
using MLNet.ConvNet;
using MLNet.ConvNet.Backends.Cpu;
using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Benchmarks;

/// <summary>
/// End-to-end and kernel timings printed as <c>RESULT key = value</c> lines with the keys of the TorchSharp
/// peer (shared/bench/torchsharp-fashion), so the two outputs compare line by line.
/// Modes: conv | mm | train | lenet | cnn2 | all. Options: --threads N --reps N --mm-reps N --epochs N
/// --limit N --seed N --data DIR --reference (time the readable reference kernels instead of the fast ones)
/// --profile (per-layer forward/backward milliseconds per batch).
/// </summary>
public static partial class Program
{
    private static readonly List<(string Key, string Value)> Results = [];

    private static void Report(string key, string value)
    {
        Results.Add((key, value));
        Console.WriteLine($"RESULT {key} = {value}");
    }

    private sealed record Settings(int Threads, int Reps, int MmReps, int Epochs, int Limit, int Seed, string Data, bool Reference, bool Profile)
    {
        // The CPU's plain loops as baseline; CONVNET_WINOGRAD=0 times the direct 3x3 convolutions instead of Winograd's.
        public IBackend Backend() => new CpuBackend(Threads, referenceKernels: Reference) { UseWinograd = Environment.GetEnvironmentVariable("CONVNET_WINOGRAD") != "0" };
    }

    public static int Main(string[] args)
    {
        string mode = args.Length > 0 && !args[0].StartsWith("--") ? args[0] : "all";
        int threads = Environment.ProcessorCount, reps = 50, mmReps = 20, epochs = 3, limit = 0, seed = 42;
        string data = "/usr/share/datasets/fashion-mnist";
        bool reference = false, profile = false;
        for (int i = mode == args.FirstOrDefault() ? 1 : 0; i < args.Length; i++)
        {
            string Next() => args[++i];
            switch (args[i])
            {
                case "--threads": threads = int.Parse(Next()); break;
                case "--reps": reps = int.Parse(Next()); break;
                case "--mm-reps": mmReps = int.Parse(Next()); break;
                case "--epochs": epochs = int.Parse(Next()); break;
                case "--limit": limit = int.Parse(Next()); break;
                case "--seed": seed = int.Parse(Next()); break;
                case "--data": data = Next(); break;
                case "--reference": reference = true; break;
                case "--profile": profile = true; break;
                default: Console.Error.WriteLine($"unknown option {args[i]}"); return 2;
            }
        }
        var s = new Settings(threads, reps, mmReps, epochs, limit, seed, data, reference, profile);
        Console.WriteLine($"MLNet.ConvNet CPU engine ({(reference ? "reference" : "fast")} kernels, GEMM {MLNet.ConvNet.Backends.Cpu.Kernels.Sgemm.Best}, " +
                          $"Vector512 {(System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated ? "on" : "off")}), .NET {Environment.Version}, " +
                          $"{Environment.ProcessorCount} logical CPUs, threads {threads}, seed {seed}");
        if (mode is "train" or "lenet" or "all") Train("lenet5", s);
        if (mode is "train" or "cnn2" or "all") Train("cnn2bn", s);
        if (mode is "mm" or "all") MatMul(s);
        if (mode is "conv" or "all") ConvBench(s);
        Console.WriteLine();
        Console.WriteLine("SUMMARY");
        foreach (var (k, v) in Results) Console.WriteLine($"  {k,-34} {v}");
        return 0;
    }

    /// <summary>
    /// Median wall time in milliseconds of <paramref name="reps"/> runs after at least <paramref name="warmup"/> runs
    /// and half a second of warm-up (so the JIT's tiered compilation has reached the optimized code).
    /// </summary>
    private static double MedianMs(int warmup, int reps, Action body)
    {
        var warm = Stopwatch.StartNew();
        for (int i = 0; i < warmup || warm.ElapsedMilliseconds < 500; i++) body();
        var t = new double[reps];
        for (int i = 0; i < reps; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            body();
            t[i] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
        }
        Array.Sort(t);
        return reps % 2 == 1 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
    }

    private static Tensor Random(IBackend backend, Random rng, float scale, params int[] dims)
    {
        var shape = new Shape(dims);
        var data = new float[shape.Length];
        for (int i = 0; i < data.Length; i++) data[i] = (float)(rng.NextDouble() * 2 - 1) * scale;
        return Tensor.FromHost(data, shape, backend);
    }

    private static void MatMul(Settings s)
    {
        Console.WriteLine();
        const int N = 2048;
        double flop = 2.0 * N * N * N;
        foreach (int t in new[] { s.Threads, 1 }.Distinct())
        {
            IBackend backend = new CpuBackend(t, referenceKernels: s.Reference);
            var rng = new Random(1);
            var a = Random(backend, rng, 1f, N, N);
            var b = Random(backend, rng, 1f, N, N);
            var c = backend.Allocate(new Shape(N, N));
            double ms = MedianMs(2, s.MmReps, () => backend.MatMul(a, false, b, false, c));
            Console.WriteLine($"mm 2048x2048 fp32, {t} thread(s): median {ms:F2} ms = {flop / ms / 1e6:F1} GFLOP/s");
            Report($"mm2048.threads{t}.ms", $"{ms:F2}");
            Report($"mm2048.threads{t}.gflops", $"{flop / ms / 1e6:F1}");
        }
    }

    private static void ConvBench(Settings s)
    {
        Console.WriteLine();
        var backend = s.Backend();
        ConvCase(backend, "conv_64x32x14x14_k64x32x3x3", [64, 32, 14, 14], [64, 32, 3, 3], inputGrad: true, s.Reps);
        ConvCase(backend, "conv_64x1x28x28_k32x1x3x3", [64, 1, 28, 28], [32, 1, 3, 3], inputGrad: false, s.Reps);
        // LeNet-5's second convolution (no padding): few channels, a 5x5 kernel (ours only; the peer has no such case).
        ConvCase(backend, "conv_64x6x14x14_k16x6x5x5", [64, 6, 14, 14], [16, 6, 5, 5], inputGrad: true, s.Reps, padding: 0);

        var rng = new Random(1);
        var x = Random(backend, rng, 1f, 64, 32, 28, 28);
        var g = PoolGeometry.Create(x.Shape, new PoolingOptions { Window = 2 });
        var y = backend.Allocate(g.Output);
        var dy = Random(backend, rng, 1f, 64, 32, 14, 14);
        var dx = backend.Allocate(x.Shape);
        double fwd = MedianMs(5, s.Reps, () => backend.PoolingForward(g, x, y));
        double fb = MedianMs(5, s.Reps, () => { backend.PoolingForward(g, x, y); backend.PoolingBackward(g, x, y, dy, dx); });
        Console.WriteLine($"maxpool2x2 [64,32,28,28]: fwd {fwd:F3} ms, fwd+bwd {fb:F3} ms");
        Report("maxpool2x2_64x32x28x28.fwd_ms", $"{fwd:F3}");
        Report("maxpool2x2_64x32x28x28.fwd_bwd_ms", $"{fb:F3}");
    }

    /// <summary>
    /// Cross-correlation with bias, stride 1, pad 1, as the peer's conv2d. fwd+bwd: forward, then the filter and
    /// bias gradients (+ the input gradient when <paramref name="inputGrad"/>). FLOPs = 2*MACs, backward counted
    /// as one forward per gradient. Outputs are preallocated: this times the kernels.
    /// </summary>
    private static void ConvCase(IBackend backend, string name, int[] xs, int[] ws, bool inputGrad, int reps, int padding = 1)
    {
        var rng = new Random(1);
        var x = Random(backend, rng, 1f, xs);
        var w = Random(backend, rng, 0.1f, ws);
        var bias = Random(backend, rng, 0.1f, ws[0]);
        var g = ConvGeometry.Create(x.Shape, w.Shape, new ConvolutionOptions { Padding = padding, Mode = ConvolutionMode.CrossCorrelation });
        var y = backend.Allocate(g.Output);
        var dy = Random(backend, rng, 1f, [.. g.Output.Spatial.Prepend(g.Output[1]).Prepend(g.Output[0])]);
        var dx = backend.Allocate(x.Shape);
        var dw = backend.Allocate(w.Shape);
        var db = backend.Allocate(bias.Shape);
        double fwdFlop = 2.0 * g.Output.Length * g.InChannels * g.KernelVolume;
        double fbFlop = fwdFlop * (inputGrad ? 3 : 2);
        double fwd = MedianMs(5, reps, () => backend.ConvolutionForward(g, x, w, bias, y));
        double fb = MedianMs(5, reps, () =>
        {
            backend.ConvolutionForward(g, x, w, bias, y);
            backend.ConvolutionBackwardFilter(g, x, dy, dw);
            backend.SumPerChannel(dy, db);
            if (inputGrad) backend.ConvolutionBackwardData(g, w, dy, dx);
        });
        // Each backward part alone, to say where fwd+bwd goes.
        double dW = MedianMs(5, reps, () => backend.ConvolutionBackwardFilter(g, x, dy, dw));
        double dB = MedianMs(5, reps, () => backend.SumPerChannel(dy, db));
        double dX = inputGrad ? MedianMs(5, reps, () => backend.ConvolutionBackwardData(g, w, dy, dx)) : 0;
        Console.WriteLine($"{name}: fwd {fwd:F3} ms ({fwdFlop / fwd / 1e6:F1} GFLOP/s), " +
                          $"fwd+bwd{(inputGrad ? "(dX,dW)" : "(dW only)")} {fb:F3} ms ({fbFlop / fb / 1e6:F1} GFLOP/s); " +
                          $"alone: dW {dW:F3} ms ({fwdFlop / dW / 1e6:F1} GFLOP/s), db {dB:F3} ms" +
                          (inputGrad ? $", dX {dX:F3} ms ({fwdFlop / dX / 1e6:F1} GFLOP/s)" : ""));
        Report($"{name}.dw_ms", $"{dW:F3}");
        if (inputGrad) Report($"{name}.dx_ms", $"{dX:F3}");
        Report($"{name}.fwd_ms", $"{fwd:F3}");
        Report($"{name}.fwd_gflops", $"{fwdFlop / fwd / 1e6:F1}");
        Report($"{name}.fwd_bwd_ms", $"{fb:F3}");
        Report($"{name}.fwd_bwd_gflops", $"{fbFlop / fb / 1e6:F1}");
    }
}
