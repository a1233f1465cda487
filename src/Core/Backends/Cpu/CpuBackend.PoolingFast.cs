using System.Runtime.Intrinsics;
using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Backends.Cpu;

// The fast path of the most common pooling: 2-D max pooling, window 2, stride 2, no padding.
// Same rule as the reference (CpuBackend.Pooling.cs): the window is scanned (0,0), (0,1), (1,0), (1,1) and a
// cell replaces the running maximum when it is strictly greater, or when it is NaN and the maximum is not, so
// the first maximal cell (or first NaN) wins, and the forward value is that cell's value, bit for bit.
// Forward: four loads per lane, the even lanes hold the windows (lane i of the load at 2w covers window w + i/2),
// then one shuffle keeps the even lanes. Backward: the windows do not overlap, so each dx cell is written once.
public sealed partial class CpuBackend
{
    private static bool IsMaxPool2x2(PoolGeometry g) =>
        g.Mode == PoolingMode.Max && g.Input.Rank == 4
        && g.Window[0] == 2 && g.Window[1] == 2 && g.Stride[0] == 2 && g.Stride[1] == 2
        && g.Padding[0] == 0 && g.Padding[1] == 0;

    /// <summary>The running-maximum step of the scan: v replaces m when greater, or NaN over a number.</summary>
    private static bool Replaces(float v, float m) => v > m || (float.IsNaN(v) && !float.IsNaN(m));

    private static Vector256<float> Step(Vector256<float> m, Vector256<float> v)
    {
        var take = Vector256.GreaterThan(v, m) | (Vector256.IsNaN(v) & ~Vector256.IsNaN(m));
        return Vector256.ConditionalSelect(take, v, m);
    }

    private static (Vector256<float>, Vector256<float>) StepIndex(Vector256<float> m, Vector256<float> best, Vector256<float> v, float index)
    {
        var take = Vector256.GreaterThan(v, m) | (Vector256.IsNaN(v) & ~Vector256.IsNaN(m));
        return (Vector256.ConditionalSelect(take, v, m), Vector256.ConditionalSelect(take, Vector256.Create(index), best));
    }

    private void MaxPool2x2Forward(PoolGeometry g, float[] xa, float[] ya) =>
        ForRows(g.Input[0] * g.Input[1] * g.Output[2], new MaxPool2x2ForwardBody(g, xa, ya));

    /// <summary>One output row per index.</summary>
    private readonly struct MaxPool2x2ForwardBody(PoolGeometry g, float[] xa, float[] ya) : IParallelBody
    {
        private readonly int h = g.Input[2], w = g.Input[3], oh = g.Output[2], ow = g.Output[3];

        public void Run(int row)
        {
            // A vector step at output column j reads input columns 2j .. 2j + 8: keep it inside the row.
            int vectorColumns = Vector256.IsHardwareAccelerated && w >= 9 ? (w - 9) / 2 / 4 * 4 + 4 : 0;
            var even = Vector256.Create(0, 2, 4, 6, 0, 2, 4, 6);
            int plane = row / oh, r = row % oh;
            var r0 = xa.AsSpan(plane * h * w + 2 * r * w, w);
            var r1 = xa.AsSpan(plane * h * w + (2 * r + 1) * w, w);
            var ys = ya.AsSpan(row * ow, ow);
            int j = 0;
            for (; j < vectorColumns; j += 4)
            {
                var a = Vector256.Create(r0.Slice(2 * j, 8)); var b = Vector256.Create(r0.Slice(2 * j + 1, 8));
                var c = Vector256.Create(r1.Slice(2 * j, 8)); var d = Vector256.Create(r1.Slice(2 * j + 1, 8));
                var m = Step(Step(Step(a, b), c), d);
                Vector256.Shuffle(m, even).GetLower().CopyTo(ys.Slice(j, 4));
            }
            for (; j < ow; j++)
            {
                float m = r0[2 * j];
                if (Replaces(r0[2 * j + 1], m)) m = r0[2 * j + 1];
                if (Replaces(r1[2 * j], m)) m = r1[2 * j];
                if (Replaces(r1[2 * j + 1], m)) m = r1[2 * j + 1];
                ys[j] = m;
            }
        }
    }

    private void MaxPool2x2Backward(PoolGeometry g, float[] xa, float[] dya, float[] dxa) =>
        ForRows(g.Input[0] * g.Input[1] * g.Output[2], new MaxPool2x2BackwardBody(g, xa, dya, dxa));

