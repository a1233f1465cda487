using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MLNet.ConvNet.Backends.Cpu.Kernels;

/// <summary>
/// A strided view of a matrix: element (i, j) is <c>Data[Offset + i * RowStride + j * ColStride]</c>, or, when
/// <see cref="RowOffsets"/> is given, <c>Data[Offset + RowOffsets[i] + j]</c> (rows anywhere, each contiguous).
/// </summary>
/// <remarks>
/// A transposed operand is the same memory with the strides swapped, so packing absorbs every transpose.
/// Row offsets let a stride-1 convolution use shifted slices of its padded input as the rows of B, with no im2col.
/// </remarks>
internal readonly record struct MatrixView(float[] Data, int Offset, int RowStride, int ColStride, int[]? RowOffsets = null)
{
    /// <summary>Rows at <c>Offset + rowOffsets[i]</c>, each contiguous (a B operand of <see cref="Sgemm.MultiplyPacked"/> only).</summary>
    public static MatrixView Rows(float[] data, int offset, int[] rowOffsets) => new(data, offset, 0, 1, rowOffsets);

    /// <summary>A row-major [rows, cols] matrix starting at <paramref name="offset"/> with leading dimension <paramref name="ld"/>.</summary>
    public static MatrixView RowMajor(float[] data, int offset, int ld) => new(data, offset, ld, 1);

    /// <summary>The transpose of a row-major matrix with leading dimension <paramref name="ld"/>.</summary>
    public static MatrixView Transposed(float[] data, int offset, int ld) => new(data, offset, 1, ld);
}

/// <summary>Which micro-kernel the fast GEMM runs.</summary>
internal enum GemmIsa
{
    /// <summary>Portable scalar kernel (4 x 4 tile), for machines without 256-bit FMA.</summary>
    Scalar,
    /// <summary>AVX2/FMA-class kernel: 6 x 16 tile of Vector256.</summary>
    Vector256,
    /// <summary>AVX-512-class kernel: 8 x 32 tile of Vector512.</summary>
    Vector512,
}

/// <summary>
/// Fast single-precision GEMM: C[M,N] = alpha * A[M,K] * B[K,N] + beta * C, on strided views.
/// </summary>
/// <remarks>
/// Goto/BLIS-style blocking. A is packed once, whole, into MR-row slivers; B is packed one KC x NC block
/// at a time into NR-column slivers; a register-blocked micro-kernel multiplies one A sliver by one B sliver:
/// <code>
///              NC (block of B, packed: KC x NR slivers, stays in L2)
///           +----+----+----+--
///        KC | B0 | B1 | B2 |..        for jc in N step NC          (task's columns)
///           +----+----+----+--          for pc in K step KC        (fixed order: k-blocks 0, 1, 2 ...)
///    KC                                   pack B[pc, jc]
///  +-----+  +----+----+----+--            for ir in M step MR      (A sliver MR x KC, stays in L1)
///  | A0  |  | C  | C  | C  |  MR            for jr in NC step NR
///  +-----+  +----+----+----+--                C[ir, jr] (+)= A_ir * B_jr   (MR x NR accumulators in registers)
///  | A1  |  | C  | C  | C  |  MR
///  +-----+  +----+----+----+--
///             NR   NR   NR
/// </code>
/// Every C element is one register lane summed over k in increasing order, k-block after k-block, with
/// fused multiply-adds: the same operations whatever the tiling, the ISA path or the thread split. So results
/// are bit-identical across thread counts and across the three micro-kernels. Threads take disjoint column
/// ranges of C (row ranges when C is narrow); no reduction is ever split.
/// Edge tiles are zero-padded in the packed panels and written back through a small stack tile.
/// </remarks>
internal static class Sgemm
{
    /// <summary>Depth of one k-block: an A sliver of 8 x 256 floats (8 KiB) stays in L1.</summary>
    internal const int KC = 256;
    /// <summary>Width of one packed B block: 256 x 512 floats (512 KiB) stays in L2.</summary>
    internal const int NC = 512;
    /// <summary>Below this many multiply-adds a product runs on one thread: scheduling would cost more.</summary>
    private const long ParallelThreshold = 1 << 18;

    /// <summary>The environment variable that caps the micro-kernel for a whole process: scalar, avx2 or avx512.</summary>
    internal const string IsaVariable = "CONVNET_CPU_ISA";

    /// <summary>The best kernel this machine runs.</summary>
    internal static readonly GemmIsa Supported =
        Vector512.IsHardwareAccelerated && Avx512F.IsSupported ? GemmIsa.Vector512
        : Vector256.IsHardwareAccelerated && Fma.IsSupported ? GemmIsa.Vector256
        : GemmIsa.Scalar;

    /// <summary>
    /// The kernel chosen at start-up: <see cref="Supported"/>, capped by <c>CONVNET_CPU_ISA</c> when set (so an
    /// AVX-512 machine can run the AVX2 path end to end; pair it with <c>DOTNET_EnableAVX512=0</c> to make .NET's own
    /// vector code AVX2-only too). An unknown value is an error naming the variable; a level above the machine's is capped.
    /// </summary>
    internal static readonly GemmIsa Best = Cap(Supported, Environment.GetEnvironmentVariable(IsaVariable));

