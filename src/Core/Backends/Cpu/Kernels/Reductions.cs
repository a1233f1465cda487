using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace MLNet.ConvNet.Backends.Cpu.Kernels;

/// <summary>
/// Float sums and dot products whose rounding is the same on every x64 machine. TensorPrimitives.Sum and Dot add in
/// as many lanes as the machine's widest vector (16 with AVX-512, 8 with AVX2), so the same data gave other last bits,
/// other weights after a few steps, and other accuracies on the two kinds of machine (0.8852 and 0.8830 for the same
/// seed). Here the order is fixed: element i of each block of 32 goes to partial sum i mod 32, a remaining block of 8
/// to partials 0-7, the 32 partials are folded to 8 as w[j] = (p[j] + p[8+j]) + (p[16+j] + p[24+j]), those 8 to one
/// as ((w0 + w4) + (w2 + w6)) + ((w1 + w5) + (w3 + w7)) (<see cref="Fold"/>), then the last elements are added one by one. Four Vector256 accumulators do exactly that where AVX2 exists; the scalar
/// loop does the same additions in the same order (tests compare the two bit for bit).
/// </summary>
internal static class Reductions
{
    /// <summary>True: the Vector256 path (every x64 machine with AVX2); false: the scalar path, same order.</summary>
    private static readonly bool UseVectors = Vector256.IsHardwareAccelerated;

    /// <summary>The sum of <paramref name="x"/> in the fixed order above.</summary>
    public static float Sum(ReadOnlySpan<float> x) => UseVectors ? SumVector(x) : SumScalar(x);

    /// <summary>The sum of x[i] y[i] in the fixed order above, each product added with one rounding (a fused multiply-add).</summary>
    public static float Dot(ReadOnlySpan<float> x, ReadOnlySpan<float> y)
    {
        if (x.Length != y.Length) throw new ArgumentException($"Dot needs spans of one length; got {x.Length} and {y.Length}.", nameof(y));
        return UseVectors ? DotVector(x, y) : DotScalar(x, y);
    }

