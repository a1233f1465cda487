using MLNet.ConvNet.Backends;
using MLNet.ConvNet.Backends.Reference;
using MLNet.ConvNet.Backends.Cpu;
using MLNet.ConvNet.Backends.Cpu.Kernels;
using MLNet.ConvNet.Ops;
using MLNet.ConvNet.Tests.TestKit;
using Xunit;

namespace MLNet.ConvNet.Tests;

/// <summary>
/// The fast CPU kernels (Kernels/Sgemm, Kernels/DotGemm, the shifted-GEMM convolutions, 2x2 max pooling)
/// against the readable reference path (<see cref="ReferenceBackend"/>) and the tests' own float64 loops, on random
/// shapes with edge sizes (0, 1, odd, not a multiple of any vector width), on every micro-kernel this machine
/// runs, and across thread counts (results must be bit-identical).
/// </summary>
public class FastKernelTests
{
    private static readonly IBackend Reference = new ReferenceBackend();

    /// <summary>Every GEMM micro-kernel the machine can run; the scalar one runs everywhere.</summary>
    private static GemmIsa[] AvailableIsas() =>
        [.. new[] { GemmIsa.Scalar, GemmIsa.Vector256, GemmIsa.Vector512 }.Where(isa => isa <= Sgemm.Supported)];

    /// <summary>The micro-kernels as ints (GemmIsa is internal, a public test method cannot take it).</summary>
    public static TheoryData<int> Isas => new(AvailableIsas().Select(isa => (int)isa));

    [Fact]
    public void IsaVariableCapsTheMicroKernel()
    {
        // CONVNET_CPU_ISA lowers the machine's kernel (to run the AVX2 path on an AVX-512 machine), never raises it.
        Assert.Equal(GemmIsa.Vector512, Sgemm.Cap(GemmIsa.Vector512, null));
        Assert.Equal(GemmIsa.Vector512, Sgemm.Cap(GemmIsa.Vector512, ""));
        Assert.Equal(GemmIsa.Vector256, Sgemm.Cap(GemmIsa.Vector512, "avx2"));
        Assert.Equal(GemmIsa.Vector256, Sgemm.Cap(GemmIsa.Vector512, " AVX2 "));
        Assert.Equal(GemmIsa.Scalar, Sgemm.Cap(GemmIsa.Vector256, "scalar"));
        Assert.Equal(GemmIsa.Vector256, Sgemm.Cap(GemmIsa.Vector256, "avx512"));
        var e = Assert.Throws<InvalidOperationException>(() => Sgemm.Cap(GemmIsa.Vector512, "sse"));
        Assert.Contains("CONVNET_CPU_ISA", e.Message);
    }

    [Fact]
    public void BatchNormInferenceIsBitIdenticalToItsScalarDoubleFormula()
    {
        // The kernel runs eight lanes of doubles and a scalar tail; every element must carry the scalar formula's bits.
        var rng = new Random(31);
        var backend = new CpuBackend(2);
        foreach (int inner in new[] { 1, 7, 8, 9, 16, 17, 49, 196 })
        {
            int n = 3, c = 5;
            float[] x = TestData.Uniform(rng, n * c * inner), g = TestData.Uniform(rng, c), b = TestData.Uniform(rng, c),
                mu = TestData.Uniform(rng, c), va = TestData.Uniform(rng, c).Select(v => 0.5f + Math.Abs(v)).ToArray();
            var y = backend.Allocate(new Shape(n, c, inner));
            backend.BatchNormForwardInference(On(backend, x, new Shape(n, c, inner)), On(backend, g, new Shape(c)), On(backend, b, new Shape(c)),
                On(backend, mu, new Shape(c)), On(backend, va, new Shape(c)), 1e-5f, y);
            float[] got = y.ToHost();
            for (int i = 0; i < got.Length; i++)
            {
                int ch = i / inner % c;
                double gain = g[ch] / Math.Sqrt((double)va[ch] + 1e-5f);
                float want = (float)(gain * (x[i] - (double)mu[ch]) + b[ch]);
                Assert.True(BitConverter.SingleToInt32Bits(want) == BitConverter.SingleToInt32Bits(got[i]), $"inner {inner}, element {i}: {got[i]} vs {want}");
            }
        }
    }

    private static Tensor On(IBackend backend, float[] data, Shape shape) => Tensor.FromHost(data, shape, backend);

    // ---------------- GEMM ----------------

