using MLNet.ConvNet.Backends.Cpu;
using MLNet.ConvNet.Ops;
using MLNet.ConvNet.Tests.TestKit;
using Xunit;

namespace MLNet.ConvNet.Tests;

/// <summary>
/// Tests that need the process to themselves: the allocation counter is process-wide (concurrent tests would show
/// up in it), and the CPU worker pools are shared (a pool busy with another test's loop runs a loop serially).
/// </summary>
[CollectionDefinition(nameof(NotInParallel), DisableParallelization = true)]
public sealed class NotInParallel;

/// <summary>
/// After warm-up, every CPU kernel a training step calls allocates nothing on the managed heap (all threads
/// counted: GC.GetTotalAllocatedBytes(precise: true) around one call), with two threads and with the default.
/// Shapes are those of LeNet-5 and cnn2bn on batches of 64 (benchmarks/EndToEnd).
/// </summary>
[Collection(nameof(NotInParallel))]
public class KernelAllocationTests
{
    /// <summary>A kernel case: builds its tensors on the backend and returns one call of the kernel.</summary>
    private static readonly Dictionary<string, Func<CpuBackend, Action>> Cases = new()
    {
        ["conv lenet1 forward"] = b => Conv(b, [64, 1, 28, 28], [6, 1, 5, 5], pad: 2).Forward,
        ["conv lenet1 backward filter"] = b => Conv(b, [64, 1, 28, 28], [6, 1, 5, 5], pad: 2).BackwardFilter,
        ["conv lenet1 backward data"] = b => Conv(b, [64, 1, 28, 28], [6, 1, 5, 5], pad: 2).BackwardData,
        ["conv lenet2 forward"] = b => Conv(b, [64, 6, 14, 14], [16, 6, 5, 5], pad: 0).Forward,
        ["conv lenet2 backward filter"] = b => Conv(b, [64, 6, 14, 14], [16, 6, 5, 5], pad: 0).BackwardFilter,
        ["conv lenet2 backward data"] = b => Conv(b, [64, 6, 14, 14], [16, 6, 5, 5], pad: 0).BackwardData,
        ["conv cnn2bn1 forward"] = b => Conv(b, [64, 1, 28, 28], [32, 1, 3, 3], pad: 1).Forward,
        ["conv cnn2bn1 backward filter"] = b => Conv(b, [64, 1, 28, 28], [32, 1, 3, 3], pad: 1).BackwardFilter,
        ["conv cnn2bn2 forward"] = b => Conv(b, [64, 32, 14, 14], [64, 32, 3, 3], pad: 1).Forward,
        ["conv cnn2bn2 backward filter"] = b => Conv(b, [64, 32, 14, 14], [64, 32, 3, 3], pad: 1).BackwardFilter,
        ["conv cnn2bn2 backward data"] = b => Conv(b, [64, 32, 14, 14], [64, 32, 3, 3], pad: 1).BackwardData,
        // Stride 2: not a shifted GEMM, so the im2col path.
        ["conv im2col forward"] = b => Conv(b, [16, 8, 15, 15], [12, 8, 3, 3], pad: 1, stride: 2).Forward,
        ["conv im2col backward filter"] = b => Conv(b, [16, 8, 15, 15], [12, 8, 3, 3], pad: 1, stride: 2).BackwardFilter,
        ["conv im2col backward data"] = b => Conv(b, [16, 8, 15, 15], [12, 8, 3, 3], pad: 1, stride: 2).BackwardData,
        ["maxpool2x2 forward"] = b => Pool(b, [64, 6, 28, 28], new PoolingOptions()).Forward,
        ["maxpool2x2 backward"] = b => Pool(b, [64, 6, 28, 28], new PoolingOptions()).Backward,
        ["relu maxpool2x2 forward"] = b => Pool(b, [64, 6, 28, 28], new PoolingOptions(), relu: true).Forward,
        ["relu maxpool2x2 backward"] = b => Pool(b, [64, 6, 28, 28], new PoolingOptions(), relu: true).Backward,
        ["avgpool3x3 forward"] = b => Pool(b, [16, 8, 15, 15], new() { Window = 3, Stride = 2, Padding = 1, Mode = PoolingMode.AverageExcludingPadding }).Forward,
        ["avgpool3x3 backward"] = b => Pool(b, [16, 8, 15, 15], new() { Window = 3, Stride = 2, Padding = 1, Mode = PoolingMode.AverageExcludingPadding }).Backward,
        ["batchnorm forward training"] = b =>
        {
            var (x, y, g, beta, m, v, sm, sis) = (R(b, 64, 32, 28, 28), Z(b, 64, 32, 28, 28), R(b, 32), R(b, 32), R(b, 32), Ones(b, 32), Z(b, 32), Z(b, 32));
            return () => b.BatchNormForwardTraining(x, g, beta, 1e-5f, 0.1f, m, v, y, sm, sis);
        },
        ["batchnorm forward inference"] = b =>
        {
            var (x, y, g, beta, m, v) = (R(b, 64, 32, 28, 28), Z(b, 64, 32, 28, 28), R(b, 32), R(b, 32), R(b, 32), Ones(b, 32));
            return () => b.BatchNormForwardInference(x, g, beta, m, v, 1e-5f, y);
        },
        ["batchnorm backward"] = b =>
        {
            var (x, dy, dx, g, sm, sis, dg, db) = (R(b, 64, 32, 28, 28), R(b, 64, 32, 28, 28), Z(b, 64, 32, 28, 28), R(b, 32), R(b, 32), Ones(b, 32), Z(b, 32), Z(b, 32));
            return () => b.BatchNormBackward(x, dy, g, sm, sis, dx, dg, db);
        },
        ["batchnorm relu forward training"] = b =>
        {
            var (x, y, g, beta, m, v, sm, sis) = (R(b, 64, 32, 28, 28), Z(b, 64, 32, 28, 28), R(b, 32), R(b, 32), R(b, 32), Ones(b, 32), Z(b, 32), Z(b, 32));
            return () => b.BatchNormReluForwardTraining(x, g, beta, 1e-5f, 0.1f, m, v, y, sm, sis);
        },
        ["batchnorm relu backward"] = b =>
        {
            var (x, y, dy, dx, g, sm, sis, dg, db) = (R(b, 64, 32, 28, 28), R(b, 64, 32, 28, 28), R(b, 64, 32, 28, 28), Z(b, 64, 32, 28, 28), R(b, 32), R(b, 32), Ones(b, 32), Z(b, 32), Z(b, 32));
            return () => b.BatchNormReluBackward(x, y, dy, g, sm, sis, dx, dg, db);
        },
        ["relu forward"] = b => { var (x, y) = (R(b, 64, 32, 28, 28), Z(b, 64, 32, 28, 28)); return () => b.ActivationForward(ActivationKind.ReLU, 0f, x, y); },
        ["relu backward"] = b =>
        {
            var (x, y, dy, dx) = (R(b, 64, 32, 28, 28), R(b, 64, 32, 28, 28), R(b, 64, 32, 28, 28), Z(b, 64, 32, 28, 28));
            return () => b.ActivationBackward(ActivationKind.ReLU, 0f, x, y, dy, dx);
        },
        // The dense layer's three products: y = x Wᵀ, dx = dy W, dW = dyᵀ x (cnn2bn's 3136 -> 128 and LeNet's 400 -> 120).
        ["matmul x wT 3136"] = b => { var (x, w, y) = (R(b, 64, 3136), R(b, 128, 3136), Z(b, 64, 128)); return () => b.MatMul(x, false, w, true, y); },
        ["matmul dy w 3136"] = b => { var (dy, w, dx) = (R(b, 64, 128), R(b, 128, 3136), Z(b, 64, 3136)); return () => b.MatMul(dy, false, w, false, dx); },
        ["matmul dyT x 3136"] = b => { var (dy, x, dw) = (R(b, 64, 128), R(b, 64, 3136), Z(b, 128, 3136)); return () => b.MatMul(dy, true, x, false, dw); },
        ["matmul x wT 400"] = b => { var (x, w, y) = (R(b, 64, 400), R(b, 120, 400), Z(b, 64, 120)); return () => b.MatMul(x, false, w, true, y); },
        ["matmul dy w 400"] = b => { var (dy, w, dx) = (R(b, 64, 120), R(b, 120, 400), Z(b, 64, 400)); return () => b.MatMul(dy, false, w, false, dx); },
        ["matmul dyT x 400"] = b => { var (dy, x, dw) = (R(b, 64, 120), R(b, 64, 400), Z(b, 120, 400)); return () => b.MatMul(dy, true, x, false, dw); },
        ["sum per channel conv"] = b => { var (dy, db) = (R(b, 64, 32, 28, 28), Z(b, 32)); return () => b.SumPerChannel(dy, db); },
        ["sum per channel dense"] = b => { var (dy, db) = (R(b, 64, 10), Z(b, 10)); return () => b.SumPerChannel(dy, db); },
        ["add channel bias conv"] = b => { var (y, bias) = (R(b, 64, 32, 28, 28), R(b, 32)); return () => b.AddChannelBias(y, bias); },
        ["add channel bias dense"] = b => { var (y, bias) = (R(b, 64, 128), R(b, 128)); return () => b.AddChannelBias(y, bias); },
        ["dropout forward"] = b => { var (x, m, y) = (R(b, 64, 32, 28, 28), Z(b, 64, 32, 28, 28), Z(b, 64, 32, 28, 28)); return () => b.DropoutForward(x, 0.25f, 7, m, y); },
        ["multiply"] = b => { var (x, m, y) = (R(b, 64, 32, 28, 28), R(b, 64, 32, 28, 28), Z(b, 64, 32, 28, 28)); return () => b.Multiply(x, m, y); },
        ["softmax cross-entropy forward"] = b => { var (x, l, loss, p) = (R(b, 64, 10), Labels(b, 64, 10), Z(b, 64), Z(b, 64, 10)); return () => b.SoftmaxCrossEntropyForward(x, l, 0f, loss, p); },
        ["softmax cross-entropy backward"] = b => { var (p, l, d) = (R(b, 64, 10), Labels(b, 64, 10), Z(b, 64, 10)); return () => b.SoftmaxCrossEntropyBackward(p, l, 0f, 1f / 64, d); },
        ["smoothed cross-entropy forward"] = b => { var (x, l, loss, p) = (R(b, 64, 10), Labels(b, 64, 10), Z(b, 64), Z(b, 64, 10)); return () => b.SoftmaxCrossEntropyForward(x, l, 0.1f, loss, p); },
        ["smoothed cross-entropy backward"] = b => { var (p, l, d) = (R(b, 64, 10), Labels(b, 64, 10), Z(b, 64, 10)); return () => b.SoftmaxCrossEntropyBackward(p, l, 0.1f, 1f / 64, d); },
        ["log softmax forward"] = b => { var (x, y) = (R(b, 64, 10), Z(b, 64, 10)); return () => b.SoftmaxForward(x, y, log: true); },
        ["log softmax backward"] = b => { var (y, dy, dx) = (R(b, 64, 10), R(b, 64, 10), Z(b, 64, 10)); return () => b.SoftmaxBackward(y, dy, dx, log: true); },
        ["lrn forward"] = b => { var (x, y, o) = (R(b, 8, 16, 12, 12), Z(b, 8, 16, 12, 12), new LrnOptions()); return () => b.LrnForward(o, x, y); },
        ["lrn backward"] = b =>
        {
            var (x, y, dy, dx) = (R(b, 8, 16, 12, 12), R(b, 8, 16, 12, 12), R(b, 8, 16, 12, 12), Z(b, 8, 16, 12, 12));
            var o = new LrnOptions();
            return () => b.LrnBackward(o, x, y, dy, dx);
        },
        ["sgd nesterov step"] = b => { var (p, g, v) = (R(b, 128, 3136), R(b, 128, 3136), Z(b, 128, 3136)); return () => b.SgdStep(p, g, v, 0.01f, 0.9f, true, 1e-4f); },
        ["adam step"] = b => { var (p, g, m, v) = (R(b, 128, 3136), R(b, 128, 3136), Z(b, 128, 3136), Z(b, 128, 3136)); return () => b.AdamStep(p, g, m, v, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, true, 3); },
        ["fill"] = b => { var t = Z(b, 128, 3136); return () => b.Fill(t, 0f); },
        ["copy"] = b => { var (s, d) = (R(b, 128, 3136), Z(b, 128, 3136)); return () => b.Copy(s, d); },
        ["add scaled"] = b => { var (x, y) = (R(b, 128, 3136), R(b, 128, 3136)); return () => b.AddScaled(x, -0.5f, y); },
    };

