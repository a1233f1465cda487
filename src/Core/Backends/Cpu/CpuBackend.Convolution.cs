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

    public void ConvolutionForward(ConvGeometry g, Tensor x, Tensor w, Tensor? bias, Tensor y)
    {
        CheckConvTensor(x, g.Input, "x"); CheckConvTensor(w, g.Filter, "w"); CheckConvTensor(y, g.Output, "y");
        if (bias is not null) CheckLength(bias, g.OutChannels, "bias");
        if (UseReferenceKernels) ReferenceConvolutionForward(g, x, w, bias, y);
        else FastConvolutionForward(g, Array(x), Array(w), bias is null ? null : Array(bias), Array(y));
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
        float[] xa = Array(x), wa = Array(w), ya = Array(y);
        float[]? ba = bias is null ? null : Array(bias);
        bool perImage = p.N >= MaxThreads;
        Each(p.N, perImage, n =>
        {
            float[] cols = ArrayPool<float>.Shared.Rent(p.Rows * p.SlabLines * p.Y2);
            try
            {
                for (int l0 = 0; l0 < p.Lines; l0 += p.SlabLines)
                {
                    int l1 = Math.Min(p.Lines, l0 + p.SlabLines), len = (l1 - l0) * p.Y2;
                    Each(p.C, !perImage, c => p.Im2ColChannel(xa, n, c, l0, l1, cols));
                    // y[n, o, slab] = bias[o] + sum_r W[o, r] * cols[g*CgK + r, slab]
                    Each(p.O, !perImage, o =>
                    {
                        var yRow = ya.AsSpan((n * p.O + o) * p.YV + l0 * p.Y2, len);
                        yRow.Fill(ba is null ? 0f : ba[o]);
                        int first = o / p.Og * p.CgK;
                        for (int r = 0; r < p.CgK; r++)
                            TensorPrimitives.MultiplyAdd(cols.AsSpan((first + r) * len, len), wa[o * p.CgK + r], yRow, yRow);
                    });
                }
            }
            finally { ArrayPool<float>.Shared.Return(cols); }
        });
    }

    private void ReferenceConvolutionBackwardData(ConvGeometry g, Tensor w, Tensor dy, Tensor dx)
    {
        var p = new ConvPlan(g, ConvolutionColumnBudget);
        float[] wa = Array(w), dya = Array(dy), dxa = Array(dx);
        bool perImage = p.N >= MaxThreads;
        Each(p.N, perImage, n =>
        {
            float[] cols = ArrayPool<float>.Shared.Rent(p.Rows * p.SlabLines * p.Y2);
            try
            {
                dxa.AsSpan(n * p.C * p.XV, p.C * p.XV).Clear();
                for (int l0 = 0; l0 < p.Lines; l0 += p.SlabLines)
                {
                    int l1 = Math.Min(p.Lines, l0 + p.SlabLines), len = (l1 - l0) * p.Y2;
                    // Channel c owns cols rows [c*KV, (c+1)*KV) and its own plane of dx, so channels are independent.
                    Each(p.C, !perImage, c =>
                    {
                        int group = c / p.Cg;
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
                    });
                }
            }
            finally { ArrayPool<float>.Shared.Return(cols); }
        });
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
            Each(count, perImage, j =>
            {
                int n = n0 + j;
                double[] part = partials[j];
                System.Array.Clear(part);
                float[] cols = ArrayPool<float>.Shared.Rent(p.Rows * p.SlabLines * p.Y2);
                try
                {
                    for (int l0 = 0; l0 < p.Lines; l0 += p.SlabLines)
                    {
                        int l1 = Math.Min(p.Lines, l0 + p.SlabLines), len = (l1 - l0) * p.Y2;
                        Each(p.C, !perImage, c => p.Im2ColChannel(xa, n, c, l0, l1, cols));
                        // dW[o, r] += dy[n, o, slab] . cols[g*CgK + r, slab]
                        Each(p.O, !perImage, o =>
                        {
                            var dyRow = dya.AsSpan((n * p.O + o) * p.YV + l0 * p.Y2, len);
                            int first = o / p.Og * p.CgK;
                            for (int r = 0; r < p.CgK; r++)
                                part[o * p.CgK + r] += TensorPrimitives.Dot(dyRow, cols.AsSpan((first + r) * len, len));
                        });
                    }
                }
                finally { ArrayPool<float>.Shared.Return(cols); }
            });
            for (int j = 0; j < count; j++)
            {
                double[] part = partials[j];
                for (int i = 0; i < size; i++) total[i] += part[i];
            }
        }
        var dwSpan = dwa.AsSpan(0, size);
        for (int i = 0; i < size; i++) dwSpan[i] = (float)total[i];
    }

    public void Im2Col(ConvGeometry g, Tensor x, Tensor cols)
    {
        CheckConvTensor(x, g.Input, "x");
        var p = new ConvPlan(g, int.MaxValue);
        CheckLength(cols, p.N * p.Rows * p.YV, "cols");
        float[] xa = Array(x), ca = Array(cols);
        // The tensor holds the columns of every image: write image n's [Rows, YV] block in place.
        For(p.N * p.C, nc =>
        {
            int n = nc / p.C;
            p.Im2ColChannel(xa, n, nc % p.C, 0, p.Lines, ca, n * p.Rows * p.YV);
        });
    }

    public void Col2Im(ConvGeometry g, Tensor cols, Tensor x)
    {
        CheckConvTensor(x, g.Input, "x");
        var p = new ConvPlan(g, int.MaxValue);
        CheckLength(cols, p.N * p.Rows * p.YV, "cols");
        float[] xa = Array(x), ca = Array(cols);
        For(p.N * p.C, nc =>
        {
            int n = nc / p.C;
            xa.AsSpan(nc * p.XV, p.XV).Clear();
            p.Col2ImChannel(ca, nc % p.C, 0, p.Lines, xa, n, n * p.Rows * p.YV);
        });
    }

    /// <summary>Runs body(i) for i in [0, count): across threads when <paramref name="parallel"/>, else in order on this thread.</summary>
    private void Each(int count, bool parallel, Action<int> body)
    {
        if (parallel) { For(count, body); return; }
        for (int i = 0; i < count; i++) body(i);
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
    /// </summary>
    private sealed class ConvPlan
    {
        public readonly int N, C, O, Cg, Og, KV, CgK, Rows, XV, YV;
        public readonly int X0, X1, X2, K0, K1, K2, Y1, Y2, Lines, SlabLines;
        private readonly int[] _offset, _stride;
        private readonly int _dilation0, _dilation1, _dilation2;
        private readonly bool _flip;

        public ConvPlan(ConvGeometry g, int columnBudget)
        {
            N = g.BatchSize; C = g.InChannels; O = g.OutChannels;
            Cg = g.InChannelsPerGroup; Og = g.OutChannelsPerGroup;
            KV = g.KernelVolume; CgK = Cg * KV; Rows = C * KV;
            XV = g.InputVolume; YV = g.OutputVolume;
            int pad = 3 - g.SpatialRank;
            int[] x = Lift(g.InputSize, pad, 1), k = Lift(g.KernelSize, pad, 1), y = Lift(g.OutputSize, pad, 1);
            int[] s = Lift(g.Stride, pad, 1), d = Lift(g.Dilation, pad, 1), p = Lift(g.Padding, pad, 0);
            (X0, X1, X2) = (x[0], x[1], x[2]);
            (K0, K1, K2) = (k[0], k[1], k[2]);
            (Y1, Y2) = (y[1], y[2]);
            Lines = y[0] * y[1];
            _stride = s;
            _offset = [-p[0], -p[1], -p[2]];
            (_dilation0, _dilation1, _dilation2) = (d[0], d[1], d[2]);
            _flip = g.Mode == ConvolutionMode.Convolution;
            long lineFloats = (long)Rows * Y2;
            SlabLines = (int)Math.Clamp(columnBudget / lineFloats, 1, Lines);
        }

        private static int[] Lift(int[] values, int pad, int fill)
        {
            var r = new int[3];
            for (int i = 0; i < 3; i++) r[i] = i < pad ? fill : values[i - pad];
            return r;
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
