// Compares CudaBackend, running against the fake driver of scripts/cuda-emulator (our NVRTC kernels executed on
// CPU threads, a reference column-major sgemm standing in for cuBLAS), with CpuBackend on random inputs. Most kernels
// must give the CPU's bits exactly. Run it with scripts/cuda-emulator/run.sh.
using MLNet.ConvNet;
using MLNet.ConvNet.Backends;
using MLNet.ConvNet.Backends.Cpu;
using MLNet.ConvNet.Ops;

var gpu = BackendFactory.Create(new BackendOptions { Kind = BackendKind.Cuda }).Backend;
var cpu = CpuBackend.Default;
var rng = new Random(7);
int failures = 0;
Console.WriteLine($"gpu = {gpu}");

float[] Rand(int n, float scale = 1f) { var a = new float[n]; for (int i = 0; i < n; i++) a[i] = (float)((rng.NextDouble() * 2 - 1) * scale); return a; }
Tensor On(IBackend b, float[] d, Shape s) => Tensor.FromHost(d, s, b);
float[] Host(Tensor t) => t.ToHost();
void Compare(string what, float[] expected, float[] actual, double tol = 0)
{
    double worst = 0; int at = -1;
    if (expected.Length != actual.Length) { Console.WriteLine($"FAIL {what}: length {expected.Length} vs {actual.Length}"); failures++; return; }
    for (int i = 0; i < expected.Length; i++)
    {
        float e = expected[i], a = actual[i];
        if (float.IsNaN(e) && float.IsNaN(a)) continue;
        if (BitConverter.SingleToInt32Bits(e) == BitConverter.SingleToInt32Bits(a)) continue;
        double d = Math.Abs((double)e - a) / Math.Max(1e-30, Math.Max(Math.Abs(e), 1e-3));
        if (float.IsNaN(e) != float.IsNaN(a)) d = double.PositiveInfinity;
        if (tol == 0 && d == 0) d = 1e-45; // +0 vs -0
        if (d > worst) { worst = d; at = i; }
    }
    bool ok = tol == 0 ? worst == 0 : worst <= tol;
    if (!ok) failures++;
    Console.WriteLine($"{(ok ? "ok  " : "FAIL")} {what}: worst rel diff {worst:g3}{(at >= 0 ? $" at {at} (cpu {expected[at]:r}, gpu {actual[at]:r})" : "")}");
}
// Relative differences are taken against max(|cpu|, 1e-3), so tiny values count as absolute differences.
// Runs op on both backends with the same inputs; returns the listed outputs of each.
void Both(string what, Shape[] shapes, float[][] data, Action<IBackend, Tensor[]> op, int[] outputs, double tol = 0)
{
    var tc = shapes.Select((s, i) => On(cpu, data[i], s)).ToArray();
    var tg = shapes.Select((s, i) => On(gpu, data[i], s)).ToArray();
    op(cpu, tc); op(gpu, tg);
    foreach (int o in outputs) Compare($"{what} [out {o}]", Host(tc[o]), Host(tg[o]), tol);
}

// ---- element-wise ----
foreach (int n in new[] { 1, 1000, 70001 })
{
    var s = new Shape(n);
    Both($"Scale n={n}", [s, s], [Rand(n), Rand(n)], (b, t) => b.Scale(t[0], 0.37f, t[1]), [1]);
    Both($"Add n={n}", [s, s, s], [Rand(n), Rand(n), Rand(n)], (b, t) => b.Add(t[0], t[1], t[2]), [2]);
    Both($"AddScaled n={n}", [s, s], [Rand(n), Rand(n)], (b, t) => b.AddScaled(t[0], -1.3f, t[1]), [1]);
    Both($"Multiply n={n}", [s, s, s], [Rand(n), Rand(n), Rand(n)], (b, t) => b.Multiply(t[0], t[1], t[2]), [2]);
    var x = Rand(n, 100);
    double sc = cpu.Sum(On(cpu, x, s)), sg = gpu.Sum(On(gpu, x, s)), sg2 = gpu.Sum(On(gpu, x, s));
    bool ok = Math.Abs(sc - sg) <= 1e-12 * Math.Max(1, Math.Abs(sc)) && sg == sg2;
    if (!ok) failures++;
    Console.WriteLine($"{(ok ? "ok  " : "FAIL")} Sum n={n}: cpu {sc:r} gpu {sg:r} again {sg2:r}");
}
foreach (var shape in new[] { new Shape(3, 5, 7, 2), new Shape(4, 6), new Shape(2, 3, 11) })
{
    int c = shape[1];
    Both($"AddChannelBias {shape}", [shape, new Shape(c)], [Rand(shape.Length), Rand(c)], (b, t) => b.AddChannelBias(t[0], t[1]), [0]);
    Both($"SumPerChannel {shape}", [shape, new Shape(c)], [Rand(shape.Length), Rand(c)], (b, t) => b.SumPerChannel(t[0], t[1]), [1], 1e-5); // the CPU sums each row in float
}

