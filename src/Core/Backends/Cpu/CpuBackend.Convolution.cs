using System.Runtime.CompilerServices;
using MLNet.ConvNet.Backends.Cpu.Kernels;
using System.Buffers;
using System.Numerics.Tensors;
using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Backends.Cpu;

// Convolution kernels: im2col + a small GEMM per group, one image at a time.
//
// For image n and group g (Cg = C/groups input channels, Og = O/groups output channels, KV = prod(K)):
//
//            Cg*KV               L                      L
//   Og [    W_g     ]  x  Cg*KV [ cols_g ]   =   Og [  y[n]_g  ]          forward
//   Cg*KV [ W_gᵀ ]  x  Og [ dy[n]_g ]  = cols_g,   then col2im -> dx[n]    backward data
//   Og [ dy[n]_g ]  x  L [ cols_gᵀ ]  =  dW_g (summed over n)              backward filter
//
// L is a slab of output positions: whole output lines (runs along the last spatial dimension), as many
// as fit the column budget, so the column buffer stays bounded however large the image is.
// Parallelism: with at least as many images as threads, one image per thread (serial inside); otherwise
// images one after another with the channels / output rows of each image spread over threads. Every
// output element is computed by the same sequence of float operations either way, and the filter gradient
// is summed image by image in index order, so results do not depend on the thread count.

public sealed partial class CpuBackend
{
    /// <summary>
    /// Most floats in one column buffer (1 Mi floats = 4 MiB; at least one output line is always taken).
    /// One buffer per busy thread. Internal so tests can shrink it to exercise the slab loop.
    /// </summary>
    internal int ConvolutionColumnBudget { get; set; } = 1 << 20;

    /// <summary>Most doubles held by the per-image filter-gradient buffers of one wave (2 Mi doubles = 16 MiB).</summary>
    private const int FilterPartialBudget = 1 << 21;

    public void ConvolutionForward(ConvGeometry g, Tensor x, Tensor w, Tensor? bias, Tensor y) => ConvolutionForward(g, x, w, bias, y, cache: null);

    public void ConvolutionForward(ConvGeometry g, Tensor x, Tensor w, Tensor? bias, Tensor y, FilterCache? cache)
    {
        CheckConvTensor(x, g.Input, "x"); CheckConvTensor(w, g.Filter, "w"); CheckConvTensor(y, g.Output, "y");
        if (bias is not null) CheckLength(bias, g.OutChannels, "bias");
        if (UseReferenceKernels) { ReferenceConvolutionForward(g, x, w, bias, y); return; }
        float[] wa = Array(w);
        FastConvolutionForward(g, Array(x), wa, bias is null ? null : Array(bias), Array(y), cache is null ? null : PreparedFilter.For(cache, g, wa, this));
    }

    public void ConvolutionBackwardData(ConvGeometry g, Tensor w, Tensor dy, Tensor dx)
    {
        CheckConvTensor(w, g.Filter, "w"); CheckConvTensor(dy, g.Output, "dy"); CheckConvTensor(dx, g.Input, "dx");
        if (UseReferenceKernels) ReferenceConvolutionBackwardData(g, w, dy, dx);
        else FastConvolutionBackwardData(g, Array(w), Array(dy), Array(dx));
    }

    public void ConvolutionBackwardFilter(ConvGeometry g, Tensor x, Tensor dy, Tensor dw)
    {
        CheckConvTensor(x, g.Input, "x"); CheckConvTensor(dy, g.Output, "dy"); CheckConvTensor(dw, g.Filter, "dw");
        if (UseReferenceKernels) ReferenceConvolutionBackwardFilter(g, x, dy, dw);
        else FastConvolutionBackwardFilter(g, Array(x), Array(dy), Array(dw));
    }

    // ---- the reference path: one output row at a time with SIMD axpy / dot products ----

    private void ReferenceConvolutionForward(ConvGeometry g, Tensor x, Tensor w, Tensor? bias, Tensor y)
    {
        var p = new ConvPlan(g, ConvolutionColumnBudget);
        bool perImage = p.N >= MaxThreads;
        Each(p.N, perImage, new ReferenceForwardImage(this, p, perImage, Array(x), Array(w), bias is null ? null : Array(bias), Array(y)));
    }

