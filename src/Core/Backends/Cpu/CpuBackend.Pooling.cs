using System.Runtime.CompilerServices;
using System.Buffers;
using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Backends.Cpu;

// Pooling kernels (the reference path: plain loops, one (n, c) plane per parallel task).
// Every pooling is run as a 3-D one: a 1-D or 2-D geometry gets leading spatial dimensions of size 1
// with window 1, stride 1 and no padding, which changes no result and keeps one loop nest.
// Planes are independent in both directions (a window never crosses channels), so splitting the work by
// plane reduces nothing across threads and results do not depend on the thread count.
public sealed partial class CpuBackend
{
    /// <summary>
    /// y[n, c, o] = max, or mean, of the cells of x[n, c, ...] under window o (see <see cref="PoolingMode"/>).
    /// Max ignores padded cells (cuDNN's rule: they act as -infinity) and propagates NaN: a window holding a
    /// NaN gives NaN (as PyTorch does). Averages sum in double and round once.
    /// </summary>
    public void PoolingForward(PoolGeometry g, Tensor x, Tensor y) => PoolForward(g, x, y, relu: false);

    /// <summary>
    /// Max pooling of max(0, x): the ReLU is monotone, so each window's value is the ReLU of its maximum, and the
    /// ReLU's output is never written (one pass over x instead of two, and no tensor of x's size in between).
    /// </summary>
    public void PoolingReluForward(PoolGeometry g, Tensor x, Tensor y) => PoolForward(g, x, y, relu: true);

    private void PoolForward(PoolGeometry g, Tensor x, Tensor y, bool relu)
    {
        if (!UseReferenceKernels && IsMaxPool2x2(g)) { MaxPool2x2Forward(g, Array(x), Array(y), relu); return; }
        var plan = new PoolPlan(g);
        For(plan.Planes, new PoolForwardBody(plan, Array(x), Array(y), relu));
    }

