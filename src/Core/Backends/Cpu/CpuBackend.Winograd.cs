using System.Runtime.CompilerServices;
using System.Buffers;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using MLNet.ConvNet.Backends.Cpu.Kernels;

namespace MLNet.ConvNet.Backends.Cpu;

// Winograd F(2x2, 3x3) for the stride-1, undilated 3x3 correlations of a ShiftedConvPlan (a 2-D convolution's forward
// pass and its input gradient): each 2x2 block of outputs takes 16 multiplies per channel pair instead of 36
// (Lavin and Gray 2015). With d a 4x4 input patch, g a 3x3 filter and
//
//     G  = | 1    0    0  |     Bt = | 1  0 -1  0 |     At = | 1  1  1  0 |
//          | 1/2  1/2  1/2|          | 0  1  1  0 |          | 0  1 -1 -1 |
//          | 1/2 -1/2  1/2|          | 0 -1  1  0 |
//          | 0    0    1  |          | 0  1  0 -1 |
//
// the 2x2 outputs are At [ (G g Gt) .* (Bt d B) ] A. Summed over input channels, the element-wise products become
// 16 GEMMs, one per position e of the 4x4 transformed tile: M_e (Out x tiles) = U_e (Out x In) * V_e (In x tiles).
// The transforms are fixed sequences of float additions (and the halvings of G, exact), the GEMM the same operations
// whatever the threads or instruction set, so results do not depend on either; they differ from the direct
// convolution's in the last bits (other sums), within the backend contract's tolerance.
public sealed partial class CpuBackend
{
    /// <summary>Fewest input and output channels per group for which the transforms pay for themselves.</summary>
    internal const int MinWinogradChannels = 8;

    /// <summary>
    /// Floats of transformed input V (16 x InG x tiles) per chunk: images are taken together until their V reaches this,
    /// about 800 KiB, so that it stays in a core's second-level cache (1 MiB on Zen 5, 1.25 MiB on Ice Lake) while the
    /// 16 GEMMs read it. Sized by tiles alone (400), a 64-channel input gradient's V was twice that and ran 1.5x slower
    /// than its forward pass; with this budget it runs as fast (cnn2bn's conv2, EndToEnd conv, AMD AVX-512).
    /// </summary>
    private const int WinogradChunkFloats = 16 * 32 * 400;

    /// <summary>Fewest tiles per chunk (however many channels): shorter GEMMs spend more on packing than they save.</summary>
    private const int MinWinogradChunkTiles = 64;

    /// <summary>Off: every 3x3 correlation takes the shifted GEMM (tests compare the two paths).</summary>
    internal bool UseWinograd { get; set; } = true;

    /// <summary>
    /// Fewest output tiles in a call (all images): the filter transform, once per call, costs about as much as the
    /// multiplies Winograd saves on a hundred tiles, so a single small image (cnn2bn scored one row at a time: 49 tiles,
    /// 174 us a prediction against 79 on the direct path) stays direct.
    /// </summary>
    internal const int MinWinogradTiles = 256;

    /// <summary>Whether <paramref name="p"/> is a 2-D 3x3 undilated correlation with enough channels and tiles for Winograd.</summary>
    private bool WinogradFits(in ShiftedConvPlan p) =>
        UseWinograd && Avx2.IsSupported && p.Depth == 1 && p.Out[0] == 1 && p.Kernel[0] == 1 && p.Kernel[1] == 3 && p.Kernel[2] == 3
        && p.Dilation[1] == 1 && p.Dilation[2] == 1 && p.InG >= MinWinogradChannels && p.OutG >= MinWinogradChannels
        && (long)p.N * WinogradTiles(p).Count >= MinWinogradTiles;

    /// <summary>
    /// output[n, o] = bias[o] + the correlation of <paramref name="input"/> with the plan's filter, through F(2x2, 3x3).
    /// <paramref name="forward"/>: the filter is <paramref name="wa"/> [plan Out, plan InG, 3, 3] as it is; else (the input
    /// gradient, the plan's channels being the convolution's swapped) wa is [plan In, plan OutG, 3, 3], transposed per group.
    /// The plan's Reverse flag reverses the taps (convolution mode, or the input gradient of a correlation).
    /// <paramref name="transformed"/>: the filter already transformed (<see cref="PreparedFilter"/>), else it is done here.
    /// </summary>
    private void WinogradConvolution(ShiftedConvPlan p, float[] wa, bool forward, float[] input, float[]? bias, float[] output,
        float[][]? transformed = null)
    {
        float[][] packedU = transformed ?? RentAll(p.Groups * 16, WinogradFilterSize(p));
        try
        {
            if (transformed is null) TransformFilters(p, wa, forward, packedU);
            int tiles = WinogradTiles(p).Count;
            int images = WinogradChunkImages(p.InG, tiles, p.N);
            int chunks = (p.N + images - 1) / images;
            bool perChunk = chunks >= MaxThreads;
            Each(chunks, perChunk, new WinogradChunk(this, p, perChunk, images, packedU, input, bias, output));
        }
        finally { if (transformed is null) ReturnAll(packedU, p.Groups * 16); }
    }