    /// <summary>Every case with two threads and with the default (0 below).</summary>
    public static TheoryData<string, int> Kernels => new(Cases.Keys.SelectMany(k => new[] { (k, 2), (k, 0) }));

    [Theory]
    [MemberData(nameof(Kernels))]
    public void KernelAllocatesNothingAfterWarmUp(string kernel, int threads)
    {
        var backend = threads == 0 ? new CpuBackend() : new CpuBackend(threads);
        var call = Cases[kernel](backend);
        for (int i = 0; i < 3; i++) call();
        Assert.Equal(0, AllocatedBytes(call));
    }

    /// <summary>
    /// Bytes allocated by all threads during one call. Up to ten tries, keeping the least, with a pause after each
    /// try that saw an allocation: a stray allocation by another thread (the test runner's, the runtime's tiering
    /// work after earlier tests; CI once saw 104 bytes on three tries in a row) must not fail the test, while a
    /// kernel that allocates does so on every try.
    /// </summary>
    private static long AllocatedBytes(Action call)
    {
        long least = long.MaxValue;
        for (int attempt = 0; attempt < 10 && least > 0; attempt++)
        {
            if (attempt > 0) Thread.Sleep(20);
            long before = GC.GetTotalAllocatedBytes(precise: true);
            call();
            least = Math.Min(least, GC.GetTotalAllocatedBytes(precise: true) - before);
        }
        return least;
    }