    /// <summary>Image n of the reference forward: slab by slab, im2col then one axpy per (output channel, cols row).</summary>
    private readonly struct ReferenceForwardImage(CpuBackend backend, ConvPlan p, bool perImage, float[] xa, float[] wa, float[]? ba, float[] ya)
        : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int n)
        {
            float[] cols = ArrayPool<float>.Shared.Rent(p.Rows * p.SlabLines * p.Y2);
            try
            {
                for (int l0 = 0; l0 < p.Lines; l0 += p.SlabLines)
                {
                    int l1 = Math.Min(p.Lines, l0 + p.SlabLines);
                    backend.Each(p.C, !perImage, new Im2ColBody(p, xa, n, l0, l1, cols, fast: false));
                    backend.Each(p.O, !perImage, new ReferenceForwardRow(p, n, l0, l1, cols, wa, ba, ya));
                }
            }
            finally { ArrayPool<float>.Shared.Return(cols); }
        }
    }

    /// <summary>y[n, o, slab] = bias[o] + sum_r W[o, r] * cols[g*CgK + r, slab] for output channel o.</summary>
    private readonly struct ReferenceForwardRow(ConvPlan p, int n, int l0, int l1, float[] cols, float[] wa, float[]? ba, float[] ya) : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int o)
        {
            int len = (l1 - l0) * p.Y2;
            var yRow = ya.AsSpan((n * p.O + o) * p.YV + l0 * p.Y2, len);
            yRow.Fill(ba is null ? 0f : ba[o]);
            int first = o / p.Og * p.CgK;
            for (int r = 0; r < p.CgK; r++)
                TensorPrimitives.MultiplyAdd(cols.AsSpan((first + r) * len, len), wa[o * p.CgK + r], yRow, yRow);
        }
    }

    private void ReferenceConvolutionBackwardData(ConvGeometry g, Tensor w, Tensor dy, Tensor dx)
    {
        var p = new ConvPlan(g, ConvolutionColumnBudget);
        bool perImage = p.N >= MaxThreads;
        Each(p.N, perImage, new ReferenceBackwardDataImage(this, p, perImage, Array(w), Array(dy), Array(dx)));
    }

    /// <summary>Image n of the reference input gradient: dx[n] cleared, then slab by slab cols = Wᵀ dy and col2im.</summary>
    private readonly struct ReferenceBackwardDataImage(CpuBackend backend, ConvPlan p, bool perImage, float[] wa, float[] dya, float[] dxa)
        : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int n)
        {
            float[] cols = ArrayPool<float>.Shared.Rent(p.Rows * p.SlabLines * p.Y2);
            try
            {
                dxa.AsSpan(n * p.C * p.XV, p.C * p.XV).Clear();
                for (int l0 = 0; l0 < p.Lines; l0 += p.SlabLines)
                {
                    int l1 = Math.Min(p.Lines, l0 + p.SlabLines);
                    // Channel c owns cols rows [c*KV, (c+1)*KV) and its own plane of dx, so channels are independent.
                    backend.Each(p.C, !perImage, new ReferenceBackwardDataChannel(p, n, l0, l1, cols, wa, dya, dxa));
                }
            }
            finally { ArrayPool<float>.Shared.Return(cols); }
        }
    }

    private readonly struct ReferenceBackwardDataChannel(ConvPlan p, int n, int l0, int l1, float[] cols, float[] wa, float[] dya, float[] dxa)
        : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int c)
        {
            int len = (l1 - l0) * p.Y2, group = c / p.Cg;
            for (int t = 0; t < p.KV; t++)
            {
                // cols[c, t] = sum_o W[o, (c mod Cg, t)] * dy[n, o, slab] over the group's output channels
                int row = c * p.KV + t, wCol = (c - group * p.Cg) * p.KV + t;
                var colsRow = cols.AsSpan(row * len, len);
                colsRow.Clear();
                for (int o = group * p.Og; o < (group + 1) * p.Og; o++)
                    TensorPrimitives.MultiplyAdd(dya.AsSpan((n * p.O + o) * p.YV + l0 * p.Y2, len), wa[o * p.CgK + wCol], colsRow, colsRow);
            }
            p.Col2ImChannel(cols, c, l0, l1, dxa, n);
        }
    }

    private void ReferenceConvolutionBackwardFilter(ConvGeometry g, Tensor x, Tensor dy, Tensor dw)
    {
        var p = new ConvPlan(g, ConvolutionColumnBudget);
        float[] xa = Array(x), dya = Array(dy), dwa = Array(dw);
        int size = p.O * p.CgK;
        // Each image's gradient is built from zero in its own double buffer, then the buffers are added
        // into the total in image order: a wave of images runs at once, one per thread when there are enough
        // images and the buffers fit the budget (else one image at a time, parallel inside).
        bool perImage = p.N >= MaxThreads && (long)MaxThreads * size <= FilterPartialBudget;
        int wave = perImage ? MaxThreads : 1;
        var partials = new double[wave][];
        for (int i = 0; i < wave; i++) partials[i] = new double[size];
        var total = new double[size];
        for (int n0 = 0; n0 < p.N; n0 += wave)
        {
            int count = Math.Min(wave, p.N - n0);
            Each(count, perImage, new ReferenceFilterImage(this, p, perImage, n0, xa, dya, partials));
            for (int j = 0; j < count; j++)
            {
                double[] part = partials[j];
                for (int i = 0; i < size; i++) total[i] += part[i];
            }
        }
        var dwSpan = dwa.AsSpan(0, size);
        for (int i = 0; i < size; i++) dwSpan[i] = (float)total[i];
    }

    /// <summary>Image n0 + j of a wave: its filter gradient, from zero, into partials[j].</summary>
    private readonly struct ReferenceFilterImage(CpuBackend backend, ConvPlan p, bool perImage, int n0, float[] xa, float[] dya, double[][] partials)
        : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int j)
        {
            int n = n0 + j;
            double[] part = partials[j];
            System.Array.Clear(part);
            float[] cols = ArrayPool<float>.Shared.Rent(p.Rows * p.SlabLines * p.Y2);
            try
            {
                for (int l0 = 0; l0 < p.Lines; l0 += p.SlabLines)
                {
                    int l1 = Math.Min(p.Lines, l0 + p.SlabLines);
                    backend.Each(p.C, !perImage, new Im2ColBody(p, xa, n, l0, l1, cols, fast: false));
                    backend.Each(p.O, !perImage, new ReferenceFilterRow(p, n, l0, l1, cols, dya, part));
                }
            }
            finally { ArrayPool<float>.Shared.Return(cols); }
        }
    }

    /// <summary>dW[o, r] += dy[n, o, slab] . cols[g*CgK + r, slab] for output channel o.</summary>
    private readonly struct ReferenceFilterRow(ConvPlan p, int n, int l0, int l1, float[] cols, float[] dya, double[] part) : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int o)
        {
            int len = (l1 - l0) * p.Y2;
            var dyRow = dya.AsSpan((n * p.O + o) * p.YV + l0 * p.Y2, len);
            int first = o / p.Og * p.CgK;
            for (int r = 0; r < p.CgK; r++)
                part[o * p.CgK + r] += Reductions.Dot(dyRow, cols.AsSpan((first + r) * len, len));
        }
    }

    /// <summary>The cols rows of channel c of image n for output lines [l0, l1) (<see cref="ConvPlan.Im2ColChannel"/> or its fast twin).</summary>
    private readonly struct Im2ColBody(ConvPlan p, float[] x, int n, int l0, int l1, float[] cols, bool fast) : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int c)
        {
            if (fast) p.Im2ColChannelFast(x, n, c, l0, l1, cols);
            else p.Im2ColChannel(x, n, c, l0, l1, cols);
        }
    }

    public void Im2Col(ConvGeometry g, Tensor x, Tensor cols)
    {
        CheckConvTensor(x, g.Input, "x");
        var p = new ConvPlan(g, int.MaxValue);
        CheckLength(cols, p.N * p.Rows * p.YV, "cols");
        For(p.N * p.C, new Im2ColAllBody(p, Array(x), Array(cols)));
    }

    /// <summary>The tensor holds the columns of every image: write image n's [Rows, YV] block in place, channel (n, c) per index.</summary>
    private readonly struct Im2ColAllBody(ConvPlan p, float[] x, float[] cols) : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int nc)
        {
            int n = nc / p.C;
            p.Im2ColChannel(x, n, nc % p.C, 0, p.Lines, cols, n * p.Rows * p.YV);
        }
    }

    public void Col2Im(ConvGeometry g, Tensor cols, Tensor x)
    {
        CheckConvTensor(x, g.Input, "x");
        var p = new ConvPlan(g, int.MaxValue);
        CheckLength(cols, p.N * p.Rows * p.YV, "cols");
        For(p.N * p.C, new Col2ImAllBody(p, Array(cols), Array(x)));
    }

    private readonly struct Col2ImAllBody(ConvPlan p, float[] cols, float[] x) : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int nc)
        {
            int n = nc / p.C;
            x.AsSpan(nc * p.XV, p.XV).Clear();
            p.Col2ImChannel(cols, nc % p.C, 0, p.Lines, x, n, n * p.Rows * p.YV);
        }
    }

    /// <summary>Runs body.Run(i) for i in [0, count): across threads when <paramref name="parallel"/>, else in order on this thread.</summary>
    private void Each<TBody>(int count, bool parallel, TBody body) where TBody : struct, IParallelBody
    {
        if (parallel) { For(count, body); return; }
        for (int i = 0; i < count; i++) body.Run(i);
    }

    /// <summary>A per-axis option padded to three dimensions: <paramref name="fill"/> for the <paramref name="pad"/> leading ones.</summary>
    private static Int3 Lift(int[] values, int pad, int fill)
    {
        var r = new Int3();
        for (int i = 0; i < 3; i++) r[i] = i < pad ? fill : values[i - pad];
        return r;
    }

    /// <summary>The spatial sizes of <paramref name="shape"/> [N, C, X...] padded to three dimensions with leading 1s.</summary>
    private static Int3 LiftSpatial(Shape shape, int pad)
    {
        var r = new Int3();
        for (int i = 0; i < 3; i++) r[i] = i < pad ? 1 : shape[i - pad + 2];
        return r;
    }

    private static void CheckConvTensor(Tensor t, Shape expected, string name)
    {
        if (t.Length != expected.Length)
            throw new ArgumentException($"{name} {t.Shape} should have the {expected.Length} elements of {expected}.", name);
    }

    /// <summary>
    /// A convolution's geometry with 1-D and 2-D problems padded to three spatial dimensions by leading
    /// size-1 dimensions (kernel 1, stride 1, padding 0, dilation 1), so one set of loops serves every rank.
    /// Output positions are read as lines: line l = (y0, y1) covers the Y2 positions along the last dimension.
    /// A struct of plain ints: building one per call allocates nothing.
    /// </summary>
    private readonly struct ConvPlan
    {
        public readonly int N, C, O, Groups, Cg, Og, KV, CgK, Rows, XV, YV;
        public readonly int X0, X1, X2, K0, K1, K2, Y1, Y2, Lines, SlabLines;
        private readonly Int3 _offset, _stride;
        private readonly int _dilation0, _dilation1, _dilation2;
        private readonly bool _flip;

        public ConvPlan(ConvGeometry g, int columnBudget)
        {
            N = g.BatchSize; C = g.InChannels; O = g.OutChannels;
            Groups = g.Groups; Cg = g.InChannelsPerGroup; Og = g.OutChannelsPerGroup;
            KV = g.KernelVolume; CgK = Cg * KV; Rows = C * KV;
            XV = g.InputVolume; YV = g.OutputVolume;
            int pad = 3 - g.SpatialRank;
            Int3 x = LiftSpatial(g.Input, pad), k = LiftSpatial(g.Filter, pad), y = LiftSpatial(g.Output, pad);
            Int3 d = Lift(g.Dilation, pad, 1), p = Lift(g.Padding, pad, 0);
            (X0, X1, X2) = (x[0], x[1], x[2]);
            (K0, K1, K2) = (k[0], k[1], k[2]);
            (Y1, Y2) = (y[1], y[2]);
            Lines = y[0] * y[1];
            _stride = Lift(g.Stride, pad, 1);
            for (int i = 0; i < 3; i++) _offset[i] = -p[i];
            (_dilation0, _dilation1, _dilation2) = (d[0], d[1], d[2]);
            _flip = g.Mode == ConvolutionMode.Convolution;
            long lineFloats = (long)Rows * Y2;
            SlabLines = (int)Math.Clamp(columnBudget / lineFloats, 1, Lines);
        }

        /// <summary>
        /// Writes the cols rows of channel <paramref name="c"/> of image <paramref name="n"/> for output lines
        /// [l0, l1): row (c, t) of a [Rows, (l1-l0)*Y2] block starting at <paramref name="colsStart"/>.
        /// </summary>
        public void Im2ColChannel(float[] x, int n, int c, int l0, int l1, float[] cols, int colsStart = 0)
        {
            int len = (l1 - l0) * Y2;
            var plane = x.AsSpan((n * C + c) * XV, XV);
            for (int t = 0; t < KV; t++)
            {
                var (off0, off1, off2) = TapOffsets(t);
                var row = cols.AsSpan(colsStart + (c * KV + t) * len, len);
                var (lo, hi) = ValidRange(off2, _stride[2], X2, Y2);
                for (int l = l0; l < l1; l++)
                {
                    var seg = row.Slice((l - l0) * Y2, Y2);
                    int i0 = l / Y1 * _stride[0] + off0, i1 = l % Y1 * _stride[1] + off1;
                    if ((uint)i0 >= (uint)X0 || (uint)i1 >= (uint)X1 || lo == hi) { seg.Clear(); continue; }
                    var src = plane.Slice((i0 * X1 + i1) * X2);
                    seg[..lo].Clear();
                    int s2 = _stride[2];
                    for (int j = lo; j < hi; j++) seg[j] = src[j * s2 + off2];
                    seg[hi..].Clear();
                }
            }
        }

        /// <summary>
        /// The same rows as <see cref="Im2ColChannel"/>, written for speed: the line index is stepped instead of
        /// divided, and with stride 1 along the last dimension each in-range run is one block copy.
        /// </summary>
        public void Im2ColChannelFast(float[] x, int n, int c, int l0, int l1, float[] cols, int colsStart = 0)
        {
            int len = (l1 - l0) * Y2, s0 = _stride[0], s1 = _stride[1], s2 = _stride[2];
            var plane = x.AsSpan((n * C + c) * XV, XV);
            int firstY0 = l0 / Y1, firstY1 = l0 % Y1;
            for (int t = 0; t < KV; t++)
            {
                var (off0, off1, off2) = TapOffsets(t);
                var row = cols.AsSpan(colsStart + (c * KV + t) * len, len);
                var (lo, hi) = ValidRange(off2, s2, X2, Y2);
                int y0 = firstY0, y1 = firstY1;
                for (int start = 0; start < len; start += Y2)
                {
                    var seg = row.Slice(start, Y2);
                    int i0 = y0 * s0 + off0, i1 = y1 * s1 + off1;
                    if (++y1 == Y1) { y1 = 0; y0++; }
                    if ((uint)i0 >= (uint)X0 || (uint)i1 >= (uint)X1 || lo == hi) { seg.Clear(); continue; }
                    var src = plane.Slice((i0 * X1 + i1) * X2);
                    if (lo > 0) seg[..lo].Clear();
                    if (s2 == 1) src.Slice(lo + off2, hi - lo).CopyTo(seg.Slice(lo));
                    else for (int j = lo; j < hi; j++) seg[j] = src[j * s2 + off2];
                    if (hi < Y2) seg[hi..].Clear();
                }
            }
        }

        /// <summary>The adjoint of <see cref="Im2ColChannel"/>: adds the cols rows of channel c onto dx[n, c] (accumulates).</summary>
        public void Col2ImChannel(float[] cols, int c, int l0, int l1, float[] x, int n, int colsStart = 0)
        {
            int len = (l1 - l0) * Y2;
            var plane = x.AsSpan((n * C + c) * XV, XV);
            for (int t = 0; t < KV; t++)
            {
                var (off0, off1, off2) = TapOffsets(t);
                var row = cols.AsSpan(colsStart + (c * KV + t) * len, len);
                var (lo, hi) = ValidRange(off2, _stride[2], X2, Y2);
                for (int l = l0; l < l1; l++)
                {
                    int i0 = l / Y1 * _stride[0] + off0, i1 = l % Y1 * _stride[1] + off1;
                    if ((uint)i0 >= (uint)X0 || (uint)i1 >= (uint)X1) continue;
                    var seg = row.Slice((l - l0) * Y2, Y2);
                    var dst = plane.Slice((i0 * X1 + i1) * X2);
                    int s2 = _stride[2];
                    for (int j = lo; j < hi; j++) dst[j * s2 + off2] += seg[j];
                }
            }
        }

        /// <summary>
        /// Input offset of tap t in each dimension: input index = output index * stride + offset. In Convolution
        /// mode tap k reads the flipped position K-1-k.
        /// </summary>
        private (int, int, int) TapOffsets(int t)
        {
            int k2 = t % K2, k1 = t / K2 % K1, k0 = t / (K1 * K2);
            if (_flip) { k0 = K0 - 1 - k0; k1 = K1 - 1 - k1; k2 = K2 - 1 - k2; }
            return (k0 * _dilation0 + _offset[0], k1 * _dilation1 + _offset[1], k2 * _dilation2 + _offset[2]);
        }

        /// <summary>The outputs j in [lo, hi) of a line of <paramref name="outSize"/> whose input j*stride + offset lies in [0, size).</summary>
        private static (int lo, int hi) ValidRange(int offset, int stride, int size, int outSize)
        {
            int lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
            int last = size - 1 - offset;
            int hi = last < 0 ? 0 : Math.Min(outSize, last / stride + 1);
            return (Math.Min(lo, hi), hi);
        }
    }
}