    /// <summary>Floats of one packed U_e (<see cref="TransformFilters"/>); there are 16 per group.</summary>
    private int WinogradFilterSize(in ShiftedConvPlan p) => Sgemm.PackedASize(p.OutG, p.InG, GemmIsa);

    /// <summary>Images per chunk: as many as keep V within <see cref="WinogradChunkFloats"/>, at least one.</summary>
    internal static int WinogradChunkImages(int inChannelsPerGroup, int tilesPerImage, int images)
    {
        int chunkTiles = Math.Max(MinWinogradChunkTiles, WinogradChunkFloats / (16 * inChannelsPerGroup));
        return Math.Clamp(chunkTiles / Math.Max(1, tilesPerImage), 1, images);
    }

    /// <summary>Tile rows and columns of the output (2x2 each, the last ones cut where the output size is odd).</summary>
    private static (int Rows, int Cols, int Count) WinogradTiles(in ShiftedConvPlan p)
    {
        int rows = (p.Out[1] + 1) / 2, cols = (p.Out[2] + 1) / 2;
        return (rows, cols, rows * cols);
    }

    /// <summary>U_e = (G g Gt)[e] for every group, output and input channel, each group's 16 matrices [OutG, InG] packed as GEMM A operands.</summary>
    private void TransformFilters(in ShiftedConvPlan p, float[] wa, bool forward, float[][] packedU)
    {
        int og = p.OutG, ig = p.InG;
        bool reverse = p.Reverse;
        float[] u = ArrayPool<float>.Shared.Rent(16 * og * ig);
        Span<float> gg = stackalloc float[12];
        try
        {
            for (int gi = 0; gi < p.Groups; gi++)
            {
                for (int a = 0; a < og; a++)
                    for (int b = 0; b < ig; b++)
                    {
                        // The filter of output a and input b as a correlation: forward W[gi og + a, b]; input gradient
                        // W[gi ig + b, a] (the plan's in/out are the convolution's out/in); taps reversed per the plan.
                        int start = forward ? ((gi * og + a) * ig + b) * 9 : ((gi * ig + b) * og + a) * 9;
                        // G g: 4 rows of 3. Tap (i, j) of the correlation is w[i, j], or w[2 - i, 2 - j] reversed.
                        for (int j = 0; j < 3; j++)
                        {
                            float g0 = Tap(wa, start, reverse, 0, j), g1 = Tap(wa, start, reverse, 1, j), g2 = Tap(wa, start, reverse, 2, j);
                            gg[j] = g0;
                            gg[3 + j] = (g0 + g1 + g2) * 0.5f;
                            gg[6 + j] = (g0 - g1 + g2) * 0.5f;
                            gg[9 + j] = g2;
                        }
                        // (G g) Gt: each row r of 3 becomes 4.
                        for (int r = 0; r < 4; r++)
                        {
                            float r0 = gg[r * 3], r1 = gg[r * 3 + 1], r2 = gg[r * 3 + 2];
                            int at = a * ig + b;
                            u[(r * 4 + 0) * og * ig + at] = r0;
                            u[(r * 4 + 1) * og * ig + at] = (r0 + r1 + r2) * 0.5f;
                            u[(r * 4 + 2) * og * ig + at] = (r0 - r1 + r2) * 0.5f;
                            u[(r * 4 + 3) * og * ig + at] = r2;
                        }
                    }
                for (int e = 0; e < 16; e++)
                    Sgemm.PackA(og, ig, MatrixView.RowMajor(u, e * og * ig, ig), packedU[gi * 16 + e], GemmIsa, this);
            }
        }
        finally { ArrayPool<float>.Shared.Return(u); }
    }

    private static float Tap(float[] w, int start, bool reverse, int i, int j) => reverse ? w[start + (2 - i) * 3 + 2 - j] : w[start + i * 3 + j];

