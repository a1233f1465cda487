using System.Buffers;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using MLNet.ConvNet.Backends.Cpu.Kernels;

namespace MLNet.ConvNet.Backends.Cpu;

// The filter gradient of a Winograd-shaped correlation (CpuBackend.Winograd.cs) through the same F(2x2, 3x3) tiles.
// The forward pass computes each 2x2 output block as Y = At [ (G g Gt) .* (Bt d B) ] A, linear in the filter g, so
// by the chain rule a block's share of the filter gradient is
//
//     dg = Gt [ (A dY At) .* (Bt d B) ] G          (dY the block's 2x2 output gradient, d its 4x4 input patch)
//
// and, G being the same for every block, the sum over blocks and images can be taken before it:
// M_e[o, c] = sum over tiles of DY_e[o, tile] * V_e[c, tile], 16 GEMMs with the tiles as their long k, then
// dW[o, c] = Gt M[o, c] G once per call. V is the forward pass's input transform, unchanged; DY = A dY At expands each
// 2x2 block of dy to 16 values with additions only. 16 products per block and channel pair instead of 36.
public sealed partial class CpuBackend
{
    /// <summary>
    /// dW of <paramref name="p"/>'s correlation (filter [Out, InG, 3, 3], taps reversed per the plan) from the input
    /// <paramref name="input"/> and the output gradient <paramref name="dy"/>. Images are cut into the filter gradient's
    /// fixed chunks (<see cref="FilterChunks"/>), each summed image after image into its own partial M, and the partials
    /// added in chunk order in double, so the result does not depend on the threads.
    /// </summary>
    private void WinogradFilterGradient(ShiftedConvPlan p, float[] input, float[] dy, float[] dw)
    {
        int size = 16 * p.OutChannels * p.InG;
        int chunks = Math.Min(p.N, FilterChunks);
        bool perChunk = chunks >= MaxThreads;
        float[][] partials = RentAll(chunks, size);
        try
        {
            Each(chunks, perChunk, new WinogradFilterChunk(this, p, perChunk, chunks, partials, input, dy));
            For(p.OutChannels, new WinogradFilterSum(p, chunks, partials, dw));
        }
        finally { ReturnAll(partials, chunks); }
    }

    /// <summary>
    /// Images per step of a filter-gradient chunk: V (16 x InG x tiles) and DY (16 x OutG x tiles) together within
    /// <see cref="WinogradChunkFloats"/>, so the GEMMs read both from the second-level cache.
    /// </summary>
    internal static int WinogradFilterStepImages(int inChannelsPerGroup, int outChannelsPerGroup, int tilesPerImage, int images)
    {
        int stepTiles = Math.Max(MinWinogradChunkTiles, WinogradChunkFloats / (16 * (inChannelsPerGroup + outChannelsPerGroup)));
        return Math.Clamp(stepTiles / Math.Max(1, tilesPerImage), 1, images);
    }

    /// <summary>Chunk j of the images: per step of images and per group, V and DY, then part_j[e] (+)= DY_e V_eᵀ.</summary>
    private readonly struct WinogradFilterChunk(CpuBackend backend, ShiftedConvPlan p, bool perChunk, int chunks, float[][] partials,
        float[] input, float[] dy) : IParallelBody
    {
        public void Run(int j)
        {
            int first = p.N * j / chunks, last = p.N * (j + 1) / chunks;
            int perImage = WinogradTiles(p).Count;
            int step = WinogradFilterStepImages(p.InG, p.OutG, perImage, last - first);
            int maxTiles = step * perImage;
            // Rows with eight values of slack, as in the forward pass: the transforms write whole vectors.
            int ld = maxTiles + Vector256<float>.Count, vStride = p.InG * ld, dyStride = p.OutG * ld;
            float[] v = ArrayPool<float>.Shared.Rent(16 * vStride);
            float[] t = ArrayPool<float>.Shared.Rent(16 * dyStride);
            float[] part = partials[j];
            CpuBackend? inner = perChunk ? null : backend;
            try
            {
                for (int n0 = first; n0 < last; n0 += step)
                {
                    int n1 = Math.Min(last, n0 + step), tiles = (n1 - n0) * perImage;
                    for (int gi = 0; gi < p.Groups; gi++)
                    {
                        backend.Each(p.InG, !perChunk, new WinogradInput(p, input, gi, n0, n1, v, ld, vStride));
                        backend.Each(p.OutG, !perChunk, new WinogradGradientInput(p, dy, gi, n0, n1, t, ld, dyStride));
                        backend.Each(16, !perChunk, new WinogradFilterProducts(p, gi, tiles, v, t, ld, vStride, dyStride,
                            n0 == first ? 0f : 1f, part, backend.GemmIsa));
                    }
                }
            }
            finally
            {
                ArrayPool<float>.Shared.Return(v);
                ArrayPool<float>.Shared.Return(t);
            }
        }
    }