    /// <summary>The two input rows under one output row per index.</summary>
    private readonly struct MaxPool2x2BackwardBody(PoolGeometry g, float[] xa, float[] dya, float[] dxa) : IParallelBody
    {
        private readonly int h = g.Input[2], w = g.Input[3], oh = g.Output[2], ow = g.Output[3];

        public void Run(int row)
        {
            int vectorColumns = Vector256.IsHardwareAccelerated && w >= 9 ? (w - 9) / 2 / 4 * 4 + 4 : 0;
            // Lane l of a step covers input column 2j + l, in window l / 2: spread each window's winner (kept in its
            // even lane) and its dy to both of its lanes, then keep dy where the lane is the winner.
            var pairs = Vector256.Create(0, 0, 2, 2, 4, 4, 6, 6);
            var spread = Vector256.Create(0, 0, 1, 1, 2, 2, 3, 3);
            var top = Vector256.Create(0f, 1, 0, 1, 0, 1, 0, 1);
            var bottom = top + Vector256.Create(2f);
            int plane = row / oh, r = row % oh;
            int start0 = plane * h * w + 2 * r * w, start1 = start0 + w;
            var x0 = xa.AsSpan(start0, w); var x1 = xa.AsSpan(start1, w);
            var d0 = dxa.AsSpan(start0, w); var d1 = dxa.AsSpan(start1, w);
            var dys = dya.AsSpan(row * ow, ow);
            int j = 0;
            for (; j < vectorColumns; j += 4)
            {
                var a = Vector256.Create(x0.Slice(2 * j, 8)); var b = Vector256.Create(x0.Slice(2 * j + 1, 8));
                var c = Vector256.Create(x1.Slice(2 * j, 8)); var d = Vector256.Create(x1.Slice(2 * j + 1, 8));
                var m = a; var best = Vector256<float>.Zero;
                (m, best) = StepIndex(m, best, b, 1f);
                (m, best) = StepIndex(m, best, c, 2f);
                (_, best) = StepIndex(m, best, d, 3f);
                best = Vector256.Shuffle(best, pairs);
                var v = Vector256.Shuffle(Vector128.Create(dys.Slice(j, 4)).ToVector256Unsafe(), spread);
                Vector256.ConditionalSelect(Vector256.Equals(best, top), v, Vector256<float>.Zero).CopyTo(d0.Slice(2 * j, 8));
                Vector256.ConditionalSelect(Vector256.Equals(best, bottom), v, Vector256<float>.Zero).CopyTo(d1.Slice(2 * j, 8));
            }
            for (; j < ow; j++)
            {
                int c = 2 * j, best = 0;
                float m = x0[c];
                if (Replaces(x0[c + 1], m)) { m = x0[c + 1]; best = 1; }
                if (Replaces(x1[c], m)) { m = x1[c]; best = 2; }
                if (Replaces(x1[c + 1], m)) best = 3;
                float v = dys[j];
                d0[c] = best == 0 ? v : 0f; d0[c + 1] = best == 1 ? v : 0f;
                d1[c] = best == 2 ? v : 0f; d1[c + 1] = best == 3 ? v : 0f;
            }
            // An odd width leaves a last column outside every window.
            if (2 * ow < w) { d0[(2 * ow)..].Clear(); d1[(2 * ow)..].Clear(); }
            // An odd height leaves a last row outside every window: the plane's last output row clears it.
            if (r == oh - 1 && 2 * oh < h) dxa.AsSpan(plane * h * w + 2 * oh * w, (h - 2 * oh) * w).Clear();
        }
    }

    /// <summary>Output rows per parallel index: enough to amortize scheduling.</summary>
    private const int RowBlock = 64;

    /// <summary>Runs body.Run(row) over output rows in blocks of <see cref="RowBlock"/> (each row is independent).</summary>
    private void ForRows<TBody>(int rows, TBody body) where TBody : struct, IParallelBody =>
        For((rows + RowBlock - 1) / RowBlock, new RowBlocks<TBody>(rows, body));

    private readonly struct RowBlocks<TBody>(int rows, TBody body) : IParallelBody where TBody : struct, IParallelBody
    {
        public void Run(int block)
        {
            int end = Math.Min(rows, (block + 1) * RowBlock);
            for (int row = block * RowBlock; row < end; row++) body.Run(row);
        }
    }
}