    /// <summary>One (n, c) plane per index.</summary>
    private readonly struct PoolForwardBody(PoolPlan plan, float[] x, float[] y, bool relu) : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int plane)
        {
            var xs = new ReadOnlySpan<float>(x, plane * plan.InVolume, plan.InVolume);
            var ys = y.AsSpan(plane * plan.OutVolume, plan.OutVolume);
            int o = 0;
            for (int od = 0; od < plan.Out[0]; od++)
            for (int oh = 0; oh < plan.Out[1]; oh++)
            for (int ow = 0; ow < plan.Out[2]; ow++, o++)
            {
                var w = plan.WindowAt(od, oh, ow);
                ys[o] = plan.Mode != PoolingMode.Max ? (float)(plan.Sum(xs, w) / plan.Divisor(w))
                    : relu ? Kernels.Relu.Value(xs[plan.ArgMax(xs, w)])
                    : xs[plan.ArgMax(xs, w)];
            }
        }
    }

    /// <summary>
    /// dx = the adjoint of <see cref="PoolingForward"/> applied to dy, accumulated in double per plane.
    /// Max sends dy[o] to the first maximal in-input cell of window o in scan order (row-major within the
    /// window; the first NaN when the window holds one), found again from x, so y is not read.
    /// The averages spread dy[o] / divisor over the in-input cells of window o and read neither x nor y
    /// (<see cref="Pooling.Unpool"/> relies on that, and may pass the dx tensor as x).
    /// </summary>
    public void PoolingBackward(PoolGeometry g, Tensor x, Tensor y, Tensor dy, Tensor dx) => PoolBackward(g, x, dy, dx, relu: false);

    /// <summary>
    /// The backward of <see cref="PoolingReluForward"/>, as max pooling's backward on r = max(0, x) then the ReLU's at x,
    /// without r: r's first maximal cell in a window is x's when x's maximum is above 0 or NaN; otherwise every r there
    /// is +0 and the window's first cell wins. Each dx is then multiplied by the ReLU's slope at x (1, 0, or NaN at NaN).
    /// </summary>
    public void PoolingReluBackward(PoolGeometry g, Tensor x, Tensor y, Tensor dy, Tensor dx) => PoolBackward(g, x, dy, dx, relu: true);

    private void PoolBackward(PoolGeometry g, Tensor x, Tensor dy, Tensor dx, bool relu)
    {
        if (!UseReferenceKernels && IsMaxPool2x2(g)) { MaxPool2x2Backward(g, Array(x), Array(dy), Array(dx), relu); return; }
        var plan = new PoolPlan(g);
        // Only max pooling looks at x; fetching its array costs nothing but would mislead a reader.
        For(plan.Planes, new PoolBackwardBody(plan, plan.Mode == PoolingMode.Max ? Array(x) : null, Array(dy), Array(dx), relu));
    }

    /// <summary>One (n, c) plane per index.</summary>
    private readonly struct PoolBackwardBody(PoolPlan plan, float[]? x, float[] dy, float[] dx, bool relu) : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int plane)
        {
            double[] rented = ArrayPool<double>.Shared.Rent(plan.InVolume);
            var acc = rented.AsSpan(0, plan.InVolume);
            acc.Clear();
            var dys = new ReadOnlySpan<float>(dy, plane * plan.OutVolume, plan.OutVolume);
            var xs = x is null ? default : new ReadOnlySpan<float>(x, plane * plan.InVolume, plan.InVolume);
            int o = 0;
            for (int od = 0; od < plan.Out[0]; od++)
            for (int oh = 0; oh < plan.Out[1]; oh++)
            for (int ow = 0; ow < plan.Out[2]; ow++, o++)
            {
                var w = plan.WindowAt(od, oh, ow);
                if (plan.Mode == PoolingMode.Max)
                {
                    int best = plan.ArgMax(xs, w);
                    // Under a ReLU with the window's maximum at or below 0 every r ties at +0: the first cell wins.
                    if (relu && !(xs[best] > 0) && !float.IsNaN(xs[best])) best = (w.D0 * plan.In[1] + w.H0) * plan.In[2] + w.W0;
                    acc[best] += dys[o];
                    continue;
                }
                double share = dys[o] / plan.Divisor(w);
                for (int d = w.D0; d < w.D1; d++)
                for (int h = w.H0; h < w.H1; h++)
                {
                    int row = (d * plan.In[1] + h) * plan.In[2];
                    for (int c = w.W0; c < w.W1; c++) acc[row + c] += share;
                }
            }
            var dxs = dx.AsSpan(plane * plan.InVolume, plan.InVolume);
            if (relu) for (int i = 0; i < acc.Length; i++) dxs[i] = (float)acc[i] * PiecewiseSlope(xs[i], 0f);
            else for (int i = 0; i < acc.Length; i++) dxs[i] = (float)acc[i];
            ArrayPool<double>.Shared.Return(rented);
        }
    }

    /// <summary>The in-input part of one window: half-open ranges [D0, D1) x [H0, H1) x [W0, W1).</summary>
    private readonly record struct PoolWindow(int D0, int D1, int H0, int H1, int W0, int W1)
    {
        public int Count => (D1 - D0) * (H1 - H0) * (W1 - W0);
    }

    /// <summary>A <see cref="PoolGeometry"/> padded to three spatial dimensions (a struct: building one allocates nothing).</summary>
    private readonly struct PoolPlan
    {
        public PoolPlan(PoolGeometry g)
        {
            int lead = 3 - g.SpatialRank;
            for (int i = 0; i < 3; i++)
            {
                bool real = i >= lead;
                In[i] = real ? g.Input[i - lead + 2] : 1;
                Out[i] = real ? g.Output[i - lead + 2] : 1;
                Window[i] = real ? g.Window[i - lead] : 1;
                Stride[i] = real ? g.Stride[i - lead] : 1;
                Padding[i] = real ? g.Padding[i - lead] : 0;
            }
            Planes = g.Input[0] * g.Input[1];
            InVolume = In[0] * In[1] * In[2];
            OutVolume = Out[0] * Out[1] * Out[2];
            WindowVolume = Window[0] * Window[1] * Window[2];
            Mode = g.Mode;
        }

        public readonly Int3 In, Out, Window, Stride, Padding;
        public readonly int Planes, InVolume, OutVolume, WindowVolume;
        public readonly PoolingMode Mode;

        public PoolWindow WindowAt(int od, int oh, int ow)
        {
            var (d0, d1) = Clip(0, od);
            var (h0, h1) = Clip(1, oh);
            var (w0, w1) = Clip(2, ow);
            return new PoolWindow(d0, d1, h0, h1, w0, w1);
        }

        // Window o along axis i covers padded positions [o*S, o*S + W), i.e. input cells [o*S - P, o*S - P + W).
        // PoolGeometry guarantees P < W and that the window fits the padded input, so the range is never empty.
        private (int Lo, int Hi) Clip(int i, int o)
        {
            int start = o * Stride[i] - Padding[i];
            return (Math.Max(start, 0), Math.Min(start + Window[i], In[i]));
        }

        public double Divisor(PoolWindow w) => Mode == PoolingMode.AverageIncludingPadding ? WindowVolume : w.Count;

        public double Sum(ReadOnlySpan<float> plane, PoolWindow w)
        {
            double s = 0;
            for (int d = w.D0; d < w.D1; d++)
            for (int h = w.H0; h < w.H1; h++)
            {
                int row = (d * In[1] + h) * In[2];
                for (int c = w.W0; c < w.W1; c++) s += plane[row + c];
            }
            return s;
        }

        /// <summary>Index in the plane of the first maximal cell of the window; the first NaN wins over numbers.</summary>
        public int ArgMax(ReadOnlySpan<float> plane, PoolWindow w)
        {
            int best = (w.D0 * In[1] + w.H0) * In[2] + w.W0;
            float max = plane[best];
            for (int d = w.D0; d < w.D1; d++)
            for (int h = w.H0; h < w.H1; h++)
            {
                int row = (d * In[1] + h) * In[2];
                for (int c = w.W0; c < w.W1; c++)
                {
                    float v = plane[row + c];
                    // Strictly greater keeps the first of equal maxima; once max is NaN nothing replaces it.
                    if (v > max || (float.IsNaN(v) && !float.IsNaN(max))) { max = v; best = row + c; }
                }
            }
            return best;
        }
    }
}
