namespace MLNet.ConvNet.Ops;

/// <summary>
/// The sizes of c = op(a) op(b) on row-major matrices (IBackend.MatMul): a is [M, K] (or [K, M] read transposed),
/// b is [K, N] (or [N, K]), c is [M, N]; tensors of higher rank are read as [first dimension, rest flattened].
/// <see cref="ACols"/> and <see cref="BCols"/> are the stored row lengths. Every backend checks a MatMul through
/// <see cref="Create"/>, so the rule and its messages live once.
/// </summary>
public readonly record struct MatMulGeometry(int M, int N, int K, int ACols, int BCols)
{
    /// <summary>The sizes of <paramref name="a"/> x <paramref name="b"/> into <paramref name="c"/>; throws naming the operand that does not fit.</summary>
    public static MatMulGeometry Create(Tensor a, bool transA, Tensor b, bool transB, Tensor c)
    {
        int aRows = a.Shape[0], aCols = aRows == 0 ? 0 : a.Length / aRows;
        int bRows = b.Shape[0], bCols = bRows == 0 ? 0 : b.Length / bRows;
        int m = transA ? aCols : aRows, k = transA ? aRows : aCols;
        int kb = transB ? bCols : bRows, n = transB ? bRows : bCols;
        if (k != kb)
            throw new ArgumentException($"MatMul: inner dimensions differ: a {a.Shape}{(transA ? "ᵀ" : "")} is {m}x{k}, b {b.Shape}{(transB ? "ᵀ" : "")} is {kb}x{n}.", nameof(b));
        if (c.Shape[0] != m || c.Length != m * n)
            throw new ArgumentException($"MatMul: c {c.Shape} should be {m}x{n}.", nameof(c));
        return new(m, n, k, aCols, bCols);
    }
}
