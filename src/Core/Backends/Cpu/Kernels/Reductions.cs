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
