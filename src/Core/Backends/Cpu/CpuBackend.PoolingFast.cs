using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Backends.Cpu;

// The fast path of the most common pooling: 2-D max pooling, window 2, stride 2, no padding.
// Same rule as the reference (CpuBackend.Pooling.cs): the window is scanned (0,0), (0,1), (1,0), (1,1) and a
// cell replaces the running maximum when it is strictly greater, or when it is NaN and the maximum is not, so
// the first maximal cell (or first NaN) wins, and the forward value is that cell's value, bit for bit.
// Backward: the windows do not overlap, so each dx cell gets one value (an overlapped vector step writes it again,
// the same bits).
// With relu (PoolingReluForward / PoolingReluBackward, a ReLU layer fused in): the forward applies the ReLU to each
// window's maximum, the backward lets a window whose maximum is at or below 0 (every ReLU output +0) pick its first
// cell and multiplies every dx by the ReLU's slope at x, cells outside any window included (0 times NaN is NaN):
// the values of the two ops one after the other.
public sealed partial class CpuBackend
{
    private static bool IsMaxPool2x2(PoolGeometry g) =>
        g.Mode == PoolingMode.Max && g.Input.Rank == 4
        && g.Window[0] == 2 && g.Window[1] == 2 && g.Stride[0] == 2 && g.Stride[1] == 2
        && g.Padding[0] == 0 && g.Padding[1] == 0;

    /// <summary>The running-maximum step of the scan: v replaces m when greater, or NaN over a number.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool Replaces(float v, float m) => v > m || (float.IsNaN(v) && !float.IsNaN(m));

    // Vector steps (rows of at least 8 columns, 4 outputs or more): a step at output column j loads input columns
    // 2j .. 2j + 7 of both rows and splits each load into its even and odd columns, so lane i holds window j + i.
    // It never reads past column 2j + 7, so the last step can start at ow - 4 and overlap the one before: no scalar
    // tail, which on narrow rows (14 columns: 7 outputs) used to take 3 of the 7 windows through branches that
    // mispredict on data. An overlapped window is computed twice from the same cells: the same bits either way.
    private static bool VectorRows(int w) => Vector256.IsHardwareAccelerated && w >= 8;

    /// <summary>Lanes 0..3: the even columns of a load, lanes 4..7: its odd columns.</summary>
    private static Vector256<int> EvenOdd => Vector256.Create(0, 2, 4, 6, 1, 3, 5, 7);

    /// <summary>The inverse of <see cref="EvenOdd"/>: back to column order.</summary>
    private static Vector256<int> Interleave => Vector256.Create(0, 4, 1, 5, 2, 6, 3, 7);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Step(Vector128<float> m, Vector128<float> v)
    {
        var take = Vector128.GreaterThan(v, m) | (Vector128.IsNaN(v) & ~Vector128.IsNaN(m));
        return Vector128.ConditionalSelect(take, v, m);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector128<float>, Vector128<int>) StepIndex(Vector128<float> m, Vector128<int> best, Vector128<float> v, int index)
    {
        var take = Vector128.GreaterThan(v, m) | (Vector128.IsNaN(v) & ~Vector128.IsNaN(m));
        return (Vector128.ConditionalSelect(take, v, m), Vector128.ConditionalSelect(take.AsInt32(), Vector128.Create(index), best));
    }

    private void MaxPool2x2Forward(PoolGeometry g, float[] xa, float[] ya, bool relu) =>
        ForRows(g.Input[0] * g.Input[1] * g.Output[2], g.Output[3], new MaxPool2x2ForwardBody(g, xa, ya, relu));