    /// <summary>The sum of x[i]^2, as <see cref="Dot"/>(x, x).</summary>
    public static float SumOfSquares(ReadOnlySpan<float> x) => Dot(x, x);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float SumVector(ReadOnlySpan<float> x)
    {
        ref float r = ref MemoryMarshal.GetReference(x);
        int n = x.Length, i = 0;
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        for (; i <= n - 32; i += 32)
        {
            a0 += Vector256.LoadUnsafe(ref r, (nuint)i);
            a1 += Vector256.LoadUnsafe(ref r, (nuint)(i + 8));
            a2 += Vector256.LoadUnsafe(ref r, (nuint)(i + 16));
            a3 += Vector256.LoadUnsafe(ref r, (nuint)(i + 24));
        }
        if (i <= n - 8) { a0 += Vector256.LoadUnsafe(ref r, (nuint)i); i += 8; }
        float s = Fold((a0 + a1) + (a2 + a3));
        for (; i < n; i++) s += Unsafe.Add(ref r, i);
        return s;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float DotVector(ReadOnlySpan<float> x, ReadOnlySpan<float> y)
    {
        ref float rx = ref MemoryMarshal.GetReference(x);
        ref float ry = ref MemoryMarshal.GetReference(y);
        int n = x.Length, i = 0;
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        for (; i <= n - 32; i += 32)
        {
            a0 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref rx, (nuint)i), Vector256.LoadUnsafe(ref ry, (nuint)i), a0);
            a1 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref rx, (nuint)(i + 8)), Vector256.LoadUnsafe(ref ry, (nuint)(i + 8)), a1);
            a2 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref rx, (nuint)(i + 16)), Vector256.LoadUnsafe(ref ry, (nuint)(i + 16)), a2);
            a3 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref rx, (nuint)(i + 24)), Vector256.LoadUnsafe(ref ry, (nuint)(i + 24)), a3);
        }
        if (i <= n - 8)
        {
            a0 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref rx, (nuint)i), Vector256.LoadUnsafe(ref ry, (nuint)i), a0);
            i += 8;
        }
        float s = Fold((a0 + a1) + (a2 + a3));
        for (; i < n; i++) s = MathF.FusedMultiplyAdd(Unsafe.Add(ref rx, i), Unsafe.Add(ref ry, i), s);
        return s;
    }

    /// <summary>
    /// In one pass over <paramref name="x"/>: its <see cref="Sum"/>, and the sum of (x[i] - mean)^2 taken as
    /// <see cref="SumOfSquares"/> of each block of <paramref name="block"/> elements (a multiple of 32) added up in
    /// double, block after block. The same bits as those calls on the float differences, each data pass fused into one
    /// (batch norm's statistics read each row once instead of three times).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static (float Sum, double Squares) SumAndSquaredDeviations(ReadOnlySpan<float> x, float mean, int block)
    {
        if (block <= 0 || block % 32 != 0) throw new ArgumentOutOfRangeException(nameof(block), block, "The block must be a positive multiple of 32.");
        if (!UseVectors) return SumAndSquaredDeviationsScalar(x, mean, block);
        ref float r = ref MemoryMarshal.GetReference(x);
        int n = x.Length, i = 0;
        var m = Vector256.Create(mean);
        Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default;
        double squares = 0;
        for (int start = 0; start < n; start += block)
        {
            // Every block but the last is whole and a multiple of 32, so only the last has the tails, and they are the row's.
            int end = Math.Min(n, start + block);
            Vector256<float> q0 = default, q1 = default, q2 = default, q3 = default;
            for (i = start; i <= end - 32; i += 32)
            {
                var x0 = Vector256.LoadUnsafe(ref r, (nuint)i); var x1 = Vector256.LoadUnsafe(ref r, (nuint)(i + 8));
                var x2 = Vector256.LoadUnsafe(ref r, (nuint)(i + 16)); var x3 = Vector256.LoadUnsafe(ref r, (nuint)(i + 24));
                s0 += x0; s1 += x1; s2 += x2; s3 += x3;
                var d0 = x0 - m; var d1 = x1 - m; var d2 = x2 - m; var d3 = x3 - m;
                q0 = Vector256.FusedMultiplyAdd(d0, d0, q0); q1 = Vector256.FusedMultiplyAdd(d1, d1, q1);
                q2 = Vector256.FusedMultiplyAdd(d2, d2, q2); q3 = Vector256.FusedMultiplyAdd(d3, d3, q3);
            }
            if (i <= end - 8)
            {
                var x0 = Vector256.LoadUnsafe(ref r, (nuint)i);
                s0 += x0;
                var d0 = x0 - m;
                q0 = Vector256.FusedMultiplyAdd(d0, d0, q0);
                i += 8;
            }
            float q = Fold((q0 + q1) + (q2 + q3));
            for (int j = i; j < end; j++) { float d = Unsafe.Add(ref r, j) - mean; q = MathF.FusedMultiplyAdd(d, d, q); }
            squares += q;
        }
        float s = Fold((s0 + s1) + (s2 + s3));
        for (; i < n; i++) s += Unsafe.Add(ref r, i);
        return (s, squares);
    }

    internal static (float Sum, double Squares) SumAndSquaredDeviationsScalar(ReadOnlySpan<float> x, float mean, int block)
    {
        // The calls the vector path fuses: each block's float differences, then their SumOfSquares.
        float[] d = System.Buffers.ArrayPool<float>.Shared.Rent(Math.Min(block, x.Length));
        double squares = 0;
        for (int start = 0; start < x.Length; start += block)
        {
            var part = x.Slice(start, Math.Min(block, x.Length - start));
            var diff = d.AsSpan(0, part.Length);
            for (int i = 0; i < part.Length; i++) diff[i] = part[i] - mean;
            squares += DotScalar(diff, diff);
        }
        System.Buffers.ArrayPool<float>.Shared.Return(d);
        return (SumScalar(x), squares);
    }

    /// <summary>
    /// In one pass: g = <paramref name="dy"/> times the ReLU slope of <paramref name="reluOutput"/> (1 where it is
    /// &gt; 0, 0 where &lt;= 0, NaN where NaN: ActivationBackward's products), written to <paramref name="masked"/>, or g =
    /// dy when reluOutput is empty; then <see cref="Sum"/>(g) and <see cref="Dot"/>(g, <paramref name="x"/>), the same
    /// bits as those three calls (batch norm's backward reads each row once instead of three times).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static (float Sum, float Dot) MaskedSumAndDot(ReadOnlySpan<float> reluOutput, ReadOnlySpan<float> dy, ReadOnlySpan<float> x, Span<float> masked)
    {
        bool relu = !reluOutput.IsEmpty;
        int n = dy.Length;
        if (x.Length != n || (relu && (reluOutput.Length != n || masked.Length != n)))
            throw new ArgumentException($"MaskedSumAndDot needs spans of one length; got dy {n}, x {x.Length}, relu output {reluOutput.Length}, masked {masked.Length}.");
        if (!UseVectors) return MaskedSumAndDotScalar(reluOutput, dy, x, masked);
        ref float rg = ref MemoryMarshal.GetReference(dy);
        ref float rx = ref MemoryMarshal.GetReference(x);
        ref float ry = ref MemoryMarshal.GetReference(reluOutput);
        ref float rm = ref MemoryMarshal.GetReference(masked);
        int i = 0;
        Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default, p0 = default, p1 = default, p2 = default, p3 = default;
        for (; i <= n - 32; i += 32)
        {
            var g0 = Gradient(ref rg, ref ry, ref rm, i, relu); var g1 = Gradient(ref rg, ref ry, ref rm, i + 8, relu);
            var g2 = Gradient(ref rg, ref ry, ref rm, i + 16, relu); var g3 = Gradient(ref rg, ref ry, ref rm, i + 24, relu);
            s0 += g0; s1 += g1; s2 += g2; s3 += g3;
            p0 = Vector256.FusedMultiplyAdd(g0, Vector256.LoadUnsafe(ref rx, (nuint)i), p0);
            p1 = Vector256.FusedMultiplyAdd(g1, Vector256.LoadUnsafe(ref rx, (nuint)(i + 8)), p1);
            p2 = Vector256.FusedMultiplyAdd(g2, Vector256.LoadUnsafe(ref rx, (nuint)(i + 16)), p2);
            p3 = Vector256.FusedMultiplyAdd(g3, Vector256.LoadUnsafe(ref rx, (nuint)(i + 24)), p3);
        }
        if (i <= n - 8)
        {
            var g0 = Gradient(ref rg, ref ry, ref rm, i, relu);
            s0 += g0;
            p0 = Vector256.FusedMultiplyAdd(g0, Vector256.LoadUnsafe(ref rx, (nuint)i), p0);
            i += 8;
        }
        float s = Fold((s0 + s1) + (s2 + s3)), p = Fold((p0 + p1) + (p2 + p3));
        for (; i < n; i++)
        {
            float g = Unsafe.Add(ref rg, i);
            if (relu)
            {
                g *= Relu.Slope(Unsafe.Add(ref ry, i));
                Unsafe.Add(ref rm, i) = g;
            }
            s += g;
            p = MathF.FusedMultiplyAdd(g, Unsafe.Add(ref rx, i), p);
        }
        return (s, p);
    }

    internal static (float Sum, float Dot) MaskedSumAndDotScalar(ReadOnlySpan<float> reluOutput, ReadOnlySpan<float> dy, ReadOnlySpan<float> x, Span<float> masked)
    {
        if (!reluOutput.IsEmpty)
        {
            for (int k = 0; k < dy.Length; k++) masked[k] = dy[k] * Relu.Slope(reluOutput[k]);
            dy = masked;
        }
        return (SumScalar(dy), DotScalar(dy, x));
    }

    /// <summary>Eight elements of the gradient from <paramref name="i"/>: dy, or dy times the ReLU slope stored to masked.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Gradient(ref float dy, ref float reluOutput, ref float masked, int i, bool relu)
    {
        var g = Vector256.LoadUnsafe(ref dy, (nuint)i);
        if (!relu) return g;
        g *= Relu.Slope(Vector256.LoadUnsafe(ref reluOutput, (nuint)i));
        g.StoreUnsafe(ref masked, (nuint)i);
        return g;
    }

    /// <summary>
    /// The 8 lanes of <paramref name="v"/> as ((v0 + v4) + (v2 + v6)) + ((v1 + v5) + (v3 + v7)): explicit lane-wise
    /// additions, so the same on every machine (Vector256.Sum's order is the runtime's choice).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Fold(Vector256<float> v)
    {
        var h = v.GetLower() + v.GetUpper();                        // v0+v4, v1+v5, v2+v6, v3+v7
        var q = h + Vector128.Shuffle(h, Vector128.Create(2, 3, 0, 1)); // (v0+v4)+(v2+v6), (v1+v5)+(v3+v7), ...
        return q.GetElement(0) + q.GetElement(1);
    }

    internal static float SumScalar(ReadOnlySpan<float> x)
    {
        Span<float> p = stackalloc float[32];
        p.Clear();
        int n = x.Length, i = 0;
        for (; i <= n - 32; i += 32)
            for (int j = 0; j < 32; j++) p[j] += x[i + j];
        if (i <= n - 8) { for (int j = 0; j < 8; j++) p[j] += x[i + j]; i += 8; }
        float s = FoldScalar(p);
        for (; i < n; i++) s += x[i];
        return s;
    }

    internal static float DotScalar(ReadOnlySpan<float> x, ReadOnlySpan<float> y)
    {
        Span<float> p = stackalloc float[32];
        p.Clear();
        int n = x.Length, i = 0;
        for (; i <= n - 32; i += 32)
            for (int j = 0; j < 32; j++) p[j] = MathF.FusedMultiplyAdd(x[i + j], y[i + j], p[j]);
        if (i <= n - 8) { for (int j = 0; j < 8; j++) p[j] = MathF.FusedMultiplyAdd(x[i + j], y[i + j], p[j]); i += 8; }
        float s = FoldScalar(p);
        for (; i < n; i++) s = MathF.FusedMultiplyAdd(x[i], y[i], s);
        return s;
    }

    /// <summary>The 32 partials as the vector path folds its four accumulators and then <see cref="Fold"/>s them.</summary>
    private static float FoldScalar(ReadOnlySpan<float> p)
    {
        Span<float> w = stackalloc float[8];
        for (int j = 0; j < 8; j++) w[j] = (p[j] + p[8 + j]) + (p[16 + j] + p[24 + j]);
        return ((w[0] + w[4]) + (w[2] + w[6])) + ((w[1] + w[5]) + (w[3] + w[7]));
    }
}