// ---- matrix product ----
foreach (var (ta, tb) in new[] { (false, false), (true, false), (false, true), (true, true) })
{
    int m = 5, k = 7, n = 3;
    var sa = ta ? new Shape(k, m) : new Shape(m, k);
    var sb = tb ? new Shape(n, k) : new Shape(k, n);
    Both($"MatMul ta={ta} tb={tb}", [sa, sb, new Shape(m, n)], [Rand(sa.Length), Rand(sb.Length), Rand(m * n)],
        (b, t) => b.MatMul(t[0], ta, t[1], tb, t[2], 1.5f, 0.5f), [2], 1e-4);
    Both($"MatMul ta={ta} tb={tb} beta=0", [sa, sb, new Shape(m, n)], [Rand(sa.Length), Rand(sb.Length), Enumerable.Repeat(float.NaN, m * n).ToArray()],
        (b, t) => b.MatMul(t[0], ta, t[1], tb, t[2]), [2], 1e-5);
}
// higher rank: a [4, 2, 3] read as [4, 6]; b [6, 5]; c [4, 5]
Both("MatMul rank 3", [new Shape(4, 2, 3), new Shape(6, 5), new Shape(4, 5)], [Rand(24), Rand(30), Rand(20)], (b, t) => b.MatMul(t[0], false, t[1], false, t[2]), [2], 1e-5);
Both("MatMul rank 4 transB", [new Shape(3, 2, 2, 2), new Shape(5, 2, 4), new Shape(3, 5)], [Rand(24), Rand(40), Rand(15)], (b, t) => b.MatMul(t[0], false, t[1], true, t[2]), [2], 1e-5);

// ---- im2col / col2im ----
var geoms = new List<ConvGeometry>();
foreach (var mode in new[] { ConvolutionMode.Convolution, ConvolutionMode.CrossCorrelation })
{
    geoms.Add(ConvGeometry.Create(new Shape(2, 3, 7), new Shape(4, 3, 3), new ConvolutionOptions { Mode = mode }));
    geoms.Add(ConvGeometry.Create(new Shape(2, 3, 9), new Shape(4, 3, 3), new ConvolutionOptions { Mode = mode, Padding = 2, Stride = 2, Dilation = 2 }));
    geoms.Add(ConvGeometry.Create(new Shape(2, 2, 6, 5), new Shape(3, 2, 3, 2), new ConvolutionOptions { Mode = mode, Padding = 1 }));
    geoms.Add(ConvGeometry.Create(new Shape(1, 4, 8, 7), new Shape(4, 2, 3, 3), new ConvolutionOptions { Mode = mode, Padding = 2, Stride = 3, Dilation = 2, Groups = 2 }));
    geoms.Add(ConvGeometry.Create(new Shape(2, 2, 5, 4, 6), new Shape(2, 2, 2, 3, 2), new ConvolutionOptions { Mode = mode, Padding = 1, Stride = 2 }));
    geoms.Add(ConvGeometry.Create(new Shape(1, 1, 5, 6, 7), new Shape(1, 1, 3, 2, 3), new ConvolutionOptions { Mode = mode, Padding = 3, Stride = 2, Dilation = 2 }));
}
foreach (var g in geoms)
{
    var cs = Im2Col.ColumnsShape(g);
    Both($"Im2Col {g.Input} k {g.Filter} {g.Mode}", [g.Input, cs], [Rand(g.Input.Length), Rand(cs.Length)], (b, t) => b.Im2Col(g, t[0], t[1]), [1]);
    Both($"Col2Im {g.Input} k {g.Filter} {g.Mode}", [cs, g.Input], [Rand(cs.Length), Rand(g.Input.Length)], (b, t) => b.Col2Im(g, t[0], t[1]), [1]);
}

