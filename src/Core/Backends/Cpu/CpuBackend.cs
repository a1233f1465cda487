using System.Runtime.CompilerServices;
using System.Numerics.Tensors;
using MLNet.ConvNet.Backends.Cpu.Kernels;

namespace MLNet.ConvNet.Backends.Cpu;

/// <summary>Host memory for the CPU backend: a plain float array.</summary>
public sealed class CpuStorage : TensorStorage
{
    internal CpuStorage(int length) => Data = new float[length];
    internal float[] Data { get; }
    public override int Length => Data.Length;
}

/// <summary>
/// The pure-managed CPU backend: kernels over spans of contiguous float arrays, SIMD through
/// <see cref="TensorPrimitives"/> and <see cref="System.Runtime.Intrinsics"/>, parallel over independent
/// output slices (never over a reduction, so results do not depend on the thread count).
/// One file per op family: CpuBackend.Convolution.cs, CpuBackend.Pooling.cs, ...
/// </summary>
/// <remarks>
/// After warm-up a kernel call allocates nothing on the managed heap: parallel loops run through
/// <see cref="For{TBody}"/> with a small readonly struct holding the loop's arguments (where a lambda would capture
/// them), plans are structs, and scratch buffers are rented from <see cref="System.Buffers.ArrayPool{T}"/>.
/// tests/Core.Tests/KernelAllocationTests.cs checks it.
/// </remarks>
public sealed partial class CpuBackend : IBackend
{
    /// <summary>A shared instance using every core.</summary>
    public static CpuBackend Default { get; } = new();

    /// <summary>Creates a CPU backend using at most <paramref name="maxThreads"/> threads (all cores when null).</summary>
    public CpuBackend(int? maxThreads = null)
    {
        if (maxThreads is <= 0) throw new ArgumentOutOfRangeException(nameof(maxThreads), maxThreads, "maxThreads must be at least 1.");
        MaxThreads = maxThreads ?? Environment.ProcessorCount;
    }

    /// <summary>The workers of <see cref="For{TBody}"/>, shared by the backends with this thread count; started on first use.</summary>
    private WorkerPool? _pool;

    /// <summary>The most threads a kernel uses.</summary>
    public int MaxThreads { get; }

    /// <summary>
    /// A CPU backend running the plain readable loops for MatMul, convolution and pooling (the reference path the fast
    /// kernels are tested against) instead of the blocked SIMD kernels in Kernels/: what <see cref="Reference.ReferenceBackend"/> forwards
    /// those kernels to (through <see cref="DefaultBackend"/>), and the benchmarks' baseline.
    /// </summary>
    internal CpuBackend(int? maxThreads, bool referenceKernels) : this(maxThreads) => UseReferenceKernels = referenceKernels;

    /// <summary>True for the reference loops (set only through the constructor above).</summary>
    internal bool UseReferenceKernels { get; }

    /// <summary>The one-thread sibling (<see cref="WithOneHostThread"/>), made on first use.</summary>
    private CpuBackend? _oneThread;

    /// <summary><see cref="MaxThreads"/>: rows spread over that many workers, each with a one-thread copy, keep every core busy.</summary>
    public int HostWorkers => MaxThreads;

    /// <summary>Itself when it has one thread, else a cached one-thread CPU backend (same kernels, same storage).</summary>
    public IBackend WithOneHostThread()
    {
        if (MaxThreads == 1) return this;
        var one = Volatile.Read(ref _oneThread);
        if (one is null)
        {
            one = new CpuBackend(1, UseReferenceKernels) { GemmIsa = GemmIsa };
            one = Interlocked.CompareExchange(ref _oneThread, one, null) ?? one;
        }
        return one;
    }

    /// <summary>The GEMM micro-kernel the fast path uses; tests pin each one in turn.</summary>
    internal GemmIsa GemmIsa { get; init; } = Sgemm.Best;

    public string Name => "cpu";

    /// <summary>The tensor's elements as a span (CPU tensors only).</summary>
    internal static Span<float> Span(Tensor t)
    {
        if (t.Storage is not CpuStorage s)
            throw new ArgumentException($"Tensor {t.Shape} lives on backend '{t.Backend.Name}', not on the CPU; copy it explicitly.", nameof(t));
        return s.Data.AsSpan(0, t.Length);
    }

    /// <summary>The tensor's backing array (its first <c>t.Length</c> elements are the tensor).</summary>
    internal static float[] Array(Tensor t) =>
        t.Storage is CpuStorage s ? s.Data
        : throw new ArgumentException($"Tensor {t.Shape} lives on backend '{t.Backend.Name}', not on the CPU; copy it explicitly.", nameof(t));

    /// <summary>
    /// Runs body.Run(i) for i in [0, count) on up to <see cref="MaxThreads"/> threads (see <see cref="WorkerPool"/>),
    /// in order on this thread when there is one item or one thread, or when the pool is busy (a concurrent caller,
    /// or a call from inside a body). Allocates nothing. An exception from the body is rethrown as it was thrown.
    /// </summary>
    internal void For<TBody>(int count, TBody body) where TBody : struct, IParallelBody
    {
        if (count <= 0) return;
        if (count > 1 && MaxThreads > 1 && (_pool ??= WorkerPool.ForThreads(MaxThreads)).TryRun(count, ref body)) return;
        for (int i = 0; i < count; i++) body.Run(i);
    }

    // ---- memory ----