    /// <summary>
    /// Images [j images, (j + 1) images) of a <see cref="WinogradConvolution"/>: per group, the input transform of their
    /// tiles (V: 16 x [InG, tiles]), the 16 GEMMs (M: 16 x [OutG, tiles]), the output transform with the bias. With
    /// fewer chunks than threads (small batches, one image when scoring) each of the three steps is split across the
    /// threads instead: by input channel, by tile position e, by output channel (each unit computed the same way).
    /// </summary>
    private readonly struct WinogradChunk(CpuBackend backend, ShiftedConvPlan p, bool perChunk, int images, float[][] packedU,
        float[] input, float[]? bias, float[] output) : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int j)
        {
            int n0 = j * images, n1 = Math.Min(p.N, n0 + images);
            int tiles = (n1 - n0) * WinogradTiles(p).Count;
            // V's rows (one per input channel) have eight values of slack: the input transform writes whole vectors,
            // whose lanes past a channel's last tile land there (within the row, on tiles written after them).
            int ldv = tiles + Vector256<float>.Count, vStride = p.InG * ldv;
            float[] v = ArrayPool<float>.Shared.Rent(16 * vStride);
            // Eight values of slack: the output transform reads whole vectors from a row's last tiles.
            float[] m = ArrayPool<float>.Shared.Rent(16 * p.OutG * tiles + Vector256<float>.Count);
            try
            {
                for (int gi = 0; gi < p.Groups; gi++)
                {
                    backend.Each(p.InG, !perChunk, new WinogradInput(p, input, gi, n0, n1, v, ldv, vStride));
                    backend.Each(16, !perChunk, new WinogradProducts(p, packedU, gi, tiles, v, ldv, vStride, m, backend.GemmIsa));
                    backend.Each(p.OutG, !perChunk, new WinogradOutput(p, m, gi, n0, n1, tiles, bias, output));
                }
            }
            finally
            {
                ArrayPool<float>.Shared.Return(v);
                ArrayPool<float>.Shared.Return(m);
            }
        }
    }

    /// <summary>Input channel c of group gi: its tiles of images [n0, n1) transformed into row c of every V_e.</summary>
    private readonly struct WinogradInput(ShiftedConvPlan p, float[] input, int gi, int n0, int n1, float[] v, int ldv, int vStride) : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int c)
        {
            var (rows, cols, perImage) = WinogradTiles(p);
            var plane = new SplitPlane(rows, cols);
            float[] buffer = ArrayPool<float>.Shared.Rent(plane.Length);
            try
            {
                buffer.AsSpan(0, plane.Length).Clear();
                Span<float> row = stackalloc float[plane.ScratchLength];
                row.Clear();
                // Image after image: each vector's spill past an image's tiles is overwritten by the next image's.
                for (int n = n0; n < n1; n++)
                {
                    plane.Fill(input, (n * p.InChannels + gi * p.InG + c) * p.In[1] * p.In[2], p.In[1], p.In[2], p.Pad[1], p.Pad[2], buffer, row);
                    TransformInput(plane, buffer, v, c * ldv + (n - n0) * perImage, vStride);
                }
            }
            finally { ArrayPool<float>.Shared.Return(buffer); }
        }
    }

    /// <summary>Tile position e of group gi: M_e [OutG, tiles] = U_e [OutG, InG] * V_e [InG, tiles].</summary>
    private readonly struct WinogradProducts(ShiftedConvPlan p, float[][] packedU, int gi, int tiles, float[] v, int ldv, int vStride,
        float[] m, GemmIsa isa) : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int e) =>
            Sgemm.MultiplyPacked(p.OutG, tiles, p.InG, 1f, packedU[gi * 16 + e], MatrixView.RowMajor(v, e * vStride, ldv), 0f,
                m, e * p.OutG * tiles, tiles, null, isa);
    }

    /// <summary>Output channel o of group gi: the output transform of its tiles for images [n0, n1), with the bias.</summary>
    private readonly struct WinogradOutput(ShiftedConvPlan p, float[] m, int gi, int n0, int n1, int tiles, float[]? bias, float[] output) : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int o)
        {
            var (rows, cols, perImage) = WinogradTiles(p);
            int channel = gi * p.OutG + o;
            for (int n = n0; n < n1; n++)
                TransformOutput(m, o * tiles + (n - n0) * perImage, p.OutG * tiles, rows, cols, bias is null ? null : bias[channel],
                    output, (n * p.OutChannels + channel) * p.Out[1] * p.Out[2], p.Out[1], p.Out[2]);
        }
    }

    /// <summary>
    /// One channel's zero-padded plane with its even and odd columns apart, row by row ([row][even | odd], each part
    /// Half long): tile tx reads columns 2 tx .. 2 tx + 3, i.e. even and odd entries tx and tx + 1, so a vector of
    /// eight tiles reads contiguous values. Rows 2 rows + 2, columns 2 cols + 2 (what the last tiles read); Half is
    /// rounded up past cols + 1 + 8 to whole vectors, so whole-vector reads stay inside and the slack holds zeros.
    /// </summary>
    private readonly struct SplitPlane(int rows, int cols)
    {
        public readonly int Rows = 2 * rows + 2, TileRows = rows, TileCols = cols, Half = (cols + 1 + 2 * 8 - 1) / 8 * 8;
        public int RowStride => 2 * Half;
        public int Length => Rows * RowStride;
        /// <summary>The length of the padded-row scratch <see cref="Fill"/> takes.</summary>
        public int ScratchLength => 2 * Half + 8;

        /// <summary>
        /// The rows of the plane at <paramref name="src"/> (h x w) with padding (ph, pw). The plane's other rows and the
        /// scratch row (zeros outside the copied columns) must be zero, and stay so: clear both once per geometry.
        /// </summary>
        public void Fill(float[] x, int src, int h, int w, int ph, int pw, float[] plane, Span<float> row)
        {
            int take = Math.Min(w, 2 * TileCols + 2 - pw);
            for (int r = 0; r < h && r + ph < Rows; r++)
            {
                x.AsSpan(src + r * w, take).CopyTo(row.Slice(pw, take));
                var dst = plane.AsSpan((r + ph) * RowStride, RowStride);
                // Even entries to [0, Half), odd to [Half, 2 Half), eight of each from sixteen padded columns.
                for (int k = 0; k < Half; k += 8)
                {
                    var lo = Vector256.Create(row.Slice(2 * k, 8));
                    var hi = Vector256.Create(row.Slice(2 * k + 8, 8));
                    // Shuffle pairs within 128-bit lanes (lo0 lo2 hi0 hi2 | lo4 lo6 hi4 hi6), then order the 64-bit pairs.
                    var even = Avx2.Permute4x64(Avx.Shuffle(lo, hi, 0b10_00_10_00).AsDouble(), 0b11_01_10_00).AsSingle();
                    var odd = Avx2.Permute4x64(Avx.Shuffle(lo, hi, 0b11_01_11_01).AsDouble(), 0b11_01_10_00).AsSingle();
                    even.CopyTo(dst.Slice(k, 8));
                    odd.CopyTo(dst.Slice(Half + k, 8));
                }
            }
        }
    }

    /// <summary>
    /// V[e][tile] = (Bt d B)[e] for every 2x2 output tile of one channel's split plane, eight tiles of a tile row at a
    /// time: tile (ty, tx) reads the 4x4 patch at (2 ty, 2 tx); its 16 values go to v[at + e * eStride + ty * cols + tx]
    /// (whole vectors: up to seven lanes past the row's last tile are written too).
    /// Bt d on the rows (0 - 2, 1 + 2, 2 - 1, 1 - 3), then the same on the columns: for even entries E and odd O of a
    /// transformed row, columns (E[tx], O[tx], E[tx + 1], O[tx + 1]) give E - E', O + E', E' - O, O - O'.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TransformInput(in SplitPlane plane, float[] p, float[] v, int at, int eStride)
    {
        int cols = plane.TileCols, half = plane.Half, stride = plane.RowStride;
        // The bounds of the unchecked loads and stores below: the last vector read of the plane, the last written of v.
        if (plane.Length > p.Length || at + 15 * eStride + (plane.TileRows - 1) * cols + (cols - 1) / 8 * 8 + 8 > v.Length)
            throw new InvalidOperationException("Winograd input transform: buffers too short.");
        for (int ty = 0; ty < plane.TileRows; ty++)
        {
            int top = 2 * ty * stride;
            for (int tx = 0; tx < cols; tx += Vector256<float>.Count)
            {
                // Rows transformed, for the even and odd entries at tx and tx + 1.
                var (e0, e1, e2, e3) = Rows(p, top + tx, stride);
                var (f0, f1, f2, f3) = Rows(p, top + tx + 1, stride);
                var (o0, o1, o2, o3) = Rows(p, top + half + tx, stride);
                var (q0, q1, q2, q3) = Rows(p, top + half + tx + 1, stride);
                int tile = at + ty * cols + tx;
                Columns(e0, f0, o0, q0, v, tile, 0, eStride);
                Columns(e1, f1, o1, q1, v, tile, 4, eStride);
                Columns(e2, f2, o2, q2, v, tile, 8, eStride);
                Columns(e3, f3, o3, q3, v, tile, 12, eStride);
            }
        }
    }

    /// <summary>Bt applied down four rows of eight entries from <paramref name="at"/>: (d0 - d2, d1 + d2, d2 - d1, d1 - d3).</summary>
    private static (Vector256<float>, Vector256<float>, Vector256<float>, Vector256<float>) Rows(float[] p, int at, int stride)
    {
        // Unchecked loads: the plane's rows and slack cover every read (SplitPlane), checked once by the caller.
        ref float r = ref MemoryMarshal.GetArrayDataReference(p);
        var d0 = Vector256.LoadUnsafe(ref r, (nuint)at);
        var d1 = Vector256.LoadUnsafe(ref r, (nuint)(at + stride));
        var d2 = Vector256.LoadUnsafe(ref r, (nuint)(at + 2 * stride));
        var d3 = Vector256.LoadUnsafe(ref r, (nuint)(at + 3 * stride));
        return (d0 - d2, d1 + d2, d2 - d1, d1 - d3);
    }

    /// <summary>Bt across the columns of one transformed row (E, E' = E shifted by one tile, O, O'): positions e0 .. e0 + 3.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Columns(Vector256<float> e, Vector256<float> e1, Vector256<float> o, Vector256<float> o1, float[] v, int tile, int e0,
        int eStride)
    {
        // Unchecked stores: the caller checked the last one (e0 = 12) against v's length.
        ref float r = ref MemoryMarshal.GetArrayDataReference(v);
        (e - e1).StoreUnsafe(ref r, (nuint)(tile + e0 * eStride));
        (o + e1).StoreUnsafe(ref r, (nuint)(tile + (e0 + 1) * eStride));
        (e1 - o).StoreUnsafe(ref r, (nuint)(tile + (e0 + 2) * eStride));
        (o - o1).StoreUnsafe(ref r, (nuint)(tile + (e0 + 3) * eStride));
    }

    /// <summary>
    /// y = At m A (+ bias) for every tile of one output plane, eight tiles of a tile row at a time: tile (ty, tx) reads
    /// m[at + e * eStride + ty * cols + tx] and writes the 2x2 block at (2 ty, 2 tx) of the h x w plane at
    /// <paramref name="dst"/>, cut at its edges. Down the rows s0 = m0 + m1 + m2, s1 = m1 - m2 - m3; then across.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TransformOutput(float[] m, int at, int eStride, int rows, int cols, float? bias, float[] y, int dst, int h, int w)
    {
        Span<float> left = stackalloc float[Vector256<float>.Count], right = stackalloc float[Vector256<float>.Count];
        // The bound of the unchecked loads below (m has eight values of slack past its last matrix).
        if (at + 15 * eStride + (rows - 1) * cols + (cols - 1) / 8 * 8 + 8 > m.Length)
            throw new InvalidOperationException("Winograd output transform: buffer too short.");
        for (int ty = 0; ty < rows; ty++)
            for (int tx = 0; tx < cols; tx += Vector256<float>.Count)
            {
                int len = Math.Min(Vector256<float>.Count, cols - tx), tile = at + ty * cols + tx;
                Vector256<float> M(int e) => Vector256.LoadUnsafe(ref MemoryMarshal.GetArrayDataReference(m), (nuint)(tile + e * eStride));
                var (a0, b0) = Down(M(0), M(4), M(8), M(12));
                var (a1, b1) = Down(M(1), M(5), M(9), M(13));
                var (a2, b2) = Down(M(2), M(6), M(10), M(14));
                var (a3, b3) = Down(M(3), M(7), M(11), M(15));
                int x0 = 2 * tx;
                for (int r = 0; r < 2 && 2 * ty + r < h; r++)
                {
                    var (s0, s1, s2, s3) = r == 0 ? (a0, a1, a2, a3) : (b0, b1, b2, b3);
                    (s0 + s1 + s2).CopyTo(left);
                    (s1 - s2 - s3).CopyTo(right);
                    int row = dst + (2 * ty + r) * w;
                    for (int i = 0; i < len; i++)
                    {
                        int x = x0 + 2 * i;
                        y[row + x] = bias is { } b ? left[i] + b : left[i];
                        if (x + 1 < w) y[row + x + 1] = bias is { } c ? right[i] + c : right[i];
                    }
                }
            }
    }

    /// <summary>At down one column of m: (m0 + m1 + m2, m1 - m2 - m3).</summary>
    private static (Vector256<float>, Vector256<float>) Down(Vector256<float> m0, Vector256<float> m1, Vector256<float> m2, Vector256<float> m3) =>
        (m0 + m1 + m2, m1 - m2 - m3);
}