    /// <summary>Output channel o of group gi: A dY At of its 2x2 blocks for images [n0, n1) into row o of every DY_e.</summary>
    private readonly struct WinogradGradientInput(ShiftedConvPlan p, float[] dy, int gi, int n0, int n1, float[] t, int ld, int eStride) : IParallelBody
    {
        public void Run(int o)
        {
            var (rows, cols, perImage) = WinogradTiles(p);
            var plane = new SplitPlane(rows, cols);
            float[] buffer = ArrayPool<float>.Shared.Rent(plane.Length);
            try
            {
                // dy needs no padding: a block cut at an odd edge reads the plane's zeros (the forward pass dropped
                // those outputs, so their gradient is zero).
                buffer.AsSpan(0, plane.Length).Clear();
                Span<float> row = stackalloc float[plane.ScratchLength];
                row.Clear();
                int h = p.Out[1], w = p.Out[2];
                for (int n = n0; n < n1; n++)
                {
                    plane.Fill(dy, (n * p.OutChannels + gi * p.OutG + o) * h * w, h, w, 0, 0, buffer, row);
                    TransformGradient(plane, buffer, t, o * ld + (n - n0) * perImage, eStride);
                }
            }
            finally { ArrayPool<float>.Shared.Return(buffer); }
        }
    }

    /// <summary>Tile position e of group gi: part[e, group's o, c] (+)= DY_e [OutG, tiles] * V_eᵀ [tiles, InG].</summary>
    private readonly struct WinogradFilterProducts(ShiftedConvPlan p, int gi, int tiles, float[] v, float[] t, int ld, int vStride,
        int dyStride, float beta, float[] part, GemmIsa isa) : IParallelBody
    {
        public void Run(int e) =>
            Sgemm.Multiply(p.OutG, p.InG, tiles, 1f, MatrixView.RowMajor(t, e * dyStride, ld), MatrixView.Transposed(v, e * vStride, ld),
                beta, part, (e * p.OutChannels + gi * p.OutG) * p.InG, p.InG, null, isa);
    }

