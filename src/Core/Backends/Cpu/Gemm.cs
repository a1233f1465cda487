using System.Runtime.CompilerServices;
using System.Buffers;
using System.Numerics.Tensors;

namespace MLNet.ConvNet.Backends.Cpu;

/// <summary>
/// Row-major single-precision matrix product: C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C.
/// </summary>
/// <remarks>
/// The plainly readable version: transposed operands are first copied into row-major form, then each
/// row of C is built as a sum of scaled rows of B (i-k-j order, so the inner loop is a SIMD axpy over
/// contiguous memory):
/// <code>
///        K             N                N
///   M [ A ]  x  K [   B   ]  =  M [     C     ]     C[i,:] = sum_k A[i,k] * B[k,:]
/// </code>
/// Rows of C are independent, so they are split across threads; each row is summed in a fixed order,
/// which keeps the result independent of the thread count.
/// </remarks>
internal static class Gemm
{
    public static void Multiply(CpuBackend backend, int m, int n, int k,
        float[] a, bool transA, float[] b, bool transB, float[] c, float alpha, float beta)
    {
        float[]? aT = null, bT = null;
        try
        {
            if (transA) { aT = ArrayPool<float>.Shared.Rent(m * k); Transpose(a, k, m, aT); }
            if (transB) { bT = ArrayPool<float>.Shared.Rent(k * n); Transpose(b, n, k, bT); }
            backend.For(m, new RowBody(n, k, aT ?? a, bT ?? b, c, alpha, beta));
        }
        finally
        {
            if (aT is not null) ArrayPool<float>.Shared.Return(aT);
            if (bT is not null) ArrayPool<float>.Shared.Return(bT);
        }
    }

    /// <summary>Row i of C (A and B row-major).</summary>
    private readonly struct RowBody(int n, int k, float[] a, float[] b, float[] c, float alpha, float beta) : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int i)
        {
            var cRow = c.AsSpan(i * n, n);
            if (beta == 0f) cRow.Clear();
            else if (beta != 1f) TensorPrimitives.Multiply(cRow, beta, cRow);
            var aRow = a.AsSpan(i * k, k);
            for (int p = 0; p < k; p++)
            {
                float s = alpha * aRow[p];
                TensorPrimitives.MultiplyAdd(b.AsSpan(p * n, n), s, cRow, cRow);
            }
        }
    }

    /// <summary>dst[c, r] = src[r, c] for a rows x cols source.</summary>
    private static void Transpose(float[] src, int rows, int cols, float[] dst)
    {
        for (int r = 0; r < rows; r++)
            for (int col = 0; col < cols; col++)
                dst[col * rows + r] = src[r * cols + col];
    }
}