    /// <summary>One output row per index.</summary>
    private readonly struct MaxPool2x2ForwardBody(PoolGeometry g, float[] xa, float[] ya, bool relu) : IParallelBody
    {
        private readonly int h = g.Input[2], w = g.Input[3], oh = g.Output[2], ow = g.Output[3];

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int row)
        {
            int plane = row / oh, r = row % oh;
            var r0 = xa.AsSpan(plane * h * w + 2 * r * w, w);
            var r1 = xa.AsSpan(plane * h * w + (2 * r + 1) * w, w);
            var ys = ya.AsSpan(row * ow, ow);
            if (VectorRows(w))
            {
                for (int j = 0; ; j += 4)
                {
                    if (j > ow - 4) j = ow - 4;
                    var a = Vector256.Shuffle(Vector256.Create(r0.Slice(2 * j, 8)), EvenOdd);
                    var c = Vector256.Shuffle(Vector256.Create(r1.Slice(2 * j, 8)), EvenOdd);
                    var m = Step(Step(Step(a.GetLower(), a.GetUpper()), c.GetLower()), c.GetUpper());
                    (relu ? Kernels.Relu.Value(m) : m).CopyTo(ys.Slice(j, 4));
                    if (j == ow - 4) return;
                }
            }
            for (int j = 0; j < ow; j++)
            {
                float m = r0[2 * j];
                if (Replaces(r0[2 * j + 1], m)) m = r0[2 * j + 1];
                if (Replaces(r1[2 * j], m)) m = r1[2 * j];
                if (Replaces(r1[2 * j + 1], m)) m = r1[2 * j + 1];
                ys[j] = relu ? Kernels.Relu.Value(m) : m;
            }
        }
    }

    private void MaxPool2x2Backward(PoolGeometry g, float[] xa, float[] dya, float[] dxa, bool relu) =>
        ForRows(g.Input[0] * g.Input[1] * g.Output[2], g.Output[3], new MaxPool2x2BackwardBody(g, xa, dya, dxa, relu));

    /// <summary>The two input rows under one output row per index.</summary>
    private readonly struct MaxPool2x2BackwardBody(PoolGeometry g, float[] xa, float[] dya, float[] dxa, bool relu) : IParallelBody
    {
        private readonly int h = g.Input[2], w = g.Input[3], oh = g.Output[2], ow = g.Output[3];

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int row)
        {
            int plane = row / oh, r = row % oh;
            int start0 = plane * h * w + 2 * r * w, start1 = start0 + w;
            var x0 = xa.AsSpan(start0, w); var x1 = xa.AsSpan(start1, w);
            var d0 = dxa.AsSpan(start0, w); var d1 = dxa.AsSpan(start1, w);
            var dys = dya.AsSpan(row * ow, ow);
            if (VectorRows(w))
            {
                // Lane i of each half is window j + i: the winner's cell gets dy, the window's other cells zero.
                var zero = Vector128<float>.Zero;
                for (int j = 0; ; j += 4)
                {
                    if (j > ow - 4) j = ow - 4;
                    var a = Vector256.Shuffle(Vector256.Create(x0.Slice(2 * j, 8)), EvenOdd);
                    var c = Vector256.Shuffle(Vector256.Create(x1.Slice(2 * j, 8)), EvenOdd);
                    var m = a.GetLower(); var best = Vector128<int>.Zero;
                    (m, best) = StepIndex(m, best, a.GetUpper(), 1);
                    (m, best) = StepIndex(m, best, c.GetLower(), 2);
                    (m, best) = StepIndex(m, best, c.GetUpper(), 3);
                    var v = Vector128.Create(dys.Slice(j, 4));
                    var g0 = Vector128.ConditionalSelect(Vector128.Equals(best, Vector128.Create(0)).AsSingle(), v, zero);
                    var g1 = Vector128.ConditionalSelect(Vector128.Equals(best, Vector128.Create(1)).AsSingle(), v, zero);
                    var g2 = Vector128.ConditionalSelect(Vector128.Equals(best, Vector128.Create(2)).AsSingle(), v, zero);
                    var g3 = Vector128.ConditionalSelect(Vector128.Equals(best, Vector128.Create(3)).AsSingle(), v, zero);
                    if (relu)
                    {
                        // A window at or below 0 sends dy to its first cell (the ReLU outputs tie), then every cell
                        // takes the ReLU's slope.
                        var first = Vector128.GreaterThan(m, zero) | Vector128.IsNaN(m);
                        g0 = Vector128.ConditionalSelect(first, g0, v) * Kernels.Relu.Slope(a.GetLower());
                        g1 = Vector128.ConditionalSelect(first, g1, zero) * Kernels.Relu.Slope(a.GetUpper());
                        g2 = Vector128.ConditionalSelect(first, g2, zero) * Kernels.Relu.Slope(c.GetLower());
                        g3 = Vector128.ConditionalSelect(first, g3, zero) * Kernels.Relu.Slope(c.GetUpper());
                    }
                    Vector256.Shuffle(Vector256.Create(g0, g1), Interleave).CopyTo(d0.Slice(2 * j, 8));
                    Vector256.Shuffle(Vector256.Create(g2, g3), Interleave).CopyTo(d1.Slice(2 * j, 8));
                    if (j == ow - 4) break;
                }
            }
            else
                for (int j = 0; j < ow; j++)
                {
                    int c = 2 * j, best = 0;
                    float m = x0[c];
                    if (Replaces(x0[c + 1], m)) { m = x0[c + 1]; best = 1; }
                    if (Replaces(x1[c], m)) { m = x1[c]; best = 2; }
                    if (Replaces(x1[c + 1], m)) { m = x1[c + 1]; best = 3; }
                    if (relu && !(m > 0) && !float.IsNaN(m)) best = 0;
                    float v = dys[j];
                    d0[c] = best == 0 ? v : 0f; d0[c + 1] = best == 1 ? v : 0f;
                    d1[c] = best == 2 ? v : 0f; d1[c + 1] = best == 3 ? v : 0f;
                    if (relu)
                    {
                        d0[c] *= PiecewiseSlope(x0[c], 0f); d0[c + 1] *= PiecewiseSlope(x0[c + 1], 0f);
                        d1[c] *= PiecewiseSlope(x1[c], 0f); d1[c + 1] *= PiecewiseSlope(x1[c + 1], 0f);
                    }
                }
            // An odd width leaves a last column outside every window.
            if (2 * ow < w) { Outside(x0[(2 * ow)..], d0[(2 * ow)..]); Outside(x1[(2 * ow)..], d1[(2 * ow)..]); }
            // An odd height leaves a last row outside every window: the plane's last output row clears it.
            if (r == oh - 1 && 2 * oh < h)
            {
                int start = plane * h * w + 2 * oh * w, count = (h - 2 * oh) * w;
                Outside(xa.AsSpan(start, count), dxa.AsSpan(start, count));
            }
        }

        /// <summary>dx of cells no window covers: 0, times the ReLU's slope under a fused ReLU (NaN where x is NaN).</summary>
        private void Outside(ReadOnlySpan<float> x, Span<float> dx)
        {
            if (!relu) { dx.Clear(); return; }
            for (int i = 0; i < dx.Length; i++) dx[i] = 0f * PiecewiseSlope(x[i], 0f);
        }
    }

    /// <summary>Outputs per parallel index: enough to amortize scheduling (64 rows of 14 outputs on LeNet's 28-wide input).</summary>
    private const int BlockOutputs = 1024;

    /// <summary>Runs body.Run(row) over output rows of <paramref name="width"/> outputs, about <see cref="BlockOutputs"/> outputs per parallel index (each row is independent).</summary>
    private void ForRows<TBody>(int rows, int width, TBody body) where TBody : struct, IParallelBody
    {
        int block = Math.Max(1, BlockOutputs / Math.Max(1, width));
        For((rows + block - 1) / block, new RowBlocks<TBody>(rows, block, body));
    }

    private readonly struct RowBlocks<TBody>(int rows, int block, TBody body) : IParallelBody where TBody : struct, IParallelBody
    {
        // Compiled on its own: inlined into a caller that has inlined much already (a layer's Forward, one thread),
        // the JIT ran out of inlining budget and left the row body's vector helpers as calls (seen with AVX-512 off).
        [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
        public void Run(int index)
        {
            int end = Math.Min(rows, (index + 1) * block);
            for (int row = index * block; row < end; row++) body.Run(row);
        }
    }
}
