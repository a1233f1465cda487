using System.Buffers;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using MLNet.ConvNet.Backends.Cpu.Kernels;
using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Backends.Cpu;

// The fast convolution path: the same im2col slabs as the reference (CpuBackend.Convolution.cs), but each
// slab is one blocked GEMM per group (Kernels/Sgemm.cs) instead of one axpy / dot product per row:
//
//   forward          y[n]_g (Og x L)     = W_g (Og x CgK)    * cols_g (CgK x L)       W_g packed once per call
//   backward data    cols_g (CgK x L)    = W_gᵀ (CgK x Og)   * dy[n]_g (Og x L)       W_gᵀ packed once, then col2im
//   backward filter  dW_g (Og x CgK)    += dy[n]_g (Og x L)  * cols_gᵀ (L x CgK)
//
// Threads: with at least as many images as threads, one image per thread with a serial GEMM; otherwise
// images in order with the GEMM (and im2col) split across threads. The filter gradient is summed over fixed
// chunks of images (their number depends only on N): inside a chunk image after image, then the chunk partials
// in chunk order. The GEMM computes each element with the same operations whatever the split, so every result
// is independent of the thread count.
public sealed partial class CpuBackend
{
    /// <summary>Most image chunks the filter gradient is split into (each holds one partial gradient).</summary>
    private const int FilterChunks = 8;

    /// <summary>
    /// The forward pass; with <paramref name="prepared"/> (an inference layer's filter, <see cref="PreparedFilter"/>) the
    /// filter's finiteness, packing and Winograd transform come from there instead of being redone. The path taken
    /// depends on the shapes alone, and the prepared forms are the ones a call would make, so the bits are the same.
    /// </summary>
    private void FastConvolutionForward(ConvGeometry g, float[] xa, float[] wa, float[]? ba, float[] ya, PreparedFilter? prepared = null)
    {
        if (ShiftedConvPlan.ForForward(g, ConvolutionColumnBudget) is { } sp)
        {
            if (WinogradFits(sp) && AllFinite(xa, g.Input.Length) && (prepared?.Finite ?? AllFinite(wa, g.Filter.Length)))
            {
                try { WinogradConvolution(sp, wa, forward: true, xa, ba, ya, prepared?.Winograd(sp, wa)); }
                finally { sp.Release(); }
                return;
            }
            float[][] packed = prepared?.ShiftedRows(g, wa) ?? PackFilterRows(g, wa, transposedTaps: false);
            try { ShiftedConvolution(sp, packed, xa, ba, ya); }
            finally { if (prepared is null) ReturnAll(packed, g.Groups); sp.Release(); }
            return;
        }
        var p = new ConvPlan(g, ConvolutionColumnBudget);
        float[][] packedW = prepared?.Im2ColRows(p, wa) ?? PackFilters(p, wa, transposed: false);
        try
        {
            bool perImage = p.N >= MaxThreads;
            Each(p.N, perImage, new FastForwardImage(this, p, perImage, packedW, xa, ba, ya));
        }
        finally { if (prepared is null) ReturnAll(packedW, p.Groups); }
    }

    /// <summary>
    /// No Inf or NaN among the first <paramref name="length"/> values. Winograd's transforms add and subtract
    /// neighbouring inputs (and filter taps), so one Inf would turn outputs the direct sum gives as Inf into NaN, or reach
    /// outputs it does not touch: such inputs take the direct path, whose non-finite results are the reference's.
    /// </summary>
    private static bool AllFinite(float[] values, int length) => float.IsFinite(TensorPrimitives.MaxMagnitude(values.AsSpan(0, length)));