    public Tensor Allocate(Shape shape) => new(this, new CpuStorage(shape.Length), shape);

    public void CopyFromHost(ReadOnlySpan<float> source, Tensor destination) => source.CopyTo(Span(destination));

    public void CopyToHost(Tensor source, Span<float> destination) => Span(source).CopyTo(destination);

    public void Copy(Tensor source, Tensor destination)
    {
        SameLength(source, destination);
        Span(source).CopyTo(Span(destination));
    }

    public void Fill(Tensor tensor, float value) => Span(tensor).Fill(value);

    // ---- element-wise ----

    public void Scale(Tensor x, float alpha, Tensor y) { SameLength(x, y); TensorPrimitives.Multiply(Span(x), alpha, Span(y)); }

    public void Add(Tensor a, Tensor b, Tensor y) { SameLength(a, b); SameLength(a, y); TensorPrimitives.Add(Span(a), Span(b), Span(y)); }

    public void AddScaled(Tensor x, float alpha, Tensor y) { SameLength(x, y); TensorPrimitives.MultiplyAdd(Span(x), alpha, Span(y), Span(y)); }

    public void Multiply(Tensor a, Tensor b, Tensor y) { SameLength(a, b); SameLength(a, y); TensorPrimitives.Multiply(Span(a), Span(b), Span(y)); }

    public double Sum(Tensor x)
    {
        double s = 0;
        foreach (float v in Span(x)) s += v;
        return s;
    }

    // ---- per-channel helpers ----

    public void AddChannelBias(Tensor y, Tensor bias)
    {
        int n = y.Shape[0], c = y.Shape[1], inner = y.Shape.SizeFrom(2);
        CheckLength(bias, c, "bias");
        // A dense layer's [N, C] output has one element per (n, c): add the bias vector to each row instead.
        if (inner == 1) For(n, new AddBiasRowBody(Array(y), Array(bias), c));
        else For(n * c, new AddChannelBiasBody(Array(y), Array(bias), c, inner));
    }

    private readonly struct AddBiasRowBody(float[] y, float[] bias, int channels) : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int n)
        {
            var row = y.AsSpan(n * channels, channels);
            TensorPrimitives.Add(row, bias.AsSpan(0, channels), row);
        }
    }

    private readonly struct AddChannelBiasBody(float[] y, float[] bias, int channels, int inner) : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int nc)
        {
            var row = y.AsSpan(nc * inner, inner);
            TensorPrimitives.Add(row, bias[nc % channels], row);
        }
    }

    public void SumPerChannel(Tensor dy, Tensor db)
    {
        int n = dy.Shape[0], c = dy.Shape[1], inner = dy.Shape.SizeFrom(2);
        CheckLength(db, c, "db");
        For(c, new SumPerChannelBody(Array(dy), Array(db), n, c, inner, UseReferenceKernels));
    }

    private readonly struct SumPerChannelBody(float[] dy, float[] db, int n, int c, int inner, bool reference) : IParallelBody
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int ch)
        {
            double s = 0;
            for (int i = 0; i < n; i++)
            {
                var row = dy.AsSpan((i * c + ch) * inner, inner);
                // Fast path: each row summed in float SIMD, the rows in double (a scalar double chain is latency-bound).
                if (!reference) s += Reductions.Sum(row);
                else foreach (float v in row) s += v;
            }
            db[ch] = (float)s;
        }
    }

    // ---- matrix product ----

    public void MatMul(Tensor a, bool transA, Tensor b, bool transB, Tensor c, float alpha = 1f, float beta = 0f)
    {
        var (m, n, k, _, _) = Ops.MatMulGeometry.Create(a, transA, b, transB, c);
        if (UseReferenceKernels) { Gemm.Multiply(this, m, n, k, Array(a), transA, Array(b), transB, Array(c), alpha, beta); return; }
        if (!transA && transB && alpha == 1f && (beta == 0f || beta == 1f))
        {
            // A Bᵀ with both row-major (a dense layer's x Wᵀ): every C element is a dot of two contiguous rows.
            DotGemm.Multiply(m, n, k, Array(a), 0, k, Array(b), 0, null, k, beta, Array(c), 0, n, this, GemmIsa != GemmIsa.Scalar);
            return;
        }
        // A is [M, K] (or [K, M] read transposed), B is [K, N] (or [N, K] read transposed); packing absorbs the transposes.
        var av = transA ? MatrixView.Transposed(Array(a), 0, m) : MatrixView.RowMajor(Array(a), 0, k);
        var bv = transB ? MatrixView.Transposed(Array(b), 0, k) : MatrixView.RowMajor(Array(b), 0, n);
        Sgemm.Multiply(m, n, k, alpha, av, bv, beta, Array(c), 0, n, this, GemmIsa);
    }

    /// <summary>Three ints stored inline (a per-axis value of a plan padded to three spatial dimensions), so plans need no arrays.</summary>
    [System.Runtime.CompilerServices.InlineArray(3)]
    private struct Int3
    {
        private int _element;
    }

    private static void SameLength(Tensor a, Tensor b)
    {
        if (a.Length != b.Length)
            throw new ArgumentException($"Tensors {a.Shape} and {b.Shape} differ in length ({a.Length} vs {b.Length}).");
    }

    private static void CheckLength(Tensor t, int length, string name)
    {
        if (t.Length != length)
            throw new ArgumentException($"{name} {t.Shape} should have {length} elements.", name);
    }
}