    /// <summary>C = alpha op(A) op(B) + beta C in float64, straight from the definition.</summary>
    private static double[] NaiveGemm(int m, int n, int k, float[] a, bool ta, float[] b, bool tb, float[] c, float alpha, float beta)
    {
        var r = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int p = 0; p < k; p++)
                    s += (double)(ta ? a[p * m + i] : a[i * k + p]) * (tb ? b[j * k + p] : b[p * n + j]);
                r[i * n + j] = alpha * s + (beta == 0 ? 0 : beta * (double)c[i * n + j]);
            }
        return r;
    }

    private static readonly int[] EdgeSizes = [0, 1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 63, 64, 65, 70];

    [Theory]
    [MemberData(nameof(Isas))]
    public void GemmMatchesFloat64OnEdgeShapes(int kernel)
    {
        var isa = (GemmIsa)kernel;
        var fast = new CpuBackend { GemmIsa = isa };
        var rng = new Random(7 + (int)isa);
        for (int trial = 0; trial < 120; trial++)
        {
            int m = EdgeSizes[rng.Next(EdgeSizes.Length)], n = EdgeSizes[rng.Next(EdgeSizes.Length)], k = EdgeSizes[rng.Next(EdgeSizes.Length)];
            bool ta = rng.Next(2) == 1, tb = rng.Next(2) == 1;
            float alpha = trial % 3 == 0 ? 1f : 0.75f, beta = trial % 4 == 0 ? 0.5f : 0f;
            CheckGemm(fast, rng, m, n, k, ta, tb, alpha, beta);
        }
    }

    [Theory]
    [MemberData(nameof(Isas))]
    public void GemmCrossesEveryBlockBoundary(int kernel)
    {
        var isa = (GemmIsa)kernel;
        // k > KC (two k-blocks, the second partial), n > NC (two column blocks), m above the parallel threshold.
        var rng = new Random(11);
        CheckGemm(new CpuBackend { GemmIsa = isa }, rng, 37, Sgemm.NC + 29, Sgemm.KC + 45, false, false, 1f, 0.5f);
        CheckGemm(new CpuBackend { GemmIsa = isa }, rng, 70, 65, 2 * Sgemm.KC + 1, true, true, 1f, 0f);
    }

    /// <summary>
    /// A B given by row offsets (a shifted convolution's rows, read in place by the vector kernels for full slivers, the
    /// edge sliver packed) gives exactly the product of the same rows copied into a row-major B (packed): the same
    /// operations per C element. Shapes cross the edge sliver, n below one sliver, two k-blocks and two column blocks,
    /// at one and two threads.
    /// </summary>
    [Theory]
    [MemberData(nameof(Isas))]
    public void RowOffsetBReadInPlaceEqualsThePackedProduct(int kernel)
    {
        var isa = (GemmIsa)kernel;
        var rng = new Random(31);
        foreach (var (m, n, k) in new[] { (7, 5, 9), (13, 16, 3), (6, 33, 40), (9, 222, 288), (17, Sgemm.NC + 40, Sgemm.KC + 20) })
        {
            foreach (int threads in new[] { 1, 2 })
            {
                var backend = new CpuBackend(threads) { GemmIsa = isa };
                // Rows of B are slices of one array at scattered offsets, as a padded image's shifted rows are.
                var offsets = Enumerable.Range(0, k).Select(_ => rng.Next(0, 50)).ToArray();
                int shift = 3;
                float[] source = TestData.Uniform(rng, shift + offsets.Max() + n + 7);
                float[] dense = new float[k * n];
                for (int p = 0; p < k; p++) source.AsSpan(shift + offsets[p], n).CopyTo(dense.AsSpan(p * n, n));
                float[] a = TestData.Uniform(rng, m * k);
                float[] packedA = new float[Sgemm.PackedASize(m, k, isa)];
                Sgemm.PackA(m, k, MatrixView.RowMajor(a, 0, k), packedA, isa, null);
                float[] c0 = TestData.Uniform(rng, m * n), inPlace = (float[])c0.Clone(), packed = (float[])c0.Clone();
                Sgemm.MultiplyPacked(m, n, k, 0.75f, packedA, MatrixView.Rows(source, shift, offsets), 0.5f, inPlace, 0, n, backend, isa);
                Sgemm.MultiplyPacked(m, n, k, 0.75f, packedA, MatrixView.RowMajor(dense, 0, n), 0.5f, packed, 0, n, backend, isa);
                Assert.Equal(packed, inPlace);
                GradCheck.AssertClose(inPlace, NaiveGemm(m, n, k, a, false, dense, false, c0, 0.75f, 0.5f), $"rows {m}x{n}x{k}", relTol: 1e-5);
            }
        }
    }

    /// <summary>
    /// A transposed B (columns contiguous: packed by 8 x 8 transposes, the last k and columns one by one) gives exactly the
    /// product of the same matrix stored row-major: packing only moves floats. Shapes cross 8-column and 8-k edges, a
    /// partial sliver, two k-blocks and two column blocks, at one and two threads.
    /// </summary>
    [Theory]
    [MemberData(nameof(Isas))]
    public void TransposedBPacksToTheSameBitsAsRowMajor(int kernel)
    {
        var isa = (GemmIsa)kernel;
        var rng = new Random(41);
        foreach (var (m, n, k) in new[] { (7, 5, 9), (13, 16, 8), (6, 33, 40), (9, 70, 65), (64, 32, 98), (17, Sgemm.NC + 40, Sgemm.KC + 21) })
            foreach (int threads in new[] { 1, 2 })
            {
                var backend = new CpuBackend(threads) { GemmIsa = isa };
                float[] bt = TestData.Uniform(rng, n * k), b = new float[k * n]; // bt is B transposed: [n, k]
                for (int p = 0; p < k; p++)
                    for (int j = 0; j < n; j++) b[p * n + j] = bt[j * k + p];
                float[] a = TestData.Uniform(rng, m * k), c0 = TestData.Uniform(rng, m * n);
                float[] fromT = (float[])c0.Clone(), fromRows = (float[])c0.Clone();
                Sgemm.Multiply(m, n, k, 0.75f, MatrixView.RowMajor(a, 0, k), MatrixView.Transposed(bt, 0, k), 0.5f, fromT, 0, n, backend, isa);
                Sgemm.Multiply(m, n, k, 0.75f, MatrixView.RowMajor(a, 0, k), MatrixView.RowMajor(b, 0, n), 0.5f, fromRows, 0, n, backend, isa);
                Assert.Equal(fromRows, fromT);
                GradCheck.AssertClose(fromT, NaiveGemm(m, n, k, a, false, b, false, c0, 0.75f, 0.5f), $"transposed B {m}x{n}x{k}", relTol: 1e-5);
            }
    }

    private static void CheckGemm(CpuBackend fast, Random rng, int m, int n, int k, bool ta, bool tb, float alpha, float beta)
    {
        float[] a = TestData.Uniform(rng, m * k), b = TestData.Uniform(rng, k * n), c0 = TestData.Uniform(rng, m * n);
        // With beta = 0 whatever C held must not leak into the result, NaN included.
        if (beta == 0) Array.Fill(c0, float.NaN);
        if (m == 0 || k == 0 || n == 0)
        {
            // Zero-sized operands cannot be expressed as [rows, cols] tensors of the kernel contract when the
            // first dimension is 0; call the kernel directly.
            var cz = (float[])c0.Clone();
            Sgemm.Multiply(m, n, k, alpha, ta ? MatrixView.Transposed(a, 0, m) : MatrixView.RowMajor(a, 0, k),
                tb ? MatrixView.Transposed(b, 0, k) : MatrixView.RowMajor(b, 0, n), beta, cz, 0, n, fast, fast.GemmIsa);
            GradCheck.AssertClose(cz, NaiveGemm(m, n, k, a, ta, b, tb, c0, alpha, beta), $"gemm {m}x{n}x{k}", relTol: 1e-5);
            return;
        }
        var A = On(fast, a, ta ? new Shape(k, m) : new Shape(m, k));
        var B = On(fast, b, tb ? new Shape(n, k) : new Shape(k, n));
        var C = On(fast, (float[])c0.Clone(), new Shape(m, n));
        fast.MatMul(A, ta, B, tb, C, alpha, beta);
        // Sums of at most ~550 products of numbers in [-1, 1]: float32 error grows like sqrt(k) ulps of the
        // partial sums; 1e-5 of the largest output (plus 1e-6) holds with a wide margin and still catches any
        // misplaced or missing term (each is ~1e-1 of the scale).
        GradCheck.AssertClose(C.ToHost(), NaiveGemm(m, n, k, a, ta, b, tb, c0, alpha, beta), $"gemm {m}x{n}x{k} ta={ta} tb={tb} {fast.GemmIsa}", relTol: 1e-5);

        var Cref = On(Reference, (float[])c0.Clone(), new Shape(m, n));
        Reference.MatMul(On(Reference, a, A.Shape), ta, On(Reference, b, B.Shape), tb, Cref, alpha, beta);
        GradCheck.AssertClose(C.ToHost(), TestData.ToDouble(Cref), $"gemm vs reference {m}x{n}x{k}", relTol: 1e-5);
    }

    [Fact]
    public void GemmIsBitIdenticalAcrossThreadsAndMicroKernels()
    {
        // Every element is the same chain of fused multiply-adds whatever the tile or thread split.
        var rng = new Random(5);
        int m = 67, n = 301, k = 290;
        float[] a = TestData.Uniform(rng, m * k), b = TestData.Uniform(rng, k * n);
        float[]? first = null;
        foreach (var isa in AvailableIsas())
            foreach (int threads in new[] { 1, 2, 3, 8 })
            {
                var be = new CpuBackend(threads) { GemmIsa = isa };
                var C = be.Allocate(new Shape(m, n));
                be.MatMul(On(be, a, new Shape(m, k)), false, On(be, b, new Shape(k, n)), false, C);
                var got = C.ToHost();
                if (first is null) first = got;
                else Assert.True(first.AsSpan().SequenceEqual(got), $"{isa} with {threads} threads differs");
            }
    }

    [Theory]
    [MemberData(nameof(Isas))]
    public void PackingARowMajorOperandPutsEveryFloatInItsSlot(int kernel)
    {
        // The 8 x 8 transposes (full slivers of rows contiguous in k) and the scalar copies (edge slivers, k tails)
        // against the layout's definition: packed[mPad * pc + s * MR * kc + p * MR + r] = A[s * MR + r, pc + p], 0 past m.
        var isa = (GemmIsa)kernel;
        int mr = Sgemm.Tile(isa).Mr;
        var rng = new Random(21);
        foreach (int m in new[] { 1, 5, 6, 8, 12, 13, 16, 64 })
            foreach (int k in new[] { 1, 7, 8, 9, 15, 16, 17, 222, Sgemm.KC + 9 })
            {
                int lda = k + 3; // a leading dimension wider than k, as for a view into a larger matrix
                float[] a = TestData.Uniform(rng, m * lda + 5);
                float[] packed = new float[Sgemm.PackedASize(m, k, isa) + 8];
                Array.Fill(packed, float.NaN);
                Sgemm.PackA(m, k, MatrixView.RowMajor(a, 5, lda), packed, isa, null);
                int mPad = (m + mr - 1) / mr * mr;
                for (int pc = 0; pc < k; pc += Sgemm.KC)
                {
                    int kc = Math.Min(Sgemm.KC, k - pc);
                    for (int i = 0; i < mPad; i++)
                        for (int p = 0; p < kc; p++)
                        {
                            float want = i < m ? a[5 + i * lda + pc + p] : 0f;
                            float got = packed[mPad * pc + i / mr * mr * kc + p * mr + i % mr];
                            Assert.True(want.Equals(got), $"{isa} m={m} k={k}: A[{i}, {pc + p}] packed as {got}, want {want}");
                        }
                }
                Assert.All(packed[Sgemm.PackedASize(m, k, isa)..], v => Assert.True(float.IsNaN(v), $"{isa} m={m} k={k}: wrote past the packed operand"));
            }
    }

    [Fact]
    public void Transpose8x8MovesEveryFloat()
    {
        Assert.SkipUnless(Transposes.Vectorized, "the shuffle transpose needs AVX");
        var rng = new Random(4);
        float[] src = TestData.Uniform(rng, 8 * 11), dst = new float[8 * 13];
        Transposes.Block8x8(ref src[0], ref src[11], ref src[22], ref src[33], ref src[44], ref src[55], ref src[66], ref src[77], ref dst[0], 13);
        for (int i = 0; i < 8; i++)
            for (int j = 0; j < 8; j++)
                Assert.Equal(src[i * 11 + j], dst[j * 13 + i]);
    }

    /// <summary>
    /// Stride-1 convolutions whose filter gradient takes the per-tap GEMM path (8 or more input channels per group):
    /// group widths that are and are not multiples of the micro-kernel's NR, planes whose size is not a multiple of 8,
    /// one image (the taps spread over the threads) and several (images spread over the threads).
    /// </summary>
    public static TheoryData<int, int, int, int, int, int> TapGradientCases => new()
    {
        { 4, 32, 64, 14, 3, 1 },   // cnn2bn's second convolution, batch cut to 4
        { 1, 32, 64, 14, 3, 1 },
        { 3, 12, 10, 13, 3, 1 },   // 12 channels: part of one sliver
        { 2, 40, 16, 9, 3, 1 },    // 40 channels: slivers of 16 and 32 with a partial one
        { 2, 48, 24, 7, 5, 2 },    // two groups of 24
        { 1, 16, 8, 11, 1, 1 },    // 1x1
        // Fewer than 8 channels per group: one GEMM over the (channel, tap) columns when there are at least 16 ...
        { 3, 6, 16, 14, 5, 1 },    // LeNet-5's second convolution (150 columns: slivers of 16 or 32 and a partial one)
        { 2, 1, 6, 28, 5, 1 },     // LeNet-5's first (25 columns)
        { 2, 2, 8, 9, 3, 1 },      // 18 columns, just above the threshold
        { 2, 4, 6, 10, 3, 2 },     // two groups of 2 channels, 18 columns each
        // ... and dot products below that.
        { 2, 1, 32, 28, 3, 1 },    // cnn2bn's first (9 columns)
        // More images than the 8 chunks of the sum, so a chunk adds a second image onto its first (each path).
        { 11, 6, 16, 14, 5, 1 },
        { 11, 32, 16, 8, 3, 1 },
        { 11, 1, 8, 10, 3, 1 },
    };

    [Theory]
    [MemberData(nameof(TapGradientCases))]
    public void TheShiftedFilterGradientMatchesTheReferenceOnEveryKernelAndThreadCount(int n, int c, int o, int size, int kernel, int groups)
    {
        var cs = new ConvCase(n, c, o, groups, [size, size], [kernel, kernel], [1, 1], [kernel / 2, kernel / 2], [1, 1], ConvolutionMode.CrossCorrelation);
        var rng = new Random(n * 1000 + c);
        float[] x = TestData.Uniform(rng, cs.XShape.Length), w = TestData.Uniform(rng, cs.WShape.Length),
            b = TestData.Uniform(rng, cs.O), dy = TestData.Uniform(rng, cs.YShape.Length);
        var want = RunConv(Reference, cs, x, w, b, dy);
        foreach (var isa in AvailableIsas())
        {
            var one = RunConv(new CpuBackend(1) { GemmIsa = isa }, cs, x, w, b, dy);
            GradCheck.AssertClose(one.dw, TestData.ToDouble(want.dw), $"{cs} dw {isa}", relTol: 2e-5);
            foreach (int threads in new[] { 2, 3 })
                Assert.Equal(one.dw, RunConv(new CpuBackend(threads) { GemmIsa = isa }, cs, x, w, b, dy).dw);
        }
    }

    /// <summary>
    /// Packing column runs as GEMM slivers puts every float in its slot (transposed eight at a time, the rest and the
    /// last partial group lane by lane) and writes nothing past the real columns, for each micro-kernel's NR.
    /// </summary>
    [Theory]
    [MemberData(nameof(Isas))]
    public void PackingColumnsPutsEveryFloatInItsSlot(int kernel)
    {
        int nr = Sgemm.Tile((GemmIsa)kernel).Nr;
        var rng = new Random(5);
        foreach (var (cols, k) in new[] { (1, 1), (8, 8), (9, 13), (25, 892), (150, 136), (40, 7) })
        {
            var offsets = Enumerable.Range(0, cols).Select(_ => rng.Next(0, 40)).ToArray();
            float[] src = TestData.Uniform(rng, 5 + 40 + k);
            int slivers = (cols + nr - 1) / nr;
            const int at = 3; // packed B of a later group starts inside the array
            float[] packed = new float[at + slivers * k * nr];
            Array.Fill(packed, float.NaN);
            Sgemm.PackColumns(src, 5, offsets, k, nr, packed, at);
            Assert.All(packed.Take(at), v => Assert.True(float.IsNaN(v), "written before packedStart"));
            for (int c = 0; c < slivers * nr; c++)
                for (int q = 0; q < k; q++)
                {
                    float got = packed[at + ((c / nr) * k + q) * nr + c % nr];
                    if (c < cols) Assert.Equal(src[5 + offsets[c] + q], got);
                    else Assert.True(float.IsNaN(got), $"lane {c} past the {cols} columns was written");
                }
        }
    }

    [Fact]
    public void DotGemmMatchesFloat64OnEveryTailLength()
    {
        var rng = new Random(3);
        foreach (bool vector in new[] { false, true })
            for (int k = 0; k <= 40; k++)
            {
                int m = rng.Next(1, 10), n = rng.Next(1, 10);
                float[] a = TestData.Uniform(rng, m * k), b = TestData.Uniform(rng, n * k + 3);
                int[] rows = Enumerable.Range(0, n).Select(j => j * k).ToArray();
                var c = TestData.Uniform(rng, m * n);
                var want = new double[m * n];
                for (int i = 0; i < m; i++)
                    for (int j = 0; j < n; j++)
                    {
                        double s = c[i * n + j];
                        for (int p = 0; p < k; p++) s += (double)a[i * k + p] * b[3 + j * k + p];
                        want[i * n + j] = s;
                    }
                DotGemm.Multiply(m, n, k, a, 0, k, b, 3, rows, 0, 1f, c, 0, n, null, vector);
                // At most 40 products in [-1, 1] plus C: 1e-5 of the scale as for the GEMM.
                GradCheck.AssertClose(c, want, $"dot gemm {m}x{n}x{k} vector={vector}", relTol: 1e-5);
            }
    }

    [Fact]
    public void DotGemmRowAloneHasTheBitsOfTheSameRowInABlock()
    {
        // A dense layer scoring one sample takes the one-row kernel; a batch takes the 4 x 4 one. A sample's scores must
        // not depend on the batch it came in, so both must add in the same order.
        var rng = new Random(4);
        for (int k = 1; k <= 50; k += rng.Next(1, 4))
        {
            int n = rng.Next(1, 11);
            float[] a = TestData.Uniform(rng, 4 * k), b = TestData.Uniform(rng, n * k);
            a[rng.Next(a.Length)] *= 1e6f; // large and small terms: a different order would show in the last bits
            var block = new float[4 * n];
            DotGemm.Multiply(4, n, k, a, 0, k, b, 0, null, k, 0f, block, 0, n, null, vector: true);
            for (int i = 0; i < 4; i++)
            {
                var alone = new float[n];
                DotGemm.Multiply(1, n, k, a, i * k, k, b, 0, null, k, 0f, alone, 0, n, null, vector: true);
                Assert.Equal(block.AsSpan(i * n, n).ToArray().Select(BitConverter.SingleToInt32Bits), alone.Select(BitConverter.SingleToInt32Bits));
            }
        }
    }

    [Fact]
    public void DotGemmNarrowBlocksHaveTheBitsOfWideOnes()
    {
        // Machines without AVX-512 compute a 4 x 4 block of dots as two 4 x 2 passes (16 vector registers); the results
        // must not depend on the machine, so each dot must add in the same order either way, tails and edges included.
        var rng = new Random(9);
        for (int k = 8; k <= 90; k += rng.Next(1, 6))
        {
            int m = rng.Next(2, 10), n = rng.Next(1, 11);
            float[] a = TestData.Uniform(rng, m * k), b = TestData.Uniform(rng, n * k);
            a[rng.Next(a.Length)] *= 1e6f; // large and small terms: a different order would show in the last bits
            b[rng.Next(b.Length)] = float.PositiveInfinity;
            var wide = new float[m * n];
            var narrow = new float[m * n];
            DotGemm.Multiply(m, n, k, a, 0, k, b, 0, null, k, 0f, wide, 0, n, null, vector: true, wideBlocks: true);
            DotGemm.Multiply(m, n, k, a, 0, k, b, 0, null, k, 0f, narrow, 0, n, null, vector: true, wideBlocks: false);
            Assert.Equal(wide.Select(BitConverter.SingleToInt32Bits), narrow.Select(BitConverter.SingleToInt32Bits));
        }
    }

    // ---------------- convolution ----------------

    /// <summary>Random convolutions (ConvCase.Draw: ranks 1-3, strides, padding, dilation, groups, both modes), every third forced to stride 1 (the shifted-GEMM path) with wider channels.</summary>
    public static TheoryData<int> ConvSeeds => new(Enumerable.Range(0, 30));

    private static ConvCase FastCase(int seed)
    {
        var cs = ConvCase.Draw(seed);
        if (seed % 3 != 0) return cs;
        var rng = new Random(seed);
        int widen = rng.Next(3, 12);
        return cs with { S = cs.S.Select(_ => 1).ToArray(), C = cs.C * widen, O = cs.O * (widen + 1) };
    }

    private static (float[] y, float[] dx, float[] dw) RunConv(IBackend be, ConvCase cs, float[] x, float[] w, float[] b, float[] dy)
    {
        var g = ConvGeometry.Create(cs.XShape, cs.WShape, cs.Options);
        var y = be.Allocate(g.Output); var dx = be.Allocate(g.Input); var dw = be.Allocate(g.Filter);
        var X = On(be, x, cs.XShape); var W = On(be, w, cs.WShape); var DY = On(be, dy, g.Output);
        be.ConvolutionForward(g, X, W, On(be, b, new Shape(cs.O)), y);
        be.ConvolutionBackwardData(g, W, DY, dx);
        be.ConvolutionBackwardFilter(g, X, DY, dw);
        return (y.ToHost(), dx.ToHost(), dw.ToHost());
    }

    [Theory]
    [MemberData(nameof(ConvSeeds))]
    public void ConvolutionMatchesReference(int seed)
    {
        var cs = FastCase(seed);
        var rng = new Random(500 + seed);
        float[] x = TestData.Uniform(rng, cs.XShape.Length), w = TestData.Uniform(rng, cs.WShape.Length),
            b = TestData.Uniform(rng, cs.O), dy = TestData.Uniform(rng, cs.YShape.Length);
        var want = RunConv(Reference, cs, x, w, b, dy);
        foreach (var isa in AvailableIsas())
        {
            var got = RunConv(new CpuBackend { GemmIsa = isa }, cs, x, w, b, dy);
            // The reference sums rows in float with SIMD axpy/dot (filter gradient in double); the fast path sums
            // the same products in another order, in float. Sums of up to a few thousand products in [-1, 1]:
            // 2e-5 of the largest output bounds the float32 reordering error by a wide margin.
            GradCheck.AssertClose(got.y, TestData.ToDouble(want.y), $"{cs} y {isa}", relTol: 2e-5);
            GradCheck.AssertClose(got.dx, TestData.ToDouble(want.dx), $"{cs} dx {isa}", relTol: 2e-5);
            GradCheck.AssertClose(got.dw, TestData.ToDouble(want.dw), $"{cs} dw {isa}", relTol: 2e-5);
        }
        // Forcing the im2col path (a column budget too small for the shifted copy) gives the same answers.
        var im2col = RunConv(new CpuBackend { ConvolutionColumnBudget = 7 }, cs, x, w, b, dy);
        GradCheck.AssertClose(im2col.y, TestData.ToDouble(want.y), $"{cs} y im2col", relTol: 2e-5);
        GradCheck.AssertClose(im2col.dx, TestData.ToDouble(want.dx), $"{cs} dx im2col", relTol: 2e-5);
        GradCheck.AssertClose(im2col.dw, TestData.ToDouble(want.dw), $"{cs} dw im2col", relTol: 2e-5);
    }

    /// <summary>3x3 stride-1 undilated 2-D cases with at least 8 channels per group (Winograd F(2x2, 3x3)): sizes odd and even, padding 0-2, groups, both modes.</summary>
    public static TheoryData<int> WinogradSeeds => new(Enumerable.Range(0, 12));

    private static ConvCase WinogradCase(int seed)
    {
        var rng = new Random(900 + seed);
        int groups = seed % 4 == 3 ? 2 : 1, pad = seed % 3;
        int h = rng.Next(3, 19) - (pad > 0 ? 2 : 0), w = rng.Next(3, 19) - (pad > 0 ? 2 : 0);
        int c = groups * rng.Next(CpuBackend.MinWinogradChannels, 17), o = groups * rng.Next(CpuBackend.MinWinogradChannels, 17);
        var mode = seed % 2 == 0 ? ConvolutionMode.CrossCorrelation : ConvolutionMode.Convolution;
        // Enough images for Winograd's tile minimum, with one to five more (chunks of several images, a ragged last one).
        int tiles = (h + 2 * pad - 1) / 2 * ((w + 2 * pad - 1) / 2);
        int n = (CpuBackend.MinWinogradTiles + tiles - 1) / tiles + rng.Next(0, 6);
        return new ConvCase(n, c, o, groups, [h, w], [3, 3], [1, 1], [pad, pad], [1, 1], mode);
    }

    [Theory]
    [MemberData(nameof(WinogradSeeds))]
    public void WinogradMatchesReferenceAndTheDirectPath(int seed)
    {
        var cs = WinogradCase(seed);
        var rng = new Random(seed);
        float[] x = TestData.Uniform(rng, cs.XShape.Length), w = TestData.Uniform(rng, cs.WShape.Length),
            b = TestData.Uniform(rng, cs.O), dy = TestData.Uniform(rng, cs.YShape.Length);
        var want = RunConv(Reference, cs, x, w, b, dy);
        var direct = RunConv(new CpuBackend(2) { UseWinograd = false }, cs, x, w, b, dy);
        foreach (var isa in AvailableIsas())
        {
            var got = RunConv(new CpuBackend(1) { GemmIsa = isa }, cs, x, w, b, dy);
            // Transforms with coefficients 1 and 1/2 (exact) around sums of up to 16 x 9 products: within the same
            // float32 bound as the direct path.
            GradCheck.AssertClose(got.y, TestData.ToDouble(want.y), $"{cs} y {isa}", relTol: 2e-5);
            GradCheck.AssertClose(got.dx, TestData.ToDouble(want.dx), $"{cs} dx {isa}", relTol: 2e-5);
            Assert.Equal(direct.dw, got.dw); // the filter gradient has no Winograd path
            // Thread count does not change a bit (chunks of images, each GEMM element summed in one order).
            var threaded = RunConv(new CpuBackend(3) { GemmIsa = isa }, cs, x, w, b, dy);
            Assert.Equal(got.y, threaded.y);
            Assert.Equal(got.dx, threaded.dx);
        }
        // The case ran through Winograd: its rounding differs from the direct path's somewhere.
        Assert.NotEqual(direct.y, RunConv(new CpuBackend(2), cs, x, w, b, dy).y);
    }

    [Fact]
    public void WinogradSplitsWideInputsIntoChunksOfImages()
    {
        // 72 input and 104 output channels: V's cache budget holds 3 images of 49 tiles in the forward pass and 2 in the
        // input gradient (104 channels of dy), so 10 images make chunks both ways (3+3+3+1, ragged; 2+2+2+2+2).
        var cs = new ConvCase(10, 72, 104, 1, [14, 14], [3, 3], [1, 1], [1, 1], [1, 1], ConvolutionMode.CrossCorrelation);
        Assert.Equal(3, CpuBackend.WinogradChunkImages(72, 49, cs.N));
        Assert.Equal(2, CpuBackend.WinogradChunkImages(104, 49, cs.N));
        var rng = new Random(5);
        float[] x = TestData.Uniform(rng, cs.XShape.Length), w = TestData.Uniform(rng, cs.WShape.Length),
            b = TestData.Uniform(rng, cs.O), dy = TestData.Uniform(rng, cs.YShape.Length);
        var want = RunConv(Reference, cs, x, w, b, dy);
        var direct = RunConv(new CpuBackend(2) { UseWinograd = false }, cs, x, w, b, dy);
        var got = RunConv(new CpuBackend(1), cs, x, w, b, dy);
        GradCheck.AssertClose(got.y, TestData.ToDouble(want.y), $"{cs} y", relTol: 2e-5);
        GradCheck.AssertClose(got.dx, TestData.ToDouble(want.dx), $"{cs} dx", relTol: 2e-5);
        Assert.NotEqual(direct.y, got.y); // Winograd ran
        Assert.NotEqual(direct.dx, got.dx);
        var threaded = RunConv(new CpuBackend(3), cs, x, w, b, dy);
        Assert.Equal(got.y, threaded.y);
        Assert.Equal(got.dx, threaded.dx);
    }

    [Fact]
    public void FilterCacheGivesTheBitsOfAnUncachedCallAndFollowsTheWeights()
    {
        // Each forward path with a prepared filter: Winograd (8 images of cnn2bn's conv2), the shifted GEMM (one image;
        // convolution mode and groups), the im2col GEMM (stride 2). Calls with the cache must give the bits of calls
        // without it: on first use, when the forms are reused, after the weights change (trained, a NaN put in), and
        // when a backend of another instruction set takes over the cache.
        var winograd = new ConvCase(8, 32, 64, 1, [14, 14], [3, 3], [1, 1], [1, 1], [1, 1], ConvolutionMode.CrossCorrelation);
        var cases = new[]
        {
            winograd,
            winograd with { N = 1, Mode = ConvolutionMode.Convolution },
            new ConvCase(2, 12, 10, 2, [9, 11], [3, 2], [1, 1], [1, 0], [1, 2], ConvolutionMode.CrossCorrelation),
            new ConvCase(3, 6, 8, 1, [10, 9], [3, 3], [2, 2], [1, 1], [1, 1], ConvolutionMode.CrossCorrelation),
        };
        var isas = AvailableIsas().ToArray();
        foreach (var cs in cases)
        {
            var rng = new Random(6);
            var g = ConvGeometry.Create(cs.XShape, cs.WShape, cs.Options);
            float[] x = TestData.Uniform(rng, cs.XShape.Length), w = TestData.Uniform(rng, cs.WShape.Length), b = TestData.Uniform(rng, cs.O);
            var cache = new FilterCache();
            foreach (var isa in isas.Concat(isas.Take(1)))
            {
                var be = new CpuBackend(1) { GemmIsa = isa };
                var W = On(be, w, cs.WShape);
                float[] Forward(bool cached)
                {
                    var y = be.Allocate(g.Output);
                    if (cached) be.ConvolutionForward(g, On(be, x, cs.XShape), W, On(be, b, new Shape(cs.O)), y, cache);
                    else be.ConvolutionForward(g, On(be, x, cs.XShape), W, On(be, b, new Shape(cs.O)), y);
                    return y.ToHost();
                }
                void Same(string what) => Assert.True(Forward(cached: false).SequenceEqual(Forward(cached: true)), $"{cs} {isa}: {what}");
                Same("first call");
                Same("second call");
                var changed = W.ToHost();
                changed[rng.Next(changed.Length)] += 0.25f;     // one weight trained
                W.CopyFromHost(changed);
                Same("after a weight changed");
                changed[rng.Next(changed.Length)] = float.NaN;
                W.CopyFromHost(changed);
                Same("after a NaN weight");
                Assert.Contains(Forward(cached: true), float.IsNaN);
            }
        }
    }

    [Fact]
    public void WinogradLeavesSmallBatchesToTheDirectPath()
    {
        // cnn2bn's conv2 for one image (49 tiles, under MinWinogradTiles): the direct path, bit for bit; for 8 images, Winograd.
        var one = new ConvCase(1, 32, 64, 1, [14, 14], [3, 3], [1, 1], [1, 1], [1, 1], ConvolutionMode.CrossCorrelation);
        var eight = one with { N = 8 };
        foreach (var (cs, winograd) in new[] { (one, false), (eight, true) })
        {
            var rng = new Random(2);
            float[] x = TestData.Uniform(rng, cs.XShape.Length), w = TestData.Uniform(rng, cs.WShape.Length),
                b = TestData.Uniform(rng, cs.O), dy = TestData.Uniform(rng, cs.YShape.Length);
            var direct = RunConv(new CpuBackend(2) { UseWinograd = false }, cs, x, w, b, dy);
            var got = RunConv(new CpuBackend(2), cs, x, w, b, dy);
            Assert.Equal(!winograd, direct.y.SequenceEqual(got.y));
            Assert.Equal(!winograd, direct.dx.SequenceEqual(got.dx));
        }
    }

    [Fact]
    public void WinogradLeavesNonFiniteInputsToTheDirectPath()
    {
        // One Inf in x: Winograd's transforms would spread it (Inf - Inf = NaN) to outputs the direct sum gives as Inf
        // or finite; the backend takes the direct path and gives exactly its answers.
        var cs = new ConvCase(24, 8, 8, 1, [6, 7], [3, 3], [1, 1], [1, 1], [1, 1], ConvolutionMode.CrossCorrelation);
        var rng = new Random(1);
        float[] x = TestData.Uniform(rng, cs.XShape.Length), w = TestData.Uniform(rng, cs.WShape.Length),
            b = TestData.Uniform(rng, cs.O), dy = TestData.Uniform(rng, cs.YShape.Length);
        x[20] = float.PositiveInfinity;
        dy[30] = float.NegativeInfinity;
        var direct = RunConv(new CpuBackend(1) { UseWinograd = false }, cs, x, w, b, dy);
        var got = RunConv(new CpuBackend(1), cs, x, w, b, dy);
        Assert.Equal(direct.y.Select(BitConverter.SingleToInt32Bits), got.y.Select(BitConverter.SingleToInt32Bits));
        Assert.Equal(direct.dx.Select(BitConverter.SingleToInt32Bits), got.dx.Select(BitConverter.SingleToInt32Bits));
        Assert.Contains(got.y, float.IsInfinity);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(3)]
    [InlineData(6)]
    [InlineData(9)]
    public void ConvolutionIsBitIdenticalAcrossThreads(int seed)
    {
        var cs = FastCase(seed) with { N = 9 };
        var rng = new Random(seed);
        float[] x = TestData.Uniform(rng, cs.XShape.Length), w = TestData.Uniform(rng, cs.WShape.Length),
            b = TestData.Uniform(rng, cs.O), dy = TestData.Uniform(rng, cs.YShape.Length);
        var one = RunConv(new CpuBackend(1), cs, x, w, b, dy);
        foreach (int threads in new[] { 2, 3, 8, 16 })
        {
            var many = RunConv(new CpuBackend(threads), cs, x, w, b, dy);
            Assert.Equal(one.y, many.y);
            Assert.Equal(one.dx, many.dx);
            Assert.Equal(one.dw, many.dw);
        }
    }

    [Fact]
    public void ConvolutionPropagatesNaNAndInfLikeTheReference()
    {
        // 3x3 pad 1 stride 1: the shifted path. A NaN and an Inf in x (the Inf in the first column, which the
        // dropped grid columns also read) must give the reference's non-finite pattern in y, dx and dw.
        var cs = new ConvCase(2, 3, 4, 1, [6, 7], [3, 3], [1, 1], [1, 1], [1, 1], ConvolutionMode.CrossCorrelation);
        var rng = new Random(1);
        float[] x = TestData.Uniform(rng, cs.XShape.Length), w = TestData.Uniform(rng, cs.WShape.Length),
            b = TestData.Uniform(rng, cs.O), dy = TestData.Uniform(rng, cs.YShape.Length);
        x[10] = float.NaN;
        x[cs.XShape.Length - 7] = float.PositiveInfinity;
        var want = RunConv(Reference, cs, x, w, b, dy);
        var got = RunConv(new CpuBackend(), cs, x, w, b, dy);
        foreach (var (g, r, what) in new[] { (got.y, want.y, "y"), (got.dx, want.dx, "dx"), (got.dw, want.dw, "dw") })
            for (int i = 0; i < r.Length; i++)
                Assert.True(float.IsFinite(g[i]) == float.IsFinite(r[i]) && float.IsNaN(g[i]) == float.IsNaN(r[i]),
                    $"{what}[{i}]: {g[i]} vs reference {r[i]}");
    }

    // ---------------- 2x2 max pooling ----------------

    /// <summary>
    /// (h, w, channels, batch). Widths 2 to 7 take the scalar loop; from 8 on the vector steps, whose last step
    /// overlaps the one before unless the output width is a multiple of 4 (9, 13, 14, 15, 17, 33: overlapped).
    /// </summary>
    public static TheoryData<int, int, int, int> PoolShapes => new()
    {
        { 2, 2, 1, 2 }, { 3, 3, 2, 2 }, { 4, 9, 1, 2 }, { 5, 8, 3, 2 }, { 8, 10, 2, 2 }, { 7, 17, 1, 2 }, { 28, 28, 2, 2 },
        { 13, 33, 1, 2 }, { 2, 70, 1, 2 }, { 9, 1 + 2 * 8, 3, 2 },
        { 14, 14, 32, 64 }, { 14, 14, 5, 3 }, { 13, 13, 3, 2 }, { 15, 15, 2, 3 }, { 6, 2, 3, 2 }, { 5, 4, 2, 3 }, { 7, 6, 2, 2 },
        { 4, 7, 2, 2 }, { 14, 12, 2, 2 },
    };

    [Theory]
    [MemberData(nameof(PoolShapes))]
    public void MaxPool2x2IsBitIdenticalToTheReference(int h, int w, int channels, int batch)
    {
        var rng = new Random(h * 100 + w);
        var shape = new Shape(batch, channels, h, w);
        // Values from a small set so windows hold ties, signed zeros, NaN and infinities.
        float[] pool = [0f, -0f, 1f, -1f, 2f, 0.5f, float.NaN, float.PositiveInfinity, float.NegativeInfinity];
        var x = new float[shape.Length];
        for (int i = 0; i < x.Length; i++) x[i] = pool[rng.Next(pool.Length)];
        var g = PoolGeometry.Create(shape, new PoolingOptions { Window = 2 });
        var dy = TestData.Uniform(rng, g.Output.Length);
        foreach (int threads in new[] { 1, 2, 5 })
        {
            var fast = new CpuBackend(threads);
            var results = new List<float[]>();
            foreach (var be in new[] { Reference, fast })
            {
                var y = be.Allocate(g.Output); var dx = be.Allocate(shape);
                // dx starts dirty: every cell must be written, including the odd last row and column.
                be.Fill(dx, 42f);
                be.PoolingForward(g, On(be, x, shape), y);
                be.PoolingBackward(g, On(be, x, shape), y, On(be, dy, g.Output), dx);
                results.Add(y.ToHost()); results.Add(dx.ToHost());
            }
            // Bitwise: NaN payloads and the sign of zero included.
            Assert.Equal(results[0].Select(BitConverter.SingleToInt32Bits), results[2].Select(BitConverter.SingleToInt32Bits));
            Assert.Equal(results[1].Select(BitConverter.SingleToInt32Bits), results[3].Select(BitConverter.SingleToInt32Bits));
        }
    }

    /// <summary>Geometries of the fused ReLU and max pooling: the 2x2 fast path's shapes, and general ones (overlapping, padded, 1-D, 3-D).</summary>
    public static TheoryData<int[], int, int, int> ReluPoolCases => new()
    {
        { [2, 2, 2, 2], 2, 2, 0 }, { [2, 3, 5, 7], 2, 2, 0 }, { [2, 2, 7, 17], 2, 2, 0 }, { [3, 2, 14, 14], 2, 2, 0 },
        { [2, 3, 9, 17], 2, 2, 0 }, { [2, 2, 28, 28], 2, 2, 0 },
        { [2, 3, 7, 9], 3, 2, 1 }, { [2, 3, 11], 3, 1, 2 }, { [2, 2, 5, 6, 7], 2, 3, 1 },
    };

    [Theory]
    [MemberData(nameof(ReluPoolCases))]
    public void ReluIntoMaxPoolingIsBitIdenticalToReluThenPooling(int[] dims, int window, int stride, int padding)
    {
        var shape = new Shape(dims);
        var rng = new Random(shape.Length + window);
        // Windows all at or below 0 (the ReLU outputs tie at +0), ties, signed zeros, NaN and infinities.
        float[] pool = [0f, -0f, 1f, -1f, -2f, 2f, -0.5f, float.NaN, float.PositiveInfinity, float.NegativeInfinity];
        var x = new float[shape.Length];
        for (int i = 0; i < x.Length; i++) x[i] = pool[rng.Next(pool.Length)];
        var g = PoolGeometry.Create(shape, new PoolingOptions { Window = window, Stride = stride, Padding = padding });
        var dy = TestData.Uniform(rng, g.Output.Length);
        dy[0] = float.PositiveInfinity;                    // Inf times the slope 0 is NaN in both: the product, not a select
        static int[] Bits(float[] v) => [.. v.Select(BitConverter.SingleToInt32Bits)];
        foreach (var be in new[] { new CpuBackend(1), new CpuBackend(3), DefaultBackend.CpuReferenceKernels(2), Reference })
        {
            var X = On(be, x, shape); var DY = On(be, dy, g.Output);
            // The two ops one after the other, through the ReLU's output r.
            var r = be.Allocate(shape); var want = be.Allocate(g.Output); var dr = be.Allocate(shape); var wantDx = be.Allocate(shape);
            be.ActivationForward(ActivationKind.ReLU, 0f, X, r);
            be.PoolingForward(g, r, want);
            be.PoolingBackward(g, r, want, DY, dr);
            be.ActivationBackward(ActivationKind.ReLU, 0f, X, r, dr, wantDx);
            // Fused, into outputs that start dirty: every cell must be written.
            var y = be.Allocate(g.Output); var dx = be.Allocate(shape);
            be.Fill(y, 42f); be.Fill(dx, 42f);
            be.PoolingReluForward(g, X, y);
            be.PoolingReluBackward(g, X, y, DY, dx);
            Assert.True(Bits(want.ToHost()).SequenceEqual(Bits(y.ToHost())), $"{be.Name} {g}: y differs from ReLU then pooling");
            Assert.True(Bits(wantDx.ToHost()).SequenceEqual(Bits(dx.ToHost())), $"{be.Name} {g}: dx differs from pooling's then the ReLU's backward");
        }
    }

    // ---------------- batch norm ----------------

    [Theory]
    [InlineData(new[] { 2, 5 })]
    [InlineData(new[] { 5, 3, 9, 11 })]
    [InlineData(new[] { 16, 4, 17, 17 })]                 // rows longer than the fused backward's 256-value chunk
    [InlineData(new[] { 3, 3, 5, 7 }, true)]
    public void BatchNormReluIsBitIdenticalToBatchNormThenRelu(int[] dims, bool specialValues = false)
    {
        var shape = new Shape(dims);
        int c = dims[1];
        var rng = new Random(7 * shape.Length);
        float[] x = TestData.Uniform(rng, shape.Length).Select(v => v + 2f).ToArray(), dy = TestData.Uniform(rng, shape.Length),
            gamma = TestData.Uniform(rng, c), beta = TestData.Uniform(rng, c);
        dy[1] = float.PositiveInfinity;                    // Inf times the slope 0 is NaN in both: the product, not a select
        if (specialValues)
        {
            // Channel 1 constant, gamma < 0 and beta = -0: y = 0 * (negative) + -0 = -0 before the ReLU, which makes it +0.
            // Channel 2 holds a NaN: its statistics and every y are NaN, and the ReLU keeps them NaN.
            int inner = shape.SizeFrom(2);
            for (int n = 0; n < dims[0]; n++) x.AsSpan((n * c + 1) * inner, inner).Fill(1.5f);
            gamma[1] = -0.75f; beta[1] = -0f;
            x[(1 * c + 2) * inner + 3] = float.NaN;
        }
        static int[] Bits(float[] v) => [.. v.Select(BitConverter.SingleToInt32Bits)];
        foreach (var be in new[] { new CpuBackend(1), new CpuBackend(3), DefaultBackend.CpuReferenceKernels(2), Reference })
        {
            float[][] Run(bool fused)
            {
                Tensor V(float[] v) => On(be, (float[])v.Clone(), new Shape(v.Length));
                var (g, b) = (V(gamma), V(beta));
                var rm = V(new float[c]); var rv = V(Enumerable.Repeat(1f, c).ToArray());
                var y = be.Allocate(shape); var mean = be.Allocate(new Shape(c)); var inv = be.Allocate(new Shape(c));
                var X = On(be, x, shape); var DY = On(be, dy, shape);
                var dx = be.Allocate(shape); var dg = be.Allocate(new Shape(c)); var db = be.Allocate(new Shape(c));
                if (fused)
                {
                    be.BatchNormReluForwardTraining(X, g, b, 1e-5f, 0.1f, rm, rv, y, mean, inv);
                    be.BatchNormReluBackward(X, y, DY, g, mean, inv, dx, dg, db);
                    return [y.ToHost(), rm.ToHost(), rv.ToHost(), mean.ToHost(), inv.ToHost(), dx.ToHost(), dg.ToHost(), db.ToHost()];
                }
                var z = be.Allocate(shape); var dz = be.Allocate(shape);
                be.BatchNormForwardTraining(X, g, b, 1e-5f, 0.1f, rm, rv, z, mean, inv);
                be.ActivationForward(ActivationKind.ReLU, 0f, z, y);
                be.ActivationBackward(ActivationKind.ReLU, 0f, z, y, DY, dz);
                be.BatchNormBackward(X, dz, g, mean, inv, dx, dg, db);
                return [y.ToHost(), rm.ToHost(), rv.ToHost(), mean.ToHost(), inv.ToHost(), dx.ToHost(), dg.ToHost(), db.ToHost()];
            }
            var want = Run(fused: false);
            var got = Run(fused: true);
            Assert.Contains(want[0], v => v == 0f);
            Assert.Contains(want[0], v => v > 0f);
            string[] names = ["y", "running mean", "running variance", "saved mean", "saved inverse std", "dx", "dgamma", "dbeta"];
            for (int i = 0; i < names.Length; i++)
                Assert.True(Bits(want[i]).SequenceEqual(Bits(got[i])), $"{be.Name} {shape}: {names[i]} differs from batch norm then ReLU");
        }
    }

    [Theory]
    [InlineData(new[] { 2, 5 })]
    [InlineData(new[] { 3, 4, 7 })]
    [InlineData(new[] { 5, 3, 9, 11 })]
    [InlineData(new[] { 64, 2, 3, 3 })]
    public void BatchNormMatchesReference(int[] dims)
    {
        var shape = new Shape(dims);
        int c = dims[1];
        var rng = new Random(shape.Length);
        // An offset mean: the centring of the fast path is what keeps this accurate.
        float[] x = TestData.Uniform(rng, shape.Length).Select(v => v + 3f).ToArray(), dy = TestData.Uniform(rng, shape.Length),
            gamma = TestData.Uniform(rng, c), beta = TestData.Uniform(rng, c);
        var results = new List<float[]>();
        foreach (var be in new[] { Reference, new CpuBackend(1), new CpuBackend(3) })
        {
            Tensor V(float[] v) => On(be, (float[])v.Clone(), new Shape(v.Length));
            var rm = V(new float[c]); var rv = V(Enumerable.Repeat(1f, c).ToArray());
            var y = be.Allocate(shape); var mean = be.Allocate(new Shape(c)); var inv = be.Allocate(new Shape(c));
            var X = On(be, x, shape);
            be.BatchNormForwardTraining(X, V(gamma), V(beta), 1e-5f, 0.1f, rm, rv, y, mean, inv);
            var dx = be.Allocate(shape); var dg = be.Allocate(new Shape(c)); var db = be.Allocate(new Shape(c));
            be.BatchNormBackward(X, On(be, dy, shape), V(gamma), mean, inv, dx, dg, db);
            results.AddRange([y.ToHost(), rm.ToHost(), rv.ToHost(), mean.ToHost(), inv.ToHost(), dx.ToHost(), dg.ToHost(), db.ToHost()]);
        }
        string[] names = ["y", "running mean", "running variance", "saved mean", "saved inverse std", "dx", "dgamma", "dbeta"];
        for (int i = 0; i < names.Length; i++)
        {
            // Float row sums (accumulated in double) against the reference's double sums, and float element-wise
            // passes: 1e-5 of the scale is a few float ulps of the largest value (variance of values of size 3
            // cancels one digit).
            GradCheck.AssertClose(results[8 + i], TestData.ToDouble(results[i]), $"batch norm {names[i]} {shape}", relTol: 1e-5);
            Assert.Equal(results[8 + i], results[16 + i]);
        }
    }
}