    /// <summary>Image n: slab by slab, im2col then y[n]_g = W_g * cols_g per group, then the bias.</summary>
    private readonly struct FastForwardImage(CpuBackend backend, ConvPlan p, bool perImage, float[][] packedW, float[] xa, float[]? ba, float[] ya)
        : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int n)
        {
            CpuBackend? inner = perImage ? null : backend;
            float[] cols = ArrayPool<float>.Shared.Rent(p.Rows * p.SlabLines * p.Y2);
            try
            {
                for (int l0 = 0; l0 < p.Lines; l0 += p.SlabLines)
                {
                    int l1 = Math.Min(p.Lines, l0 + p.SlabLines), len = (l1 - l0) * p.Y2;
                    backend.Each(p.C, !perImage, new Im2ColBody(p, xa, n, l0, l1, cols, fast: true));
                    for (int gi = 0; gi < p.Groups; gi++)
                        Sgemm.MultiplyPacked(p.Og, len, p.CgK, 1f, packedW[gi],
                            MatrixView.RowMajor(cols, gi * p.CgK * len, len), 0f,
                            ya, (n * p.O + gi * p.Og) * p.YV + l0 * p.Y2, p.YV, inner, backend.GemmIsa);
                }
                if (ba is not null)
                    for (int o = 0; o < p.O; o++)
                    {
                        var row = ya.AsSpan((n * p.O + o) * p.YV, p.YV);
                        TensorPrimitives.Add(row, ba[o], row);
                    }
            }
            finally { ArrayPool<float>.Shared.Return(cols); }
        }
    }

    private void FastConvolutionBackwardData(ConvGeometry g, float[] wa, float[] dya, float[] dxa)
    {
        if (ShiftedConvPlan.ForBackwardData(g, ConvolutionColumnBudget) is { } sp)
        {
            if (WinogradFits(sp) && AllFinite(dya, g.Output.Length) && AllFinite(wa, g.Filter.Length))
            {
                try { WinogradConvolution(sp, wa, forward: false, dya, null, dxa); }
                finally { sp.Release(); }
                return;
            }
            float[][] packed = PackFilterRows(g, wa, transposedTaps: true);
            try { ShiftedConvolution(sp, packed, dya, null, dxa); }
            finally { ReturnAll(packed, g.Groups); sp.Release(); }
            return;
        }
        var p = new ConvPlan(g, ConvolutionColumnBudget);
        float[][] packedWT = PackFilters(p, wa, transposed: true);
        try
        {
            bool perImage = p.N >= MaxThreads;
            Each(p.N, perImage, new FastBackwardDataImage(this, p, perImage, packedWT, dya, dxa));
        }
        finally { ReturnAll(packedWT, p.Groups); }
    }

    /// <summary>Image n: dx[n] cleared, then slab by slab cols_g = W_gᵀ * dy[n]_g per group and col2im.</summary>
    private readonly struct FastBackwardDataImage(CpuBackend backend, ConvPlan p, bool perImage, float[][] packedWT, float[] dya, float[] dxa)
        : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int n)
        {
            CpuBackend? inner = perImage ? null : backend;
            float[] cols = ArrayPool<float>.Shared.Rent(p.Rows * p.SlabLines * p.Y2);
            try
            {
                dxa.AsSpan(n * p.C * p.XV, p.C * p.XV).Clear();
                for (int l0 = 0; l0 < p.Lines; l0 += p.SlabLines)
                {
                    int l1 = Math.Min(p.Lines, l0 + p.SlabLines), len = (l1 - l0) * p.Y2;
                    for (int gi = 0; gi < p.Groups; gi++)
                        Sgemm.MultiplyPacked(p.CgK, len, p.Og, 1f, packedWT[gi],
                            MatrixView.RowMajor(dya, (n * p.O + gi * p.Og) * p.YV + l0 * p.Y2, p.YV), 0f,
                            cols, gi * p.CgK * len, len, inner, backend.GemmIsa);
                    backend.Each(p.C, !perImage, new Col2ImBody(p, cols, n, l0, l1, dxa));
                }
            }
            finally { ArrayPool<float>.Shared.Return(cols); }
        }
    }

    /// <summary>Adds the cols rows of channel c onto dx[n, c] for output lines [l0, l1).</summary>
    private readonly struct Col2ImBody(ConvPlan p, float[] cols, int n, int l0, int l1, float[] dx) : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int c) => p.Col2ImChannel(cols, c, l0, l1, dx, n);
    }

    private void FastConvolutionBackwardFilter(ConvGeometry g, float[] xa, float[] dya, float[] dwa)
    {
        // The shifted path multiplies the dropped grid columns (dy = 0 there) by real inputs: exact for finite x,
        // but 0 * Inf would be NaN, so inputs holding Inf or NaN take the im2col path, which matches the reference.
        if (ShiftedConvPlan.ForForward(g, ConvolutionColumnBudget) is { } sp)
        {
            try
            {
                if (float.IsFinite(TensorPrimitives.MaxMagnitude(xa.AsSpan(0, g.Input.Length))))
                {
                    // With few input channels per group a tap's GEMM would be a sliver of one or two columns: then one GEMM
                    // over all (channel, tap) columns, or dot products when even those are few. The choice depends on
                    // the shape only, never on the instruction set, so every machine adds in the same order.
                    if (sp.InG >= 8) ShiftedFilterGradientByTap(sp, xa, dya, dwa);
                    else if (sp.InG * sp.Taps >= MinGemmFilterColumns && sp.OutG >= MinGemmFilterRows) ShiftedFilterGradient(sp, xa, dya, dwa, byGemm: true);
                    else ShiftedFilterGradient(sp, xa, dya, dwa, byGemm: false);
                    return;
                }
            }
            finally { sp.Release(); }
        }
        var p = new ConvPlan(g, ConvolutionColumnBudget);
        int size = p.O * p.CgK;
        int chunks = Math.Min(p.N, FilterChunks);
        bool perChunk = chunks >= MaxThreads;
        float[][] partials = RentAll(chunks, size);
        try
        {
            Each(chunks, perChunk, new FastFilterChunk(this, p, perChunk, chunks, partials, xa, dya));
            SumChunks(partials, chunks, size, dwa);
        }
        finally { ReturnAll(partials, chunks); }
    }

    /// <summary>Chunk j of the images: its filter gradient into partials[j], image after image in order.</summary>
    private readonly struct FastFilterChunk(CpuBackend backend, ConvPlan p, bool perChunk, int chunks, float[][] partials, float[] xa, float[] dya)
        : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int j)
        {
            CpuBackend? inner = perChunk ? null : backend;
            float[] part = partials[j];
            float[] cols = ArrayPool<float>.Shared.Rent(p.Rows * p.SlabLines * p.Y2);
            try
            {
                bool first = true;
                for (int n = p.N * j / chunks; n < p.N * (j + 1) / chunks; n++)
                    for (int l0 = 0; l0 < p.Lines; l0 += p.SlabLines)
                    {
                        int l1 = Math.Min(p.Lines, l0 + p.SlabLines), len = (l1 - l0) * p.Y2;
                        backend.Each(p.C, !perChunk, new Im2ColBody(p, xa, n, l0, l1, cols, fast: true));
                        // part_g (+)= dy[n]_g (Og x len) * cols_gᵀ (len x CgK); cols_gᵀ is cols_g read with swapped strides.
                        for (int gi = 0; gi < p.Groups; gi++)
                            Sgemm.Multiply(p.Og, p.CgK, len, 1f,
                                MatrixView.RowMajor(dya, (n * p.O + gi * p.Og) * p.YV + l0 * p.Y2, p.YV),
                                MatrixView.Transposed(cols, gi * p.CgK * len, len), first ? 0f : 1f,
                                part, gi * p.Og * p.CgK, p.CgK, inner, backend.GemmIsa);
                        first = false;
                    }
            }
            finally { ArrayPool<float>.Shared.Return(cols); }
        }
    }

    /// <summary>dw[i] = sum over chunks j, in order and in double, of partials[j][i].</summary>
    private void SumChunks(float[][] partials, int chunks, int size, float[] dwa) =>
        For((size + ElementwiseBlock - 1) / ElementwiseBlock, new SumChunksBody(partials, chunks, size, dwa));

    private readonly struct SumChunksBody(float[][] partials, int chunks, int size, float[] dwa) : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int block)
        {
            int start = block * ElementwiseBlock, end = Math.Min(size, start + ElementwiseBlock);
            for (int i = start; i < end; i++)
            {
                double s = 0;
                for (int j = 0; j < chunks; j++) s += partials[j][i];
                dwa[i] = (float)s;
            }
        }
    }

    /// <summary>
    /// A filter gradient with fewer input channels per group than 8 goes through one GEMM per image when it has at
    /// least this many (channel, tap) columns and <see cref="MinGemmFilterRows"/> output channels per group, else through
    /// dot products (<see cref="DotGemm"/>). Measured on LeNet-5 (AVX-512, EndToEnd --profile): its second convolution
    /// (16 x 150) took 0.30 ms by dot products and 0.20-0.24 by GEMM; its first (6 x 25, 892 grid positions) 0.16 ms by
    /// dot products and 0.29 by GEMM, whose packing outweighs so small a product.
    /// </summary>
    internal const int MinGemmFilterColumns = 16;

    /// <summary>See <see cref="MinGemmFilterColumns"/>.</summary>
    internal const int MinGemmFilterRows = 8;

    /// <summary>
    /// dW_g[o, (c, t)] = sum over images and grid positions q of dyGrid[n, o, q] * padded(x)[n, c, q + shift(t)], dy
    /// placed on the padded grid with zeros in the dropped columns. Per image either one GEMM (<paramref name="byGemm"/>:
    /// A = the dy grid, B = the (c, t) columns, each a contiguous run of the padded image, packed by 8x8 transposes)
    /// or dot products of contiguous rows (<see cref="DotGemm"/>, for very few columns, where a GEMM's slivers would be
    /// mostly padding). Images are summed in fixed chunks as in the im2col path.
    /// </summary>
    private void ShiftedFilterGradient(ShiftedConvPlan sp, float[] xa, float[] dya, float[] dwa, bool byGemm)
    {
        int size = sp.OutChannels * sp.InG * sp.Taps;
        int chunks = Math.Min(sp.N, FilterChunks);
        bool perChunk = chunks >= MaxThreads;
        float[][] partials = RentAll(chunks, size);
        try
        {
            Each(chunks, perChunk, new ShiftedFilterChunk(this, sp, perChunk, chunks, partials, xa, dya, byGemm));
            SumChunks(partials, chunks, size, dwa);
        }
        finally { ReturnAll(partials, chunks); }
    }

    /// <summary>Chunk j of the images for <see cref="ShiftedFilterGradient"/>: its partial gradient into partials[j].</summary>
    private readonly struct ShiftedFilterChunk(CpuBackend backend, ShiftedConvPlan sp, bool perChunk, int chunks, float[][] partials,
        float[] xa, float[] dya, bool byGemm) : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int j)
        {
            CpuBackend? inner = perChunk ? null : backend;
            var isa = backend.GemmIsa;
            int og = sp.OutG, cgk = sp.InG * sp.Taps, lq = sp.GridLength, nr = Sgemm.Tile(isa).Nr;
            int slivers = (cgk + nr - 1) / nr;
            float[] part = partials[j];
            float[] padded = ArrayPool<float>.Shared.Rent(sp.InChannels * sp.PlaneVolume);
            float[] grid = ArrayPool<float>.Shared.Rent(sp.OutChannels * lq);
            float[] packedA = byGemm ? ArrayPool<float>.Shared.Rent(Sgemm.PackedASize(og, lq, isa)) : [];
            float[] packedB = byGemm ? ArrayPool<float>.Shared.Rent(slivers * lq * nr) : [];
            try
            {
                // Lanes past the last column stay zero (the packing writes real columns only).
                if (byGemm && cgk % nr != 0) packedB.AsSpan(0, slivers * lq * nr).Clear();
                bool first = true;
                for (int n = sp.N * j / chunks; n < sp.N * (j + 1) / chunks; n++)
                {
                    sp.PadImage(xa, n, padded);
                    sp.PlaceOnGrid(dya, n, grid);
                    for (int gi = 0; gi < sp.Groups; gi++)
                    {
                        if (byGemm)
                        {
                            Sgemm.PackA(og, lq, MatrixView.RowMajor(grid, gi * og * lq, lq), packedA, isa, null);
                            Sgemm.PackColumns(padded, gi * sp.InG * sp.PlaneVolume, sp.RowOffsets.AsSpan(0, cgk), lq, nr, packedB, 0);
                            Sgemm.MultiplyPrepacked(og, cgk, lq, packedA, packedB, 0, lq * nr, first ? 0f : 1f, part, gi * og * cgk, cgk, isa);
                        }
                        else
                            DotGemm.Multiply(og, cgk, lq, grid, gi * og * lq, lq, padded, gi * sp.InG * sp.PlaneVolume, sp.RowOffsets, 0,
                                first ? 0f : 1f, part, gi * og * cgk, cgk, inner, isa != GemmIsa.Scalar);
                    }
                    first = false;
                }
            }
            finally
            {
                ArrayPool<float>.Shared.Return(padded);
                ArrayPool<float>.Shared.Return(grid);
                if (byGemm) { ArrayPool<float>.Shared.Return(packedA); ArrayPool<float>.Shared.Return(packedB); }
            }
        }
    }

    /// <summary>
    /// The filter gradient as one GEMM per tap: dW_t[o, c] = sum over q of dyGrid[o, q] * P[q + shift(t), c], where
    /// P is the padded image with channels last (position-major). P is laid out once per image as the GEMM's packed
    /// B (NR-channel slivers, [position][NR]), so every tap reads its rows in place (a tap's B is the slivers from
    /// position shift(t) on), and dyGrid is packed once per image as A for all taps. Per chunk the partial is kept
    /// tap-major ([t][o][c]) and put back into the filter layout [o][c][t] when the chunks are added (in chunk order,
    /// in double).
    /// </summary>
    private void ShiftedFilterGradientByTap(ShiftedConvPlan sp, float[] xa, float[] dya, float[] dwa)
    {
        int size = sp.OutChannels * sp.InG * sp.Taps;
        int chunks = Math.Min(sp.N, FilterChunks);
        bool perChunk = chunks >= MaxThreads;
        float[][] partials = RentAll(chunks, size);
        try
        {
            Each(chunks, perChunk, new ShiftedFilterByTapChunk(this, sp, perChunk, chunks, partials, xa, dya));
            For(sp.OutChannels, new TapMajorSumBody(sp, chunks, partials, dwa));
        }
        finally { ReturnAll(partials, chunks); }
    }

    /// <summary>Chunk j of the images for <see cref="ShiftedFilterGradientByTap"/>: its tap-major partial into partials[j].</summary>
    private readonly struct ShiftedFilterByTapChunk(CpuBackend backend, ShiftedConvPlan sp, bool perChunk, int chunks, float[][] partials,
        float[] xa, float[] dya) : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int j)
        {
            var isa = backend.GemmIsa;
            int og = sp.OutG, o = sp.OutChannels, lq = sp.GridLength, nr = Sgemm.Tile(isa).Nr;
            int slivers = (sp.InG + nr - 1) / nr, sliverStride = sp.PlaneVolume * nr;
            float[] part = partials[j];
            float[] padded = ArrayPool<float>.Shared.Rent(sp.InChannels * sp.PlaneVolume);
            float[] packedB = ArrayPool<float>.Shared.Rent(sp.Groups * slivers * sliverStride);
            float[] grid = ArrayPool<float>.Shared.Rent(o * lq);
            float[] packedA = ArrayPool<float>.Shared.Rent(Sgemm.PackedASize(og, lq, isa));
            // A group's channel planes as B's columns, the positions as its k: P[pos, c] = padded[c, pos].
            int[] planes = ArrayPool<int>.Shared.Rent(sp.InG);
            try
            {
                for (int c = 0; c < sp.InG; c++) planes[c] = c * sp.PlaneVolume;
                // Lanes past the group's channels stay zero (the packing writes real channels only).
                if (sp.InG % nr != 0) packedB.AsSpan(0, sp.Groups * slivers * sliverStride).Clear();
                bool first = true;
                for (int n = sp.N * j / chunks; n < sp.N * (j + 1) / chunks; n++)
                {
                    sp.PadImage(xa, n, padded);
                    for (int gi = 0; gi < sp.Groups; gi++)
                        Sgemm.PackColumns(padded, gi * sp.InG * sp.PlaneVolume, planes.AsSpan(0, sp.InG), sp.PlaneVolume, nr, packedB, gi * slivers * sliverStride);
                    sp.PlaceOnGrid(dya, n, grid);
                    for (int gi = 0; gi < sp.Groups; gi++)
                    {
                        Sgemm.PackA(og, lq, MatrixView.RowMajor(grid, gi * og * lq, lq), packedA, isa, null);
                        var taps = new FilterTapBody(sp, isa, gi, packedA, packedB, gi * slivers * sliverStride, sliverStride, first, part);
                        if (perChunk) for (int t = 0; t < sp.Taps; t++) taps.Run(t);
                        else backend.For(sp.Taps, taps); // one chunk for all threads: the taps' blocks of C are disjoint
                    }
                    first = false;
                }
            }
            finally
            {
                ArrayPool<float>.Shared.Return(padded);
                ArrayPool<float>.Shared.Return(packedB);
                ArrayPool<float>.Shared.Return(grid);
                ArrayPool<float>.Shared.Return(packedA);
                ArrayPool<int>.Shared.Return(planes);
            }
        }
    }

    /// <summary>Tap t of one group: part[t, group's o, c] (+)= dyGrid_g (packed A) * P rows from shift(t) (packed B).</summary>
    private readonly struct FilterTapBody(ShiftedConvPlan sp, GemmIsa isa, int gi, float[] packedA, float[] packedB, int groupOffset,
        int sliverStride, bool first, float[] part) : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int t)
        {
            int nr = Sgemm.Tile(isa).Nr, og = sp.OutG, cg = sp.InG;
            // RowOffsets[t] is channel 0's offset for tap t: the tap's shift on the padded grid.
            Sgemm.MultiplyPrepacked(og, cg, sp.GridLength, packedA, packedB, groupOffset + sp.RowOffsets[t] * nr, sliverStride,
                first ? 0f : 1f, part, (t * sp.OutChannels + gi * og) * cg, cg, isa);
        }
    }

    /// <summary>dw[oc, ch, t] = sum over chunks of part[t, oc, ch], chunks in order, in double; output channel oc per index.</summary>
    private readonly struct TapMajorSumBody(ShiftedConvPlan sp, int chunks, float[][] partials, float[] dwa) : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int oc)
        {
            int cg = sp.InG, taps = sp.Taps, o = sp.OutChannels;
            for (int ch = 0; ch < cg; ch++)
                for (int t = 0; t < taps; t++)
                {
                    double sum = 0;
                    int index = (t * o + oc) * cg + ch;
                    for (int j = 0; j < chunks; j++) sum += partials[j][index];
                    dwa[(oc * cg + ch) * taps + t] = (float)sum;
                }
        }
    }

    /// <summary>
    /// Packs each group's filter [Og, CgK] (or its transpose [CgK, Og]) as the A operand of the GEMM.
    /// The arrays are rented; give them back with <see cref="ReturnAll"/>.
    /// </summary>
    private float[][] PackFilters(ConvPlan p, float[] wa, bool transposed)
    {
        int m = transposed ? p.CgK : p.Og, k = transposed ? p.Og : p.CgK;
        return PackFilters(p, wa, transposed, RentAll(p.Groups, Sgemm.PackedASize(m, k, GemmIsa)));
    }

    /// <summary><see cref="PackFilters(ConvPlan, float[], bool)"/> into <paramref name="packed"/> (one array per group, each at least <see cref="Sgemm.PackedASize"/>).</summary>
    private float[][] PackFilters(ConvPlan p, float[] wa, bool transposed, float[][] packed)
    {
        int m = transposed ? p.CgK : p.Og, k = transposed ? p.Og : p.CgK;
        for (int gi = 0; gi < p.Groups; gi++)
        {
            int start = gi * p.Og * p.CgK;
            var view = transposed ? MatrixView.Transposed(wa, start, p.CgK) : MatrixView.RowMajor(wa, start, p.CgK);
            Sgemm.PackA(m, k, view, packed[gi], GemmIsa, this);
        }
        return packed;
    }

    /// <summary><paramref name="count"/> rented arrays of at least <paramref name="size"/> floats, in a rented array of arrays.</summary>
    private static float[][] RentAll(int count, int size)
    {
        float[][] arrays = ArrayPool<float[]>.Shared.Rent(count);
        for (int i = 0; i < count; i++) arrays[i] = ArrayPool<float>.Shared.Rent(size);
        return arrays;
    }

    /// <summary>Gives back the first <paramref name="count"/> arrays of a <see cref="RentAll"/>, then the array of arrays (cleared).</summary>
    private static void ReturnAll(float[][] arrays, int count)
    {
        for (int i = 0; i < count; i++) ArrayPool<float>.Shared.Return(arrays[i]);
        ArrayPool<float[]>.Shared.Return(arrays, clearArray: true);
    }

    // ---- stride-1 convolutions without im2col ----
    //
    // With stride 1, the im2col row of (channel c, tap t) is the zero-padded input plane of c shifted by the
    // tap's offset and read on the padded grid: output position y sits at grid index q(y) = y . pitch, and
    // tap t reads q(y) + shift(t). So B's rows are slices of one padded copy of the image (MatrixView.Rows),
    // and the GEMM writes a [Og, Lq] grid whose columns past each output line are discarded:
    //
    //     padded plane (Hp x Wp)          grid row of C (Lq = (Y1-1) Wp + Y2)
    //     . . . . . .                     y y y y - - y y y y - - y y y y
    //     . x x x x .                     (- : positions in the padding columns, computed and dropped)
    //     . x x x x .
    //
    // The input gradient is the same computation run on dy: a stride-1 correlation of dy padded by
    // (K-1)d - P with the filter transposed over channels and its taps reversed.

    /// <summary>
    /// The geometry of one stride-1 correlation on the padded grid (three spatial dims, leading ones of size 1).
    /// A struct, so building one allocates nothing; its <see cref="RowOffsets"/> are rented: call <see cref="Release"/>.
    /// </summary>
    private struct ShiftedConvPlan
    {
        public int N, InChannels, OutChannels, Groups, InG, OutG, Taps, Depth;
        public Int3 In, Pad, Out, Kernel, Dilation;
        /// <summary>Taps read in reverse order (a convolution-mode forward pass, a correlation's input gradient).</summary>
        public bool Reverse;
        public int Hp, Wp, PlaneVolume, GridLength;
        /// <summary>Per B row (channel in group, tap): offset of its slice in the padded image (rented, may be longer).</summary>
        public int[] RowOffsets;

        /// <summary>The forward convolution as a shifted correlation, or null when a stride is not 1 or it would not pay.</summary>
        public static ShiftedConvPlan? ForForward(ConvGeometry g, int budget) =>
            Create(g, g.InChannels, g.OutChannels, g.Input, g.Output, Lift(g.Padding, 3 - g.SpatialRank, 0),
                reverse: g.Mode == ConvolutionMode.Convolution, budget);

        /// <summary>The input gradient as a shifted correlation over dy padded by (K-1)d - P, or null.</summary>
        public static ShiftedConvPlan? ForBackwardData(ConvGeometry g, int budget)
        {
            int rank = g.SpatialRank, lead = 3 - rank;
            var pad = new Int3();
            for (int i = 0; i < rank; i++)
            {
                pad[lead + i] = (g.Filter[i + 2] - 1) * g.Dilation[i] - g.Padding[i];
                if (pad[lead + i] < 0) return null;
            }
            return Create(g, g.OutChannels, g.InChannels, g.Output, g.Input, pad, reverse: g.Mode != ConvolutionMode.Convolution, budget);
        }

        private static ShiftedConvPlan? Create(ConvGeometry g, int inChannels, int outChannels, Shape inShape, Shape outShape,
            Int3 padding, bool reverse, int budget)
        {
            foreach (int s in g.Stride) if (s != 1) return null;
            int lead = 3 - g.SpatialRank;
            var p = new ShiftedConvPlan { N = g.BatchSize, InChannels = inChannels, OutChannels = outChannels, Groups = g.Groups, RowOffsets = [] };
            p.InG = inChannels / g.Groups; p.OutG = outChannels / g.Groups;
            Int3 k = LiftSpatial(g.Filter, lead), d = Lift(g.Dilation, lead, 1);
            p.In = LiftSpatial(inShape, lead);
            p.Out = LiftSpatial(outShape, lead);
            p.Pad = padding;
            p.Kernel = k; p.Dilation = d; p.Reverse = reverse;
            int dp = p.In[0] + 2 * p.Pad[0];
            p.Hp = p.In[1] + 2 * p.Pad[1]; p.Wp = p.In[2] + 2 * p.Pad[2];
            long plane = (long)dp * p.Hp * p.Wp;
            p.Depth = dp;
            p.GridLength = (p.Out[0] - 1) * p.Hp * p.Wp + (p.Out[1] - 1) * p.Wp + p.Out[2];
            long outVolume = (long)p.Out[0] * p.Out[1] * p.Out[2];
            // The padded copy and the grid must stay within the column budget, and the dropped grid columns
            // must not dominate (tiny images with wide padding go through im2col).
            if (plane * inChannels > budget || (long)p.OutG * p.GridLength > budget || p.GridLength > 2 * outVolume) return null;
            p.PlaneVolume = (int)plane;
            p.Taps = k[0] * k[1] * k[2];
            p.RowOffsets = ArrayPool<int>.Shared.Rent(p.InG * p.Taps);
            for (int c = 0; c < p.InG; c++)
                for (int t = 0; t < p.Taps; t++)
                {
                    int k2 = t % k[2], k1 = t / k[2] % k[1], k0 = t / (k[1] * k[2]);
                    if (reverse) { k0 = k[0] - 1 - k0; k1 = k[1] - 1 - k1; k2 = k[2] - 1 - k2; }
                    p.RowOffsets[c * p.Taps + t] = c * p.PlaneVolume + (k0 * d[0] * p.Hp + k1 * d[1]) * p.Wp + k2 * d[2];
                }
            return p;
        }

        /// <summary>Gives the rented <see cref="RowOffsets"/> back.</summary>
        public readonly void Release() => ArrayPool<int>.Shared.Return(RowOffsets);

        /// <summary>Writes the zero-padded copy of planes [n, 0..InChannels) of <paramref name="x"/> into <paramref name="padded"/>.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void PadImage(float[] x, int n, float[] padded)
        {
            int inVolume = In[0] * In[1] * In[2];
            for (int c = 0; c < InChannels; c++)
            {
                var dst = padded.AsSpan(c * PlaneVolume, PlaneVolume);
                dst.Clear();
                int src = (n * InChannels + c) * inVolume;
                for (int i0 = 0; i0 < In[0]; i0++)
                    for (int i1 = 0; i1 < In[1]; i1++, src += In[2])
                        x.AsSpan(src, In[2]).CopyTo(dst.Slice(((i0 + Pad[0]) * Hp + i1 + Pad[1]) * Wp + Pad[2]));
            }
        }

        /// <summary>Writes [n, 0..OutChannels) of the output-shaped <paramref name="y"/> onto the grid [OutChannels, GridLength], zeros in the dropped columns.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void PlaceOnGrid(float[] y, int n, float[] grid)
        {
            int outVolume = Out[0] * Out[1] * Out[2];
            var gridSpan = grid.AsSpan(0, OutChannels * GridLength);
            gridSpan.Clear();
            for (int o = 0; o < OutChannels; o++)
            {
                int src = (n * OutChannels + o) * outVolume;
                for (int y0 = 0; y0 < Out[0]; y0++)
                    for (int y1 = 0; y1 < Out[1]; y1++, src += Out[2])
                        y.AsSpan(src, Out[2]).CopyTo(gridSpan.Slice(o * GridLength + (y0 * Hp + y1) * Wp));
            }
        }
    }

    /// <summary>
    /// Each group's filter as the A operand [OutG, InG * Taps] of a shifted correlation: the filter itself for the
    /// forward pass; for the input gradient (<paramref name="transposedTaps"/>) A[c, (o, t)] = W[o, c, t] over the group.
    /// The arrays are rented; give them back with <see cref="ReturnAll"/>.
    /// </summary>
    private float[][] PackFilterRows(ConvGeometry g, float[] wa, bool transposedTaps)
    {
        var (m, k) = FilterRowsSize(g, transposedTaps);
        return PackFilterRows(g, wa, transposedTaps, RentAll(g.Groups, Sgemm.PackedASize(m, k, GemmIsa)));
    }

    /// <summary>The A operand's rows and columns per group for <see cref="PackFilterRows(ConvGeometry, float[], bool)"/>.</summary>
    private static (int M, int K) FilterRowsSize(ConvGeometry g, bool transposedTaps) => transposedTaps
        ? (g.InChannelsPerGroup, g.OutChannelsPerGroup * g.KernelVolume)
        : (g.OutChannelsPerGroup, g.InChannelsPerGroup * g.KernelVolume);

    /// <summary><see cref="PackFilterRows(ConvGeometry, float[], bool)"/> into <paramref name="packed"/> (one array per group).</summary>
    private float[][] PackFilterRows(ConvGeometry g, float[] wa, bool transposedTaps, float[][] packed)
    {
        int groups = g.Groups, og = g.OutChannelsPerGroup, cg = g.InChannelsPerGroup, kv = g.KernelVolume, cgk = cg * kv;
        var (m, k) = FilterRowsSize(g, transposedTaps);
        float[]? swapped = transposedTaps ? ArrayPool<float>.Shared.Rent(og * cgk) : null;
        try
        {
            for (int gi = 0; gi < groups; gi++)
            {
                int start = gi * og * cgk;
                MatrixView view;
                if (swapped is not null)
                {
                    for (int c = 0; c < cg; c++)
                        for (int o = 0; o < og; o++)
                            wa.AsSpan(start + o * cgk + c * kv, kv).CopyTo(swapped.AsSpan((c * og + o) * kv, kv));
                    view = MatrixView.RowMajor(swapped, 0, k);
                }
                else view = MatrixView.RowMajor(wa, start, k);
                Sgemm.PackA(m, k, view, packed[gi], GemmIsa, this);
            }
        }
        finally { if (swapped is not null) ArrayPool<float>.Shared.Return(swapped); }
        return packed;
    }

    // Output lines are short (14 floats for a 14x14 image): a library call per line cost more than the work, so
    // these two do it inline, eight lanes at a time, the last step overlapping the one before (source and
    // destination are different arrays, so an element written twice gets the same value).

    /// <summary>to = from (same length, at least one element).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void CopyLine(ReadOnlySpan<float> from, Span<float> to)
    {
        int n = to.Length;
        if (!Vector256.IsHardwareAccelerated || n < 8 || from.Length != n) { from.CopyTo(to); return; }
        ref float f = ref MemoryMarshal.GetReference(from);
        ref float t = ref MemoryMarshal.GetReference(to);
        for (nuint i = 0, last = (nuint)(n - 8); ; i += 8)
        {
            if (i > last) i = last;
            Vector256.LoadUnsafe(ref f, i).StoreUnsafe(ref t, i);
            if (i == last) return;
        }
    }

    /// <summary>to[i] = from[i] + bias, the same float addition per element as TensorPrimitives.Add.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AddToLine(ReadOnlySpan<float> from, float bias, Span<float> to)
    {
        int n = to.Length;
        if (!Vector256.IsHardwareAccelerated || n < 8 || from.Length != n) { TensorPrimitives.Add(from, bias, to); return; }
        var b = Vector256.Create(bias);
        ref float f = ref MemoryMarshal.GetReference(from);
        ref float t = ref MemoryMarshal.GetReference(to);
        for (nuint i = 0, last = (nuint)(n - 8); ; i += 8)
        {
            if (i > last) i = last;
            (Vector256.LoadUnsafe(ref f, i) + b).StoreUnsafe(ref t, i);
            if (i == last) return;
        }
    }

    /// <summary>output[n, o, y] = bias[o] + sum over (c, t) of A[o, (c, t)] * padded(input)[n, c, y + shift(t)].</summary>
    private void ShiftedConvolution(ShiftedConvPlan p, float[][] packedA, float[] input, float[]? bias, float[] output)
    {
        bool perImage = p.N >= MaxThreads;
        Each(p.N, perImage, new ShiftedImage(this, p, perImage, packedA, input, bias, output));
    }

    /// <summary>Image n of <see cref="ShiftedConvolution"/>: pad it, one GEMM per group onto the grid, keep the real output columns.</summary>
    private readonly struct ShiftedImage(CpuBackend backend, ShiftedConvPlan p, bool perImage, float[][] packedA, float[] input, float[]? bias,
        float[] output) : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int n)
        {
            CpuBackend? inner = perImage ? null : backend;
            int outVolume = p.Out[0] * p.Out[1] * p.Out[2], k = p.InG * p.Taps;
            float[] padded = ArrayPool<float>.Shared.Rent(p.InChannels * p.PlaneVolume);
            float[] grid = ArrayPool<float>.Shared.Rent(p.OutG * p.GridLength);
            try
            {
                p.PadImage(input, n, padded);
                for (int gi = 0; gi < p.Groups; gi++)
                {
                    Sgemm.MultiplyPacked(p.OutG, p.GridLength, k, 1f, packedA[gi],
                        MatrixView.Rows(padded, gi * p.InG * p.PlaneVolume, p.RowOffsets), 0f, grid, 0, p.GridLength, inner, backend.GemmIsa);
                    for (int o = 0; o < p.OutG; o++)
                    {
                        int channel = gi * p.OutG + o;
                        var dst = output.AsSpan((n * p.OutChannels + channel) * outVolume, outVolume);
                        var src = grid.AsSpan(o * p.GridLength, p.GridLength);
                        int line = 0;
                        for (int y0 = 0; y0 < p.Out[0]; y0++)
                            for (int y1 = 0; y1 < p.Out[1]; y1++, line += p.Out[2])
                            {
                                var from = src.Slice((y0 * p.Hp + y1) * p.Wp, p.Out[2]);
                                var to = dst.Slice(line, p.Out[2]);
                                if (bias is null) CopyLine(from, to);
                                else AddToLine(from, bias[channel], to);
                            }
                    }
                }
            }
            finally
            {
                ArrayPool<float>.Shared.Return(padded);
                ArrayPool<float>.Shared.Return(grid);
            }
        }
    }
}
