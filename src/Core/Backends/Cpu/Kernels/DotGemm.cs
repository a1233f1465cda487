using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MLNet.ConvNet.Backends.Cpu.Kernels;

/// <summary>
/// C[M,N] = A[M,K] * Bᵀ + beta * C where the rows of both A and B are contiguous in k: a grid of dot
/// products, needing no packing. The filter gradient has this shape (dy rows against input rows).
/// </summary>
/// <remarks>
/// A 4 x 4 block of C keeps 16 vector accumulators; each step loads 4 vectors of A and 4 of B (8 lanes of k)
/// and does 16 multiply-adds. The lanes are then summed in a fixed order and the k tail added in scalars:
/// <code>
///          k ->                      B rows j..j+3
///   A row i   [a a a a a a a a | t]   [b b b b b b b b | t]
///   acc[i,j] += a[k..k+8] * b[k..k+8]   ...   C[i,j] = sum(acc[i,j]) + tail
/// </code>
/// Each C element is one fixed sequence of operations whatever the block or thread split.
/// </remarks>
internal static class DotGemm
{
    /// <summary>
    /// Blocks of 4 x 4 dots in one pass (16 accumulators, 8 loads per step) where the JIT has AVX-512's 32 vector
    /// registers; without AVX-512 it has 16, that pass spilled to the stack on every step, and two passes of 4 x 2 ran
    /// dense1's forward in 0.38 ms against 0.49-0.54 (cnn2bn, batch 64). Either way each dot has the same bits.
    /// </summary>
    internal static readonly bool WideBlocks = Avx512F.IsSupported;

    /// <summary>
    /// C[i, j] = dot(A row i, B row j) + beta * C[i, j] (beta 0 or 1), A row i at <c>aOffset + i * lda</c>,
    /// B row j at <c>bOffset + bRows[j]</c> (or <c>bOffset + j * ldb</c> when bRows is null), C row-major at <paramref name="cOffset"/> with <paramref name="ldc"/>.
    /// Blocks of 4 rows of C are spread over <paramref name="parallel"/>'s threads when given.
    /// </summary>
    public static void Multiply(int m, int n, int k, float[] a, int aOffset, int lda, float[] b, int bOffset, int[]? bRows, int ldb,
        float beta, float[] c, int cOffset, int ldc, CpuBackend? parallel, bool vector, bool? wideBlocks = null)
    {
        int blocks = (m + 3) / 4;
        var body = new BlockBody(m, n, k, a, aOffset, lda, b, bOffset, bRows, ldb, beta, c, cOffset, ldc, vector, wideBlocks ?? WideBlocks);
        if (parallel is null || blocks == 1 || (long)m * n * k < 1 << 18) for (int blk = 0; blk < blocks; blk++) body.Run(blk);
        else parallel.For(blocks, body);
    }