    /// <summary>
    /// Output channel o: for each input channel c, M = sum over chunks (in order, in double) of part[e, o, c], then
    /// dW[o, c] = Gt M G in double (the 4x4 sums back to 3x3 taps), taps reversed where the plan reverses them.
    /// </summary>
    private readonly struct WinogradFilterSum(ShiftedConvPlan p, int chunks, float[][] partials, float[] dw) : IParallelBody
    {
        public void Run(int o)
        {
            int stride = p.OutChannels * p.InG;
            Span<double> m = stackalloc double[16];
            Span<double> gm = stackalloc double[12];
            for (int c = 0; c < p.InG; c++)
            {
                int at = o * p.InG + c;
                for (int e = 0; e < 16; e++)
                {
                    double sum = 0;
                    for (int j = 0; j < chunks; j++) sum += partials[j][e * stride + at];
                    m[e] = sum;
                }
                // Gt M: 3 rows of 4 from the 4 rows of M (G's rows: 1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1).
                for (int col = 0; col < 4; col++)
                {
                    double m0 = m[col], m1 = m[4 + col], m2 = m[8 + col], m3 = m[12 + col];
                    gm[col] = m0 + 0.5 * (m1 + m2);
                    gm[4 + col] = 0.5 * (m1 - m2);
                    gm[8 + col] = 0.5 * (m1 + m2) + m3;
                }
                // (Gt M) G: each row of 4 to 3 taps.
                int dst = at * 9;
                for (int i = 0; i < 3; i++)
                {
                    double r0 = gm[i * 4], r1 = gm[i * 4 + 1], r2 = gm[i * 4 + 2], r3 = gm[i * 4 + 3];
                    double t0 = r0 + 0.5 * (r1 + r2), t1 = 0.5 * (r1 - r2), t2 = 0.5 * (r1 + r2) + r3;
                    // Correlation tap (i, j) is w[i, j], or w[2 - i, 2 - j] when the plan reverses the taps.
                    if (p.Reverse)
                    {
                        dw[dst + (2 - i) * 3 + 2] = (float)t0;
                        dw[dst + (2 - i) * 3 + 1] = (float)t1;
                        dw[dst + (2 - i) * 3 + 0] = (float)t2;
                    }
                    else
                    {
                        dw[dst + i * 3 + 0] = (float)t0;
                        dw[dst + i * 3 + 1] = (float)t1;
                        dw[dst + i * 3 + 2] = (float)t2;
                    }
                }
            }
        }
    }

    /// <summary>
    /// DY[e][tile] = (A dY At)[e] for every 2x2 block of one output-gradient plane (split into even and odd columns),
    /// eight blocks of a block row at a time, written like <see cref="TransformInput"/>'s V (whole vectors). With the
    /// block's rows (E0, O0) and (E1, O1) (even and odd columns), A on the rows gives (row0, row0 + row1, row0 - row1,
    /// -row1), and the same on the columns of each: (E, E + O, E - O, -O).
    /// </summary>
    private static void TransformGradient(in SplitPlane plane, float[] p, float[] t, int at, int eStride)
    {
        int cols = plane.TileCols, half = plane.Half, stride = plane.RowStride;
        if (plane.Length > p.Length || at + 15 * eStride + (plane.TileRows - 1) * cols + (cols - 1) / 8 * 8 + 8 > t.Length)
            throw new InvalidOperationException("Winograd gradient transform: buffers too short.");
        ref float src = ref MemoryMarshal.GetArrayDataReference(p);
        for (int ty = 0; ty < plane.TileRows; ty++)
        {
            int top = 2 * ty * stride;
            for (int tx = 0; tx < cols; tx += Vector256<float>.Count)
            {
                var e0 = Vector256.LoadUnsafe(ref src, (nuint)(top + tx));
                var o0 = Vector256.LoadUnsafe(ref src, (nuint)(top + half + tx));
                var e1 = Vector256.LoadUnsafe(ref src, (nuint)(top + stride + tx));
                var o1 = Vector256.LoadUnsafe(ref src, (nuint)(top + stride + half + tx));
                int tile = at + ty * cols + tx;
                GradientColumns(e0, o0, t, tile, 0, eStride);
                GradientColumns(e0 + e1, o0 + o1, t, tile, 4, eStride);
                GradientColumns(e0 - e1, o0 - o1, t, tile, 8, eStride);
                GradientColumns(-e1, -o1, t, tile, 12, eStride);
            }
        }
    }

    /// <summary>A across one transformed row (even entries E, odd O): positions e0 .. e0 + 3 get E, E + O, E - O, -O.</summary>
    private static void GradientColumns(Vector256<float> e, Vector256<float> o, float[] t, int tile, int e0, int eStride)
    {
        // Unchecked stores: the caller checked the last one (e0 = 12) against t's length.
        ref float r = ref MemoryMarshal.GetArrayDataReference(t);
        e.StoreUnsafe(ref r, (nuint)(tile + e0 * eStride));
        (e + o).StoreUnsafe(ref r, (nuint)(tile + (e0 + 1) * eStride));
        (e - o).StoreUnsafe(ref r, (nuint)(tile + (e0 + 2) * eStride));
        (-o).StoreUnsafe(ref r, (nuint)(tile + (e0 + 3) * eStride));
    }
}
