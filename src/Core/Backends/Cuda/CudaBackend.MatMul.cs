using MLNet.ConvNet.Backends.Cuda.Interop;

namespace MLNet.ConvNet.Backends.Cuda;

// The matrix product through cuBLAS sgemm (column-major), with IBackend's row-major semantics.
public sealed unsafe partial class CudaBackend
{
    /// <summary>
    /// c = alpha op(a) op(b) + beta c on row-major matrices (see <see cref="IBackend.MatMul"/>).
    /// </summary>
    /// <remarks>
    /// <para>The mapping to column-major cuBLAS. A row-major R x C buffer, read column-major with leading dimension C,
    /// is its transpose (C x R). So the row-major c [M, N] is, to cuBLAS, the column-major cᵀ [N, M] with ldc = N, and
    /// <c>cᵀ = op(b)ᵀ op(a)ᵀ</c>: we ask cuBLAS for the product with the operands swapped, m' = N, n' = M, k' = K.</para>
    /// <para>Operand b: stored row-major with bCols columns, cuBLAS sees bᵀ_stored (ldb = bCols).
    /// Without transB the stored b is [K, N], cuBLAS sees [N, K] = op(b)ᵀ already: CUBLAS_OP_N.
    /// With transB the stored b is [N, K], cuBLAS sees [K, N] and op(b)ᵀ = the stored b [N, K] is its transpose: CUBLAS_OP_T.
    /// Operand a likewise: lda = aCols; CUBLAS_OP_N without transA ([M, K] seen as [K, M] = op(a)ᵀ), CUBLAS_OP_T with it.
    /// So the flags pass through unchanged and each leading dimension is the stored matrix's row length.</para>
    /// <para>Higher-rank tensors are read as [first dimension, rest flattened], which is the same memory.
    /// beta = 0 overwrites c without reading it (cuBLAS does not read C when beta is 0, as the CPU clears the row), so
    /// NaN in an uninitialised c does not leak. With AllowTf32 off the handle is in default (true fp32) math mode.</para>
    /// </remarks>
    public void MatMul(Tensor a, bool transA, Tensor b, bool transB, Tensor c, float alpha = 1f, float beta = 0f)
    {
        var (m, n, k, aCols, bCols) = Ops.MatMulGeometry.Create(a, transA, b, transB, c);
        if (m == 0 || n == 0) return;
        using var _ = Enter();
        // Leading dimensions must be at least 1 even for an empty operand (k = 0, where cuBLAS just scales c by beta).
        int lda = Math.Max(1, aCols), ldb = Math.Max(1, bCols), ldc = n;
        CuBlas.Check(CuBlas.cublasSgemm_v2(_cublas, transB ? CuBlas.OpT : CuBlas.OpN, transA ? CuBlas.OpT : CuBlas.OpN,
            n, m, k, &alpha, Ptr(b), ldb, Ptr(a), lda, &beta, Ptr(c), ldc), "cublasSgemm");
    }
}