    /// <summary><paramref name="supported"/> capped by a <c>CONVNET_CPU_ISA</c> value (null or empty: no cap).</summary>
    internal static GemmIsa Cap(GemmIsa supported, string? value)
    {
        GemmIsa? asked = value?.Trim().ToLowerInvariant() switch
        {
            null or "" => null,
            "scalar" => GemmIsa.Scalar,
            "avx2" => GemmIsa.Vector256,
            "avx512" => GemmIsa.Vector512,
            _ => throw new InvalidOperationException(
                $"{IsaVariable}='{value}' is not one of scalar, avx2, avx512 (or unset for the machine's best, {supported})."),
        };
        return asked is { } a && a < supported ? a : supported;
    }

    /// <summary>Tile rows (MR) and columns (NR) of a micro-kernel.</summary>
    internal static (int Mr, int Nr) Tile(GemmIsa isa) => isa switch
    {
        GemmIsa.Vector512 => (8, 32),
        GemmIsa.Vector256 => (6, 16),
        _ => (4, 4),
    };

    /// <summary>Floats needed by <see cref="PackA"/> for an m x k operand.</summary>
    internal static int PackedASize(int m, int k, GemmIsa isa)
    {
        int mr = Tile(isa).Mr;
        return (m + mr - 1) / mr * mr * k;
    }

    /// <summary>
    /// C = alpha * A * B + beta * C with C row-major at <paramref name="cOffset"/>, leading dimension
    /// <paramref name="ldc"/>. When beta is 0, C is only written (NaN already there does not leak).
    /// Runs across <paramref name="parallel"/>'s threads when given and the product is big enough.
    /// </summary>
    public static void Multiply(int m, int n, int k, float alpha, MatrixView a, MatrixView b, float beta,
        float[] c, int cOffset, int ldc, CpuBackend? parallel, GemmIsa isa)
    {
        if (a.RowOffsets is not null) throw new ArgumentException("Row offsets describe a B operand only.", nameof(a));
        if (m <= 0 || n <= 0) return;
        if (k == 0) { ScaleC(m, n, beta, c, cOffset, ldc); return; }
        float[] packedA = ArrayPool<float>.Shared.Rent(PackedASize(m, k, isa));
        try
        {
            PackA(m, k, a, packedA, isa, parallel);
            MultiplyPacked(m, n, k, alpha, packedA, b, beta, c, cOffset, ldc, parallel, isa);
        }
        finally { ArrayPool<float>.Shared.Return(packedA); }
    }

    /// <summary>C = beta * C (k = 0: the empty sum).</summary>
    private static void ScaleC(int m, int n, float beta, float[] c, int cOffset, int ldc)
    {
        for (int i = 0; i < m; i++)
        {
            var row = c.AsSpan(cOffset + i * ldc, n);
            if (beta == 0f) row.Clear();
            else for (int j = 0; j < n; j++) row[j] *= beta;
        }
    }

    /// <summary>
    /// Packs all of A (m x k) for <see cref="MultiplyPacked"/>: k-block by k-block, each block a run of
    /// MR-row slivers stored k-major ([kc][MR]), rows past m zero. Block pc starts at mPadded * pc.
    /// </summary>
    public static void PackA(int m, int k, MatrixView a, float[] packed, GemmIsa isa, CpuBackend? parallel)
    {
        if (a.RowOffsets is not null) throw new ArgumentException("Row offsets describe a B operand only.", nameof(a));
        int mr = Tile(isa).Mr;
        int slivers = (m + mr - 1) / mr;
        var body = new PackSliverBody(m, k, a, packed, mr);
        if (parallel is not null && (long)m * k >= ParallelThreshold / 4 && slivers > 1)
            parallel.For(slivers, body);
        else
            for (int s = 0; s < slivers; s++) body.Run(s);
    }

