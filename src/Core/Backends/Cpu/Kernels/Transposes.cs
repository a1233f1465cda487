using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MLNet.ConvNet.Backends.Cpu.Kernels;

/// <summary>
/// Transposes of 8 x 8 float blocks, the data movement under GEMM packing when the operand's reduction runs along its
/// rows (the filter gradient's dy grid, the input planes read position by position). Pure moves: the results are the
/// same floats whatever the path, so the GEMMs that use them keep their bits.
/// </summary>
/// <remarks>
/// With AVX, eight row loads, three rounds of shuffles (unpack, shuffle, 128-bit permute) and eight stores replace 64
/// scalar loads and stores with index arithmetic:
/// <code>
///   rows r0..r7 (8 floats each)  ->  unpacklo/hi pairs  ->  shuffle quads  ->  permute halves  ->  columns c0..c7
/// </code>
/// </remarks>
internal static class Transposes
{
    /// <summary>True where the shuffle path runs (every x64 machine with AVX).</summary>
    internal static readonly bool Vectorized = Avx.IsSupported;

    /// <summary>
    /// dst[j * dstStride + i] = row_i[j] for i, j in [0, 8): eight rows of 8 floats, each anywhere (a plane, a shifted
    /// slice, the same row twice), become 8 rows of <paramref name="dst"/>. Needs <see cref="Vectorized"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Block8x8(ref float row0, ref float row1, ref float row2, ref float row3, ref float row4, ref float row5,
        ref float row6, ref float row7, ref float dst, nint dstStride)
    {
        var r0 = Vector256.LoadUnsafe(ref row0); var r1 = Vector256.LoadUnsafe(ref row1);
        var r2 = Vector256.LoadUnsafe(ref row2); var r3 = Vector256.LoadUnsafe(ref row3);
        var r4 = Vector256.LoadUnsafe(ref row4); var r5 = Vector256.LoadUnsafe(ref row5);
        var r6 = Vector256.LoadUnsafe(ref row6); var r7 = Vector256.LoadUnsafe(ref row7);
        Transpose(ref r0, ref r1, ref r2, ref r3, ref r4, ref r5, ref r6, ref r7);
        r0.StoreUnsafe(ref dst);
        r1.StoreUnsafe(ref Unsafe.Add(ref dst, dstStride));
        r2.StoreUnsafe(ref Unsafe.Add(ref dst, 2 * dstStride));
        r3.StoreUnsafe(ref Unsafe.Add(ref dst, 3 * dstStride));
        r4.StoreUnsafe(ref Unsafe.Add(ref dst, 4 * dstStride));
        r5.StoreUnsafe(ref Unsafe.Add(ref dst, 5 * dstStride));
        r6.StoreUnsafe(ref Unsafe.Add(ref dst, 6 * dstStride));
        r7.StoreUnsafe(ref Unsafe.Add(ref dst, 7 * dstStride));
    }

    /// <summary>The eight rows replaced by the eight columns of the 8 x 8 block they form.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose(ref Vector256<float> r0, ref Vector256<float> r1, ref Vector256<float> r2, ref Vector256<float> r3,
        ref Vector256<float> r4, ref Vector256<float> r5, ref Vector256<float> r6, ref Vector256<float> r7)
    {
        // (a0 b0 a1 b1 | a4 b4 a5 b5), (a2 b2 a3 b3 | a6 b6 a7 b7), ...
        var t0 = Avx.UnpackLow(r0, r1); var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3); var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5); var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(r6, r7); var t7 = Avx.UnpackHigh(r6, r7);
        // (a0 b0 c0 d0 | a4 b4 c4 d4), (a1 b1 c1 d1 | a5 b5 c5 d5), ...
        var u0 = Avx.Shuffle(t0, t2, 0x44); var u1 = Avx.Shuffle(t0, t2, 0xEE);
        var u2 = Avx.Shuffle(t1, t3, 0x44); var u3 = Avx.Shuffle(t1, t3, 0xEE);
        var u4 = Avx.Shuffle(t4, t6, 0x44); var u5 = Avx.Shuffle(t4, t6, 0xEE);
        var u6 = Avx.Shuffle(t5, t7, 0x44); var u7 = Avx.Shuffle(t5, t7, 0xEE);
        // Low halves of (u, u+4) give columns 0-3, high halves columns 4-7.
        r0 = Avx.Permute2x128(u0, u4, 0x20); r1 = Avx.Permute2x128(u1, u5, 0x20);
        r2 = Avx.Permute2x128(u2, u6, 0x20); r3 = Avx.Permute2x128(u3, u7, 0x20);
        r4 = Avx.Permute2x128(u0, u4, 0x31); r5 = Avx.Permute2x128(u1, u5, 0x31);
        r6 = Avx.Permute2x128(u2, u6, 0x31); r7 = Avx.Permute2x128(u3, u7, 0x31);
    }
}