    private sealed record ConvCase(Action Forward, Action BackwardData, Action BackwardFilter);

    private static ConvCase Conv(CpuBackend b, int[] xs, int[] ws, int pad, int stride = 1)
    {
        var (x, w, bias) = (R(b, xs), R(b, ws), R(b, ws[0]));
        var g = ConvGeometry.Create(x.Shape, w.Shape, new ConvolutionOptions { Padding = pad, Stride = stride, Mode = ConvolutionMode.CrossCorrelation });
        var (y, dy, dx, dw) = (b.Allocate(g.Output), R(b, DimsOf(g.Output)), b.Allocate(g.Input), b.Allocate(g.Filter));
        return new(() => b.ConvolutionForward(g, x, w, bias, y),
            () => b.ConvolutionBackwardData(g, w, dy, dx),
            () => b.ConvolutionBackwardFilter(g, x, dy, dw));
    }

    private sealed record PoolCase(Action Forward, Action Backward);

    private static PoolCase Pool(CpuBackend b, int[] xs, PoolingOptions o, bool relu = false)
    {
        var x = R(b, xs);
        var g = PoolGeometry.Create(x.Shape, o);
        var (y, dy, dx) = (b.Allocate(g.Output), R(b, DimsOf(g.Output)), b.Allocate(g.Input));
        return relu
            ? new(() => b.PoolingReluForward(g, x, y), () => b.PoolingReluBackward(g, x, y, dy, dx))
            : new(() => b.PoolingForward(g, x, y), () => b.PoolingBackward(g, x, y, dy, dx));
    }

    private static Tensor R(CpuBackend b, params int[] dims)
    {
        var shape = new Shape(dims);
        return Tensor.FromHost(TestData.Uniform(new Random(shape.Length), shape.Length), shape, b);
    }

    private static int[] DimsOf(Shape s) => [.. Enumerable.Range(0, s.Rank).Select(i => s[i])];

    private static Tensor Z(CpuBackend b, params int[] dims) => b.Allocate(new Shape(dims));

    private static Tensor Ones(CpuBackend b, params int[] dims)
    {
        var t = Z(b, dims);
        b.Fill(t, 1f);
        return t;
    }

    private static Tensor Labels(CpuBackend b, int n, int classes) =>
        Tensor.FromHost([.. Enumerable.Range(0, n).Select(i => (float)(i % classes))], new Shape(n), b);
}