// ---- dropout and activations ----
foreach (var (p, seed) in new[] { (0.3f, 1UL), (0.5f, 0xFFFFFFFFFFFFFFFFUL), (0f, 42UL), (0.9f, 12345678901234567UL) })
{
    var s = new Shape(5000);
    Both($"Dropout p={p} seed={seed}", [s, s, s], [Rand(5000), Rand(5000), Rand(5000)], (b, t) => b.DropoutForward(t[0], p, seed, t[1], t[2]), [1, 2]);
}
{
    int n = 4000; var s = new Shape(n);
    var x = Rand(n, 30); x[0] = 0; x[1] = -0f; x[2] = float.NaN; x[3] = 1e-8f; x[4] = -1e-8f; x[5] = 100; x[6] = -100;
    foreach (var kind in Enum.GetValues<ActivationKind>())
    {
        float alpha = kind == ActivationKind.LeakyReLU ? 0.01f : 1.3f;
        double tol = kind == ActivationKind.Tanh ? 1e-4 : 0; // TensorPrimitives.Tanh(0) = -6e-8; the kernel rounds tanh in double once
        Both($"ActivationForward {kind}", [s, s], [x, Rand(n)], (b, t) => b.ActivationForward(kind, alpha, t[0], t[1]), [1], tol);
        var y = Host(On(cpu, x, s)); var yt = cpu.Allocate(s); cpu.ActivationForward(kind, alpha, On(cpu, x, s), yt); y = Host(yt);
        Both($"ActivationBackward {kind}", [s, s, s, s], [x, y, Rand(n), Rand(n)], (b, t) => b.ActivationBackward(kind, alpha, t[0], t[1], t[2], t[3]), [3]);
    }
}

// ---- cross-entropy ----
foreach (var (n, k) in new[] { (37, 10), (9, 100), (300, 3), (1, 1) })
foreach (float e in new[] { 0f, 0.1f })
{
    var logits = Rand(n * k, 20); var labels = Enumerable.Range(0, n).Select(_ => (float)rng.Next(k)).ToArray();
    var sl = new Shape(n, k); var sn = new Shape(n);
    Both($"XentForward n={n} k={k} e={e}", [sl, sn, sn, sl], [logits, labels, Rand(n), Rand(n * k)],
        (b, t) => b.SoftmaxCrossEntropyForward(t[0], t[1], e, t[2], t[3]), [2, 3], 2e-6);
    var probs = cpu.Allocate(sl); cpu.SoftmaxCrossEntropyForward(On(cpu, logits, sl), On(cpu, labels, sn), e, cpu.Allocate(sn), probs);
    Both($"XentBackward n={n} k={k} e={e}", [sl, sn, sl], [Host(probs), labels, Rand(n * k)],
        (b, t) => b.SoftmaxCrossEntropyBackward(t[0], t[1], e, 1f / n, t[2]), [2]);
    var loss = Rand(n, 3); var pr = Host(probs);
    if (n > 3) { pr[k] = pr[k + 1 < n * k ? k + 1 : k]; } // a tie somewhere
    Both($"LossAndCorrect n={n} k={k}", [sn, sl, sn, new Shape(8)], [loss, pr, labels, Rand(8)], (b, t) => b.LossAndCorrect(t[0], t[1], t[2], t[3], 2), [3], 1e-7);
}
{
    // A bad label gives NaN on the GPU (the CPU throws).
    var g = On(gpu, Rand(20), new Shape(2, 10)); var lab = On(gpu, [3f, 10f], new Shape(2)); var l = gpu.Allocate(new Shape(2)); var pr = gpu.Allocate(new Shape(2, 10));
    gpu.SoftmaxCrossEntropyForward(g, lab, 0f, l, pr);
    var lh = Host(l); bool ok = !float.IsNaN(lh[0]) && float.IsNaN(lh[1]); if (!ok) failures++;
    Console.WriteLine($"{(ok ? "ok  " : "FAIL")} bad label -> NaN loss: {lh[0]} {lh[1]}");
}

// ---- optimizers ----
{
    int n = 5000; var s = new Shape(n);
    foreach (var (mu, nest, wd) in new[] { (0f, false, 0f), (0.9f, false, 1e-4f), (0.9f, true, 5e-4f), (0f, false, 1e-2f) })
        Both($"SgdStep mu={mu} nesterov={nest} wd={wd}", [s, s, s], [Rand(n), Rand(n), Rand(n)],
            (b, t) => b.SgdStep(t[0], t[1], mu != 0 ? t[2] : null, 0.05f, mu, nest, wd), mu != 0 ? [0, 2] : [0]);
    foreach (var (wd, dec, step) in new[] { (0f, false, 1L), (1e-2f, false, 7L), (1e-2f, true, 1000L) })
    {
        var v = Rand(n).Select(Math.Abs).ToArray();
        Both($"AdamStep wd={wd} decoupled={dec} step={step}", [s, s, s, s], [Rand(n), Rand(n), Rand(n, 0.1f), v],
            (b, t) => b.AdamStep(t[0], t[1], t[2], t[3], 1e-3f, 0.9f, 0.999f, 1e-8f, wd, dec, step), [0, 2, 3]);
    }
}
Console.WriteLine(failures == 0 ? "ALL OK" : $"{failures} FAILURES");
return failures == 0 ? 0 : 1;