    /// <summary>Rows [4 blk, 4 blk + 4) of C.</summary>
    private readonly struct BlockBody(int m, int n, int k, float[] a, int aOffset, int lda, float[] b, int bOffset, int[]? bRows, int ldb,
        float beta, float[] c, int cOffset, int ldc, bool vector, bool wide) : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int blk)
        {
            int i0 = blk * 4, rows = Math.Min(4, m - i0);
            Span<float> tile = stackalloc float[16];
            for (int j0 = 0; j0 < n; j0 += 4)
            {
                int cols = Math.Min(4, n - j0);
                Dot4x4(k, a, aOffset + i0 * lda, lda, rows, b, bOffset, bRows, ldb, j0, cols, tile, vector, wide);
                for (int r = 0; r < rows; r++)
                {
                    var cRow = c.AsSpan(cOffset + (i0 + r) * ldc + j0, cols);
                    for (int j = 0; j < cols; j++)
                        cRow[j] = beta == 0f ? tile[r * 4 + j] : tile[r * 4 + j] + cRow[j];
                }
            }
        }
    }

    /// <summary>tile[r * 4 + j] = dot(A row r, B row j0 + j) for the valid rows and columns (missing ones repeat row 0).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Dot4x4(int k, float[] a, int aStart, int lda, int rows, float[] b, int bOffset, int[]? bRows, int ldb, int j0, int cols,
        Span<float> tile, bool vector, bool wide)
    {
        // Missing rows/columns read row 0 again so the loop has no branches; their results are dropped.
        int a0 = aStart, a1 = aStart + (rows > 1 ? lda : 0), a2 = aStart + (rows > 2 ? 2 * lda : 0), a3 = aStart + (rows > 3 ? 3 * lda : 0);
        int j1 = j0 + (cols > 1 ? 1 : 0), j2 = j0 + (cols > 2 ? 2 : 0), j3 = j0 + (cols > 3 ? 3 : 0);
        int b0 = bOffset + (bRows is null ? j0 * ldb : bRows[j0]), b1 = bOffset + (bRows is null ? j1 * ldb : bRows[j1]),
            b2 = bOffset + (bRows is null ? j2 * ldb : bRows[j2]), b3 = bOffset + (bRows is null ? j3 * ldb : bRows[j3]);
        if (vector && Vector256.IsHardwareAccelerated && k >= 8)
        {
            // Bounds checked once: every row read covers [start, start + k).
            _ = a.AsSpan(a0, k); _ = a.AsSpan(a1, k); _ = a.AsSpan(a2, k); _ = a.AsSpan(a3, k);
            _ = b.AsSpan(b0, k); _ = b.AsSpan(b1, k); _ = b.AsSpan(b2, k); _ = b.AsSpan(b3, k);
            // One row (a dense layer scoring one sample): its four dots alone, not four copies of them.
            if (rows == 1) VectorDotsRow(k, ref a[a0], ref b[b0], ref b[b1], ref b[b2], ref b[b3], tile);
            else if (wide)
                VectorDots(k, ref a[a0], ref a[a1], ref a[a2], ref a[a3], ref b[b0], ref b[b1], ref b[b2], ref b[b3], tile);
            else
            {
                // See WideBlocks: two passes of 4 x 2 (8 accumulators, 6 loads) keep everything in registers.
                VectorDots4x2(k, ref a[a0], ref a[a1], ref a[a2], ref a[a3], ref b[b0], ref b[b1], tile, 0);
                VectorDots4x2(k, ref a[a0], ref a[a1], ref a[a2], ref a[a3], ref b[b2], ref b[b3], tile, 2);
            }
            return;
        }
        Span<int> ar = [a0, a1, a2, a3];
        Span<int> br = [b0, b1, b2, b3];
        for (int r = 0; r < 4; r++)
            for (int j = 0; j < 4; j++)
            {
                float s = 0;
                var x = a.AsSpan(ar[r], k); var y = b.AsSpan(br[j], k);
                for (int p = 0; p < k; p++) s = MathF.FusedMultiplyAdd(x[p], y[p], s);
                tile[r * 4 + j] = s;
            }
    }

    /// <summary>
    /// Row 0 of <see cref="VectorDots"/>: the same four accumulators, loads, masks and folds, so each dot has the
    /// same bits as there.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void VectorDotsRow(int k, ref float a0, ref float b0, ref float b1, ref float b2, ref float b3, Span<float> tile)
    {
        Vector256<float> c00 = default, c01 = default, c02 = default, c03 = default;
        int kv = k & ~7;
        var keep = Vector256<int>.AllBitsSet.AsSingle();
        for (int p = 0; ; p += 8)
        {
            if (p >= kv)
            {
                if (p == k) break;
                keep = Vector256.GreaterThanOrEqual(Vector256.Create(k - 8) + Vector256<int>.Indices, Vector256.Create(p)).AsSingle();
                p = k - 8;
            }
            nuint e = (nuint)p;
            var y0 = Vector256.LoadUnsafe(ref b0, e); var y1 = Vector256.LoadUnsafe(ref b1, e);
            var y2 = Vector256.LoadUnsafe(ref b2, e); var y3 = Vector256.LoadUnsafe(ref b3, e);
            var x0 = Vector256.LoadUnsafe(ref a0, e);
            if (p > kv - 8 && kv != k)
            {
                y0 &= keep; y1 &= keep; y2 &= keep; y3 &= keep; x0 &= keep;
            }
            c00 = Vector256.FusedMultiplyAdd(x0, y0, c00); c01 = Vector256.FusedMultiplyAdd(x0, y1, c01);
            c02 = Vector256.FusedMultiplyAdd(x0, y2, c02); c03 = Vector256.FusedMultiplyAdd(x0, y3, c03);
            if (p == k - 8 && kv != k) break;
        }
        tile[0] = Reductions.Fold(c00); tile[1] = Reductions.Fold(c01); tile[2] = Reductions.Fold(c02); tile[3] = Reductions.Fold(c03);
    }

    /// <summary>
    /// Columns <paramref name="j"/> and j + 1 of <see cref="VectorDots"/>' tile (B rows <paramref name="b0"/> and
    /// <paramref name="b1"/>): the same loads, masks, multiply-adds and folds per dot, so the same bits.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void VectorDots4x2(int k, ref float a0, ref float a1, ref float a2, ref float a3, ref float b0, ref float b1,
        Span<float> tile, int j)
    {
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default, c30 = default, c31 = default;
        int kv = k & ~7;
        var keep = Vector256<int>.AllBitsSet.AsSingle();
        for (int p = 0; ; p += 8)
        {
            if (p >= kv)
            {
                if (p == k) break;
                keep = Vector256.GreaterThanOrEqual(Vector256.Create(k - 8) + Vector256<int>.Indices, Vector256.Create(p)).AsSingle();
                p = k - 8;
            }
            nuint e = (nuint)p;
            var y0 = Vector256.LoadUnsafe(ref b0, e); var y1 = Vector256.LoadUnsafe(ref b1, e);
            var x0 = Vector256.LoadUnsafe(ref a0, e); var x1 = Vector256.LoadUnsafe(ref a1, e);
            var x2 = Vector256.LoadUnsafe(ref a2, e); var x3 = Vector256.LoadUnsafe(ref a3, e);
            if (p > kv - 8 && kv != k)
            {
                y0 &= keep; y1 &= keep; x0 &= keep; x1 &= keep; x2 &= keep; x3 &= keep;
            }
            c00 = Vector256.FusedMultiplyAdd(x0, y0, c00); c01 = Vector256.FusedMultiplyAdd(x0, y1, c01);
            c10 = Vector256.FusedMultiplyAdd(x1, y0, c10); c11 = Vector256.FusedMultiplyAdd(x1, y1, c11);
            c20 = Vector256.FusedMultiplyAdd(x2, y0, c20); c21 = Vector256.FusedMultiplyAdd(x2, y1, c21);
            c30 = Vector256.FusedMultiplyAdd(x3, y0, c30); c31 = Vector256.FusedMultiplyAdd(x3, y1, c31);
            if (p == k - 8 && kv != k) break;
        }
        tile[j] = Reductions.Fold(c00); tile[j + 1] = Reductions.Fold(c01);
        tile[4 + j] = Reductions.Fold(c10); tile[5 + j] = Reductions.Fold(c11);
        tile[8 + j] = Reductions.Fold(c20); tile[9 + j] = Reductions.Fold(c21);
        tile[12 + j] = Reductions.Fold(c30); tile[13 + j] = Reductions.Fold(c31);
    }

    /// <summary>The 16 dots for k at least 8: whole vectors, then the last 8 elements again with the lanes already summed masked to 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void VectorDots(int k, ref float a0, ref float a1, ref float a2, ref float a3,
        ref float b0, ref float b1, ref float b2, ref float b3, Span<float> tile)
    {
        Vector256<float> c00 = default, c01 = default, c02 = default, c03 = default, c10 = default, c11 = default, c12 = default, c13 = default,
            c20 = default, c21 = default, c22 = default, c23 = default, c30 = default, c31 = default, c32 = default, c33 = default;
        int kv = k & ~7;
        var keep = Vector256<int>.AllBitsSet.AsSingle();
        for (int p = 0; ; p += 8)
        {
            if (p >= kv)
            {
                if (p == k) break;
                // Tail: reread [k-8, k) with the lanes below p zeroed in both operands (0 * 0 adds nothing, even beside Inf).
                keep = Vector256.GreaterThanOrEqual(Vector256.Create(k - 8) + Vector256<int>.Indices, Vector256.Create(p)).AsSingle();
                p = k - 8;
            }
            nuint e = (nuint)p;
            var y0 = Vector256.LoadUnsafe(ref b0, e); var y1 = Vector256.LoadUnsafe(ref b1, e);
            var y2 = Vector256.LoadUnsafe(ref b2, e); var y3 = Vector256.LoadUnsafe(ref b3, e);
            var x0 = Vector256.LoadUnsafe(ref a0, e); var x1 = Vector256.LoadUnsafe(ref a1, e);
            var x2 = Vector256.LoadUnsafe(ref a2, e); var x3 = Vector256.LoadUnsafe(ref a3, e);
            if (p > kv - 8 && kv != k)
            {
                y0 &= keep; y1 &= keep; y2 &= keep; y3 &= keep; x0 &= keep; x1 &= keep; x2 &= keep; x3 &= keep;
            }
            c00 = Vector256.FusedMultiplyAdd(x0, y0, c00); c01 = Vector256.FusedMultiplyAdd(x0, y1, c01);
            c02 = Vector256.FusedMultiplyAdd(x0, y2, c02); c03 = Vector256.FusedMultiplyAdd(x0, y3, c03);
            c10 = Vector256.FusedMultiplyAdd(x1, y0, c10); c11 = Vector256.FusedMultiplyAdd(x1, y1, c11);
            c12 = Vector256.FusedMultiplyAdd(x1, y2, c12); c13 = Vector256.FusedMultiplyAdd(x1, y3, c13);
            c20 = Vector256.FusedMultiplyAdd(x2, y0, c20); c21 = Vector256.FusedMultiplyAdd(x2, y1, c21);
            c22 = Vector256.FusedMultiplyAdd(x2, y2, c22); c23 = Vector256.FusedMultiplyAdd(x2, y3, c23);
            c30 = Vector256.FusedMultiplyAdd(x3, y0, c30); c31 = Vector256.FusedMultiplyAdd(x3, y1, c31);
            c32 = Vector256.FusedMultiplyAdd(x3, y2, c32); c33 = Vector256.FusedMultiplyAdd(x3, y3, c33);
            if (p == k - 8 && kv != k) break;
        }
        tile[0] = Reductions.Fold(c00); tile[1] = Reductions.Fold(c01); tile[2] = Reductions.Fold(c02); tile[3] = Reductions.Fold(c03);
        tile[4] = Reductions.Fold(c10); tile[5] = Reductions.Fold(c11); tile[6] = Reductions.Fold(c12); tile[7] = Reductions.Fold(c13);
        tile[8] = Reductions.Fold(c20); tile[9] = Reductions.Fold(c21); tile[10] = Reductions.Fold(c22); tile[11] = Reductions.Fold(c23);
        tile[12] = Reductions.Fold(c30); tile[13] = Reductions.Fold(c31); tile[14] = Reductions.Fold(c32); tile[15] = Reductions.Fold(c33);
    }
}