    /// <summary>Packs sliver s of A: rows [s MR, s MR + MR), every k-block.</summary>
    private readonly struct PackSliverBody(int m, int k, MatrixView a, float[] packed, int mr) : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int s)
        {
            int mPad = (m + mr - 1) / mr * mr;
            float[] src = a.Data;
            int rs = a.RowStride, cs = a.ColStride, off = a.Offset;
            int i0 = s * mr, rows = Math.Min(mr, m - i0);
            for (int pc = 0; pc < k; pc += KC)
            {
                int kc = Math.Min(KC, k - pc);
                var dst = packed.AsSpan(mPad * pc + s * mr * kc, mr * kc);
                if (cs == 1 && rows == mr && (mr == 8 || mr == 6) && kc >= 8 && Transposes.Vectorized)
                {
                    // Rows contiguous in k (a dy grid, a filter): 8 x 8 transposes instead of one scalar move per float.
                    PackRowsByTransposes(src, off + i0 * rs + pc, rs, mr, kc, packed, mPad * pc + s * mr * kc);
                    continue;
                }
                if (rows < mr) dst.Clear();
                for (int r = 0; r < rows; r++)
                {
                    int baseIndex = off + (i0 + r) * rs + pc * cs;
                    for (int p = 0; p < kc; p++) dst[p * mr + r] = src[baseIndex + p * cs];
                }
            }
        }
    }

    /// <summary>
    /// dst[p * mr + r] = src[start + r * rs + p] for r in [0, mr), p in [0, kc): one full A sliver of rows contiguous in
    /// k, mr 8 or 6, kc at least 8, by 8 x 8 transposes. With mr 6, rows 6 and 7 of each block are row 5 again, and each
    /// 8-float store spills 2 floats into the next k column, which is written after it: so the vector blocks stop
    /// before the last column, and the rest goes float by float.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackRowsByTransposes(float[] src, int start, int rs, int mr, int kc, float[] dst, int dstStart)
    {
        _ = src.AsSpan(start, (mr - 1) * rs + kc); // bounds checked once: every row read lies inside
        _ = dst.AsSpan(dstStart, mr * kc);
        ref float a = ref src[start];
        ref float d = ref dst[dstStart];
        ref float a5 = ref Unsafe.Add(ref a, 5 * rs);
        ref float a6 = ref mr == 8 ? ref Unsafe.Add(ref a, 6 * rs) : ref a5;
        ref float a7 = ref mr == 8 ? ref Unsafe.Add(ref a, 7 * rs) : ref a5;
        int kv = (mr == 8 ? kc : kc - 1) & ~7;
        for (int p0 = 0; p0 < kv; p0 += 8)
            Transposes.Block8x8(ref Unsafe.Add(ref a, p0), ref Unsafe.Add(ref a, rs + p0), ref Unsafe.Add(ref a, 2 * rs + p0),
                ref Unsafe.Add(ref a, 3 * rs + p0), ref Unsafe.Add(ref a, 4 * rs + p0), ref Unsafe.Add(ref a5, p0),
                ref Unsafe.Add(ref a6, p0), ref Unsafe.Add(ref a7, p0), ref Unsafe.Add(ref d, p0 * mr), mr);
        for (int p = kv; p < kc; p++)
            for (int r = 0; r < mr; r++)
                Unsafe.Add(ref d, p * mr + r) = Unsafe.Add(ref a, r * rs + p);
    }

    /// <summary>
    /// packed[packedStart + ((c / nr) * k + q) * nr + c % nr] = src[start + offsets[c] + q] for c in [0, offsets.Length),
    /// q in [0, k): runs of <paramref name="src"/> (a padded image's channel planes or shifted slices) as columns of a
    /// packed B for <see cref="MultiplyPrepacked"/>, NR-column slivers each [k][nr]. Lanes past the last column are not
    /// written. Eight columns at a time go through 8 x 8 transposes when NR is a multiple of 8.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void PackColumns(float[] src, int start, ReadOnlySpan<int> offsets, int k, int nr, float[] packed, int packedStart)
    {
        int cols = offsets.Length;
        _ = packed.AsSpan(packedStart, (cols + nr - 1) / nr * k * nr);
        int c = 0;
        if (Transposes.Vectorized && nr % 8 == 0)
        {
            int k8 = k & ~7;
            for (; c + 8 <= cols; c += 8)
            {
                // Each column's run checked once; the loads below then stay inside src.
                for (int i = 0; i < 8; i++) _ = src.AsSpan(start + offsets[c + i], k);
                ref float s0 = ref src[start + offsets[c]], s1 = ref src[start + offsets[c + 1]], s2 = ref src[start + offsets[c + 2]],
                    s3 = ref src[start + offsets[c + 3]], s4 = ref src[start + offsets[c + 4]], s5 = ref src[start + offsets[c + 5]],
                    s6 = ref src[start + offsets[c + 6]], s7 = ref src[start + offsets[c + 7]];
                int at = packedStart + c / nr * k * nr + c % nr;
                ref float d = ref packed[at];
                for (int q = 0; q < k8; q += 8)
                    Transposes.Block8x8(ref Unsafe.Add(ref s0, q), ref Unsafe.Add(ref s1, q), ref Unsafe.Add(ref s2, q), ref Unsafe.Add(ref s3, q),
                        ref Unsafe.Add(ref s4, q), ref Unsafe.Add(ref s5, q), ref Unsafe.Add(ref s6, q), ref Unsafe.Add(ref s7, q),
                        ref Unsafe.Add(ref d, q * nr), nr);
                for (int i = 0; i < 8; i++)
                    for (int q = k8; q < k; q++)
                        packed[at + q * nr + i] = src[start + offsets[c + i] + q];
            }
        }
        for (; c < cols; c++)
        {
            int at = packedStart + c / nr * k * nr + c % nr, from = start + offsets[c];
            for (int q = 0; q < k; q++) packed[at + q * nr] = src[from + q];
        }
    }

    /// <summary>
    /// C = A * B + beta * C (beta 0 or 1) on one thread, with A packed by <see cref="PackA"/> and B given already
    /// packed: NR-column slivers, each k-major ([k][NR]) over all of k, sliver s starting at
    /// <c>bOffset + s * sliverStride</c>, lanes past n zero. For operands packed once and read many times (the filter
    /// gradient's input, shared by every tap). Each C element gets the same operations as in <see cref="MultiplyPacked"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void MultiplyPrepacked(int m, int n, int k, float[] packedA, float[] packedB, int bOffset, int sliverStride,
        float beta, float[] c, int cOffset, int ldc, GemmIsa isa)
    {
        if (m <= 0 || n <= 0) return;
        if (k == 0) { ScaleC(m, n, beta, c, cOffset, ldc); return; }
        var (mr, nr) = Tile(isa);
        int mPad = (m + mr - 1) / mr * mr, colSlivers = (n + nr - 1) / nr;
        // The micro-kernels read through references: check every read range once here.
        _ = packedA.AsSpan(0, mPad * k);
        _ = packedB.AsSpan(bOffset, (colSlivers - 1) * sliverStride + k * nr);
        _ = c.AsSpan(cOffset, (m - 1) * ldc + n);
        Span<float> edge = stackalloc float[8 * 32];
        for (int pc = 0; pc < k; pc += KC)
        {
            int kc = Math.Min(KC, k - pc);
            bool first = pc == 0;
            for (int i0 = 0; i0 < m; i0 += mr)
            {
                int rows = Math.Min(mr, m - i0);
                ref float ap = ref packedA[mPad * pc + i0 * kc];
                for (int jr = 0; jr < n; jr += nr)
                {
                    int cols = Math.Min(nr, n - jr);
                    int cStart = cOffset + i0 * ldc + jr;
                    ref float bp = ref packedB[bOffset + jr / nr * sliverStride + pc * nr];
                    switch (isa)
                    {
                        case GemmIsa.Vector512: Kernel8x32(kc, ref ap, ref bp, new PackedRows(32), c, cStart, ldc, rows, cols, 1f, beta, first, edge); break;
                        case GemmIsa.Vector256: Kernel6x16(kc, ref ap, ref bp, new PackedRows(16), c, cStart, ldc, rows, cols, new Scales(1f, beta), first, edge); break;
                        default: Kernel4x4(kc, ref ap, ref bp, c, cStart, ldc, rows, cols, 1f, beta, first, edge); break;
                    }
                }
            }
        }
    }

    /// <summary>C = alpha * A * B + beta * C with A already packed by <see cref="PackA"/> (same m, k, isa).</summary>
    public static void MultiplyPacked(int m, int n, int k, float alpha, float[] packedA, MatrixView b, float beta,
        float[] c, int cOffset, int ldc, CpuBackend? parallel, GemmIsa isa)
    {
        if (m <= 0 || n <= 0) return;
        if (k == 0) { ScaleC(m, n, beta, c, cOffset, ldc); return; }
        var (mr, nr) = Tile(isa);
        int rowSlivers = (m + mr - 1) / mr, colSlivers = (n + nr - 1) / nr;
        int threads = parallel is null || (long)m * n * k < ParallelThreshold ? 1 : parallel.MaxThreads;
        // Split C into disjoint rectangles along its longer sliver count; each task runs the whole k range.
        int colTasks = Math.Min(threads, colSlivers);
        int rowTasks = colTasks < threads ? Math.Min(rowSlivers, threads / colTasks) : 1;
        if (colSlivers < rowSlivers && threads > 1)
        {
            rowTasks = Math.Min(threads, rowSlivers);
            colTasks = rowTasks < threads ? Math.Min(colSlivers, threads / rowTasks) : 1;
        }
        var body = new TaskBody(m, n, k, alpha, packedA, b, beta, c, cOffset, ldc, isa, rowTasks, colTasks);
        if (rowTasks * colTasks == 1) body.Run(0);
        else parallel!.For(rowTasks * colTasks, body);
    }

    /// <summary>Task t: the rectangle (row part t / colTasks, column part t % colTasks) of C.</summary>
    private readonly struct TaskBody(int m, int n, int k, float alpha, float[] packedA, MatrixView b, float beta,
        float[] c, int cOffset, int ldc, GemmIsa isa, int rowTasks, int colTasks) : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int t)
        {
            var (mr, nr) = Tile(isa);
            int rowSlivers = (m + mr - 1) / mr, colSlivers = (n + nr - 1) / nr;
            int rt = t / colTasks, ct = t % colTasks;
            int s0 = rowSlivers * rt / rowTasks, s1 = rowSlivers * (rt + 1) / rowTasks;
            int j0 = colSlivers * ct / colTasks * nr, j1 = Math.Min(n, colSlivers * (ct + 1) / colTasks * nr);
            RunBlock(m, k, s0, s1, j0, j1, alpha, packedA, b, beta, c, cOffset, ldc, isa);
        }
    }

    /// <summary>
    /// The blocked loops for rows slivers [s0, s1) and columns [j0, j1) of C. A B given by row offsets (a shifted
    /// convolution's padded input) is read in place by the vector kernels for its full NR-wide slivers: its rows are
    /// contiguous already, and the image they come from is small enough to stay in cache, so packing them would only
    /// copy. The edge sliver is packed (it must be zero-padded). The same operations per C element either way.
    /// </summary>
    private static void RunBlock(int m, int k, int s0, int s1, int j0, int j1, float alpha, float[] packedA,
        MatrixView b, float beta, float[] c, int cOffset, int ldc, GemmIsa isa)
    {
        var (mr, nr) = Tile(isa);
        int mPad = (m + mr - 1) / mr * mr;
        int ncMax = Math.Min(NC, (j1 - j0 + nr - 1) / nr * nr);
        bool inPlace = b.RowOffsets is not null && isa != GemmIsa.Scalar;
        if (inPlace) CheckRowsInPlace(b, k, j1);
        float[] packedB = ArrayPool<float>.Shared.Rent(Math.Min(KC, k) * (inPlace ? nr : ncMax));
        // Edge tiles land here first; kept out of the micro-kernels, where a stackalloc would make the JIT
        // keep the accumulators in memory.
        Span<float> edge = stackalloc float[8 * 32];
        try
        {
            for (int jc = j0; jc < j1; jc += NC)
            {
                int nc = Math.Min(NC, j1 - jc);
                int fullWidth = inPlace ? nc / nr * nr : 0; // columns [jc, jc + fullWidth) read in place
                for (int pc = 0; pc < k; pc += KC)
                {
                    int kc = Math.Min(KC, k - pc);
                    if (fullWidth < nc) PackB(kc, nc - fullWidth, pc, jc + fullWidth, b, packedB, nr);
                    bool first = pc == 0;
                    for (int s = s0; s < s1; s++)
                    {
                        int i0 = s * mr, rows = Math.Min(mr, m - i0);
                        int aStart = mPad * pc + s * mr * kc;
                        for (int jr = 0; jr < nc; jr += nr)
                        {
                            int cols = Math.Min(nr, nc - jr);
                            int cStart = cOffset + i0 * ldc + jc + jr;
                            ref float ap = ref packedA[aStart];
                            if (jr < fullWidth)
                            {
                                ref float row0 = ref MemoryMarshal.GetArrayDataReference(b.Data);
                                ref float bp = ref Unsafe.Add(ref row0, b.Offset + jc + jr);
                                var rowsOfB = new OffsetRows(b.RowOffsets!, pc);
                                if (isa == GemmIsa.Vector512) Kernel8x32(kc, ref ap, ref bp, rowsOfB, c, cStart, ldc, rows, cols, alpha, beta, first, edge);
                                else Kernel6x16(kc, ref ap, ref bp, rowsOfB, c, cStart, ldc, rows, cols, new Scales(alpha, beta), first, edge);
                                continue;
                            }
                            ref float packed = ref packedB[(jr - fullWidth) * kc];
                            switch (isa)
                            {
                                case GemmIsa.Vector512: Kernel8x32(kc, ref ap, ref packed, new PackedRows(32), c, cStart, ldc, rows, cols, alpha, beta, first, edge); break;
                                case GemmIsa.Vector256: Kernel6x16(kc, ref ap, ref packed, new PackedRows(16), c, cStart, ldc, rows, cols, new Scales(alpha, beta), first, edge); break;
                                default: Kernel4x4(kc, ref ap, ref packed, c, cStart, ldc, rows, cols, alpha, beta, first, edge); break;
                            }
                        }
                    }
                }
            }
        }
        finally { ArrayPool<float>.Shared.Return(packedB); }
    }

    /// <summary>
    /// Checks once that every row of a row-offset B, read in place up to column <paramref name="j1"/>, lies inside its
    /// array: the kernels then read through references without bounds checks.
    /// </summary>
    private static void CheckRowsInPlace(MatrixView b, int k, int j1)
    {
        var offsets = b.RowOffsets!.AsSpan(0, k);
        int min = int.MaxValue, max = int.MinValue;
        foreach (int o in offsets) { min = Math.Min(min, o); max = Math.Max(max, o); }
        if (b.Offset + min < 0 || (long)b.Offset + max + j1 > b.Data.Length)
            throw new ArgumentOutOfRangeException(nameof(b), $"B's rows at offsets [{min}, {max}] + {b.Offset} with {j1} columns do not fit its {b.Data.Length} floats.");
    }

    /// <summary>The alpha and beta of a micro-kernel's store, passed by reference (see <see cref="Kernel6x16{TB}"/>).</summary>
    private readonly struct Scales(float alpha, float beta)
    {
        public readonly float Alpha = alpha, Beta = beta;
    }

    /// <summary>Where row p of a micro-kernel's B operand starts, in floats from the reference it is given.</summary>
    private interface IBRows
    {
        nint At(int p);
    }

    /// <summary>A packed sliver: rows of <c>nr</c> floats one after another.</summary>
    private readonly struct PackedRows(int nr) : IBRows
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public nint At(int p) => (nint)p * nr;
    }

    /// <summary>Rows read in place: row p at <c>offsets[start + p]</c> (checked by <see cref="CheckRowsInPlace"/>).</summary>
    private readonly struct OffsetRows(int[] offsets, int start) : IBRows
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public nint At(int p) => Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(offsets), start + p);
    }

    /// <summary>Packs B[pc..pc+kc, jc..jc+nc] as NR-column slivers, each k-major ([kc][NR]), columns past nc zero.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackB(int kc, int nc, int pc, int jc, MatrixView b, float[] packed, int nr)
    {
        float[] src = b.Data;
        int rs = b.RowStride, cs = b.ColStride;
        if (b.RowOffsets is { } offsets)
        {
            for (int jr = 0; jr < nc; jr += nr)
            {
                int cols = Math.Min(nr, nc - jr);
                var dst = packed.AsSpan(jr * kc, nr * kc);
                int shift = b.Offset + jc + jr;
                if (cols == nr && nr % 8 == 0 && Vector256.IsHardwareAccelerated)
                {
                    // Full sliver: NR floats per k as vector moves (a library copy per 16 or 32 floats cost more than the copy).
                    ref float to = ref packed[jr * kc];
                    for (int p = 0; p < kc; p++)
                    {
                        ref float from = ref src.AsSpan(shift + offsets[pc + p], nr)[0];
                        for (int v = 0; v < nr; v += 8)
                            Vector256.LoadUnsafe(ref from, (nuint)v).StoreUnsafe(ref to, (nuint)(p * nr + v));
                    }
                    continue;
                }
                if (cols < nr) dst.Clear();
                for (int p = 0; p < kc; p++)
                    src.AsSpan(shift + offsets[pc + p], cols).CopyTo(dst.Slice(p * nr, cols));
            }
            return;
        }
        for (int jr = 0; jr < nc; jr += nr)
        {
            int cols = Math.Min(nr, nc - jr);
            var dst = packed.AsSpan(jr * kc, nr * kc);
            int baseIndex = b.Offset + pc * rs + (jc + jr) * cs;
            if (cs == 1 && cols == nr)
            {
                // Rows of B contiguous: copy NR floats per k.
                for (int p = 0; p < kc; p++)
                    src.AsSpan(baseIndex + p * rs, nr).CopyTo(dst.Slice(p * nr, nr));
                continue;
            }
            if (cols < nr) dst.Clear();
            if (rs == 1)
            {
                // Columns of B contiguous (a transposed operand): eight columns by eight k at a time through an 8 x 8
                // transpose, the rest (the last k and columns) walked down each column.
                int vectorCols = Transposes.Vectorized ? cols / 8 * 8 : 0, vectorK = kc / 8 * 8;
                // The bound of the unchecked reads below (the last column's last whole block of k).
                if (vectorCols > 0 && (baseIndex < 0 || baseIndex + (long)(vectorCols - 1) * cs + vectorK > src.Length))
                    throw new ArgumentOutOfRangeException(nameof(b), "B's columns run past its data.");
                for (int j = 0; j < vectorCols; j += 8)
                {
                    ref float col = ref src[baseIndex + j * cs];
                    for (int p = 0; p < vectorK; p += 8)
                        Transposes.Block8x8(ref Unsafe.Add(ref col, p), ref Unsafe.Add(ref col, cs + p), ref Unsafe.Add(ref col, 2 * cs + p),
                            ref Unsafe.Add(ref col, 3 * cs + p), ref Unsafe.Add(ref col, 4 * cs + p), ref Unsafe.Add(ref col, 5 * cs + p),
                            ref Unsafe.Add(ref col, 6 * cs + p), ref Unsafe.Add(ref col, 7 * cs + p), ref dst[p * nr + j], nr);
                    for (int jj = j; jj < j + 8; jj++)
                        for (int p = vectorK; p < kc; p++) dst[p * nr + jj] = src[baseIndex + jj * cs + p];
                }
                for (int j = vectorCols; j < cols; j++)
                {
                    var column = src.AsSpan(baseIndex + j * cs, kc);
                    for (int p = 0; p < kc; p++) dst[p * nr + j] = column[p];
                }
                continue;
            }
            for (int p = 0; p < kc; p++)
                for (int j = 0; j < cols; j++)
                    dst[p * nr + j] = src[baseIndex + p * rs + j * cs];
        }
    }

    // ---- micro-kernels: acc[r, j] = sum_p a[p*MR + r] * b[p*NR + j] for one k-block, then stored ----

    /// <summary>
    /// Writes one accumulator row into C: C = alpha acc + beta C on the first k-block (alpha acc when beta is 0),
    /// C = alpha acc + C afterwards. Scalar form of the same fused operations the vector stores use.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreScalar(ReadOnlySpan<float> acc, Span<float> cRow, float alpha, float beta, bool first)
    {
        for (int j = 0; j < cRow.Length; j++)
        {
            float v = acc[j];
            cRow[j] = first
                ? (beta == 0f ? v * alpha : MathF.FusedMultiplyAdd(v, alpha, beta * cRow[j]))
                : MathF.FusedMultiplyAdd(v, alpha, cRow[j]);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Combine(Vector512<float> acc, ref float c, Vector512<float> alpha, float beta, bool first) =>
        first
            ? (beta == 0f ? acc * alpha : Vector512.FusedMultiplyAdd(acc, alpha, Vector512.LoadUnsafe(ref c) * beta))
            : Vector512.FusedMultiplyAdd(acc, alpha, Vector512.LoadUnsafe(ref c));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Combine(Vector256<float> acc, ref float c, Vector256<float> alpha, float beta, bool first) =>
        first
            ? (beta == 0f ? acc * alpha : Vector256.FusedMultiplyAdd(acc, alpha, Vector256.LoadUnsafe(ref c) * beta))
            : Vector256.FusedMultiplyAdd(acc, alpha, Vector256.LoadUnsafe(ref c));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow(ref float cr, Vector512<float> lo, Vector512<float> hi, Vector512<float> alpha, float beta, bool first)
    {
        Combine(lo, ref cr, alpha, beta, first).StoreUnsafe(ref cr);
        ref float hiStart = ref Unsafe.Add(ref cr, 16);
        Combine(hi, ref hiStart, alpha, beta, first).StoreUnsafe(ref hiStart);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow(ref float cr, Vector256<float> lo, Vector256<float> hi, Vector256<float> alpha, float beta, bool first)
    {
        Combine(lo, ref cr, alpha, beta, first).StoreUnsafe(ref cr);
        ref float hiStart = ref Unsafe.Add(ref cr, 8);
        Combine(hi, ref hiStart, alpha, beta, first).StoreUnsafe(ref hiStart);
    }

    /// <summary>8 x 32 tile: 16 Vector512 accumulators, 2 B loads and 8 broadcasts per k; B's row p at <c>b + rowsOfB.At(p)</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel8x32<TB>(int kc, ref float a, ref float b, TB rowsOfB, float[] c, int cStart, int ldc,
        int rows, int cols, float alpha, float beta, bool first, Span<float> tile) where TB : struct, IBRows
    {
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
            c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default,
            c60 = default, c61 = default, c70 = default, c71 = default;
        ref float ap = ref a;
        for (int p = 0; p < kc; p++, ap = ref Unsafe.Add(ref ap, 8))
        {
            ref float bp = ref Unsafe.Add(ref b, rowsOfB.At(p));
            var b0 = Vector512.LoadUnsafe(ref bp);
            var b1 = Vector512.LoadUnsafe(ref bp, 16);
            var av = Vector512.Create(ap);
            c00 = Vector512.FusedMultiplyAdd(av, b0, c00); c01 = Vector512.FusedMultiplyAdd(av, b1, c01);
            av = Vector512.Create(Unsafe.Add(ref ap, 1));
            c10 = Vector512.FusedMultiplyAdd(av, b0, c10); c11 = Vector512.FusedMultiplyAdd(av, b1, c11);
            av = Vector512.Create(Unsafe.Add(ref ap, 2));
            c20 = Vector512.FusedMultiplyAdd(av, b0, c20); c21 = Vector512.FusedMultiplyAdd(av, b1, c21);
            av = Vector512.Create(Unsafe.Add(ref ap, 3));
            c30 = Vector512.FusedMultiplyAdd(av, b0, c30); c31 = Vector512.FusedMultiplyAdd(av, b1, c31);
            av = Vector512.Create(Unsafe.Add(ref ap, 4));
            c40 = Vector512.FusedMultiplyAdd(av, b0, c40); c41 = Vector512.FusedMultiplyAdd(av, b1, c41);
            av = Vector512.Create(Unsafe.Add(ref ap, 5));
            c50 = Vector512.FusedMultiplyAdd(av, b0, c50); c51 = Vector512.FusedMultiplyAdd(av, b1, c51);
            av = Vector512.Create(Unsafe.Add(ref ap, 6));
            c60 = Vector512.FusedMultiplyAdd(av, b0, c60); c61 = Vector512.FusedMultiplyAdd(av, b1, c61);
            av = Vector512.Create(Unsafe.Add(ref ap, 7));
            c70 = Vector512.FusedMultiplyAdd(av, b0, c70); c71 = Vector512.FusedMultiplyAdd(av, b1, c71);
        }
        var al = Vector512.Create(alpha);
        if (rows == 8 && cols == 32)
        {
            ref float c0 = ref c[cStart];
            StoreRow(ref c0, c00, c01, al, beta, first);
            StoreRow(ref Unsafe.Add(ref c0, ldc), c10, c11, al, beta, first);
            StoreRow(ref Unsafe.Add(ref c0, 2 * ldc), c20, c21, al, beta, first);
            StoreRow(ref Unsafe.Add(ref c0, 3 * ldc), c30, c31, al, beta, first);
            StoreRow(ref Unsafe.Add(ref c0, 4 * ldc), c40, c41, al, beta, first);
            StoreRow(ref Unsafe.Add(ref c0, 5 * ldc), c50, c51, al, beta, first);
            StoreRow(ref Unsafe.Add(ref c0, 6 * ldc), c60, c61, al, beta, first);
            StoreRow(ref Unsafe.Add(ref c0, 7 * ldc), c70, c71, al, beta, first);
            return;
        }
        ref float t = ref tile[0];
        c00.StoreUnsafe(ref t, 0); c01.StoreUnsafe(ref t, 16); c10.StoreUnsafe(ref t, 32); c11.StoreUnsafe(ref t, 48);
        c20.StoreUnsafe(ref t, 64); c21.StoreUnsafe(ref t, 80); c30.StoreUnsafe(ref t, 96); c31.StoreUnsafe(ref t, 112);
        c40.StoreUnsafe(ref t, 128); c41.StoreUnsafe(ref t, 144); c50.StoreUnsafe(ref t, 160); c51.StoreUnsafe(ref t, 176);
        c60.StoreUnsafe(ref t, 192); c61.StoreUnsafe(ref t, 208); c70.StoreUnsafe(ref t, 224); c71.StoreUnsafe(ref t, 240);
        for (int r = 0; r < rows; r++)
        {
            if (cols == 32)
            {
                // A full-width row of a short tile (M not a multiple of 8): vector stores as in the full tile.
                ref float tr = ref Unsafe.Add(ref t, r * 32);
                StoreRow(ref c[cStart + r * ldc], Vector512.LoadUnsafe(ref tr), Vector512.LoadUnsafe(ref tr, 16), al, beta, first);
            }
            else StoreScalar(tile.Slice(r * 32, cols), c.AsSpan(cStart + r * ldc, cols), alpha, beta, first);
        }
    }

    /// <summary>6 x 16 tile: 12 Vector256 accumulators, 2 B loads and 6 broadcasts per k; B's row p at <c>b + rowsOfB.At(p)</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel6x16<TB>(int kc, ref float a, ref float b, TB rowsOfB, float[] c, int cStart, int ldc,
        int rows, int cols, in Scales scales, bool first, Span<float> tile) where TB : struct, IBRows
    {
        // The loop needs 15 of the 16 vector registers an AVX2 machine has (12 accumulators, two B rows, one broadcast).
        // alpha and beta passed as floats stayed in two more across the loop, and the JIT spilled an accumulator to the
        // stack, a store and a load on every k step (the GEMM ran at half speed without AVX-512); read from memory
        // after the loop, they take none.
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
            c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        ref float ap = ref a;
        for (int p = 0; p < kc; p++, ap = ref Unsafe.Add(ref ap, 6))
        {
            ref float bp = ref Unsafe.Add(ref b, rowsOfB.At(p));
            var b0 = Vector256.LoadUnsafe(ref bp);
            var b1 = Vector256.LoadUnsafe(ref bp, 8);
            var av = Vector256.Create(ap);
            c00 = Vector256.FusedMultiplyAdd(av, b0, c00); c01 = Vector256.FusedMultiplyAdd(av, b1, c01);
            av = Vector256.Create(Unsafe.Add(ref ap, 1));
            c10 = Vector256.FusedMultiplyAdd(av, b0, c10); c11 = Vector256.FusedMultiplyAdd(av, b1, c11);
            av = Vector256.Create(Unsafe.Add(ref ap, 2));
            c20 = Vector256.FusedMultiplyAdd(av, b0, c20); c21 = Vector256.FusedMultiplyAdd(av, b1, c21);
            av = Vector256.Create(Unsafe.Add(ref ap, 3));
            c30 = Vector256.FusedMultiplyAdd(av, b0, c30); c31 = Vector256.FusedMultiplyAdd(av, b1, c31);
            av = Vector256.Create(Unsafe.Add(ref ap, 4));
            c40 = Vector256.FusedMultiplyAdd(av, b0, c40); c41 = Vector256.FusedMultiplyAdd(av, b1, c41);
            av = Vector256.Create(Unsafe.Add(ref ap, 5));
            c50 = Vector256.FusedMultiplyAdd(av, b0, c50); c51 = Vector256.FusedMultiplyAdd(av, b1, c51);
        }
        float alpha = scales.Alpha, beta = scales.Beta;
        var al = Vector256.Create(alpha);
        if (rows == 6 && cols == 16)
        {
            ref float c0 = ref c[cStart];
            StoreRow(ref c0, c00, c01, al, beta, first);
            StoreRow(ref Unsafe.Add(ref c0, ldc), c10, c11, al, beta, first);
            StoreRow(ref Unsafe.Add(ref c0, 2 * ldc), c20, c21, al, beta, first);
            StoreRow(ref Unsafe.Add(ref c0, 3 * ldc), c30, c31, al, beta, first);
            StoreRow(ref Unsafe.Add(ref c0, 4 * ldc), c40, c41, al, beta, first);
            StoreRow(ref Unsafe.Add(ref c0, 5 * ldc), c50, c51, al, beta, first);
            return;
        }
        ref float t = ref tile[0];
        c00.StoreUnsafe(ref t, 0); c01.StoreUnsafe(ref t, 8); c10.StoreUnsafe(ref t, 16); c11.StoreUnsafe(ref t, 24);
        c20.StoreUnsafe(ref t, 32); c21.StoreUnsafe(ref t, 40); c30.StoreUnsafe(ref t, 48); c31.StoreUnsafe(ref t, 56);
        c40.StoreUnsafe(ref t, 64); c41.StoreUnsafe(ref t, 72); c50.StoreUnsafe(ref t, 80); c51.StoreUnsafe(ref t, 88);
        for (int r = 0; r < rows; r++)
        {
            if (cols == 16)
            {
                ref float tr = ref Unsafe.Add(ref t, r * 16);
                StoreRow(ref c[cStart + r * ldc], Vector256.LoadUnsafe(ref tr), Vector256.LoadUnsafe(ref tr, 8), al, beta, first);
            }
            else StoreScalar(tile.Slice(r * 16, cols), c.AsSpan(cStart + r * ldc, cols), alpha, beta, first);
        }
    }

    /// <summary>Portable 4 x 4 tile in scalars with fused multiply-adds (same per-element operations as the vector kernels).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel4x4(int kc, ref float a, ref float b, float[] c, int cStart, int ldc,
        int rows, int cols, float alpha, float beta, bool first, Span<float> tile)
    {
        Span<float> acc = tile[..16];
        acc.Clear();
        for (int p = 0; p < kc; p++)
        {
            ref float ap = ref Unsafe.Add(ref a, p * 4);
            ref float bp = ref Unsafe.Add(ref b, p * 4);
            for (int r = 0; r < 4; r++)
            {
                float av = Unsafe.Add(ref ap, r);
                for (int j = 0; j < 4; j++)
                    acc[r * 4 + j] = MathF.FusedMultiplyAdd(av, Unsafe.Add(ref bp, j), acc[r * 4 + j]);
            }
        }
        for (int r = 0; r < rows; r++)
            StoreScalar(acc.Slice(r * 4, cols), c.AsSpan(cStart + r * ldc, cols), alpha, beta, first);
    }
}
