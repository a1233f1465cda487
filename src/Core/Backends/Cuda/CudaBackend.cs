using System.Runtime.InteropServices;
using MLNet.ConvNet.Backends.Cuda.Interop;

namespace MLNet.ConvNet.Backends.Cuda;

/// <summary>
/// The NVIDIA GPU backend: tensors in device memory, convolution, pooling, LRN, batch norm and softmax in cuDNN 9,
/// matrix products in cuBLAS, and the rest (element-wise maths, the loss, dropout, optimizer updates) in small kernels
/// of our own (Kernels/*.cu, compiled once per process with NVRTC). One file per op family, as for the CPU.
/// </summary>
/// <remarks>
/// <para>Ordering: every kernel runs on one stream, so calls execute in the order they were made and need no
/// synchronisation among themselves; only <see cref="CopyToHost"/> (and <see cref="Sum"/>) wait for the device.</para>
/// <para>Threads: calls may come from any thread. Each public member takes the backend's lock and makes its context
/// current on the calling thread, so two threads never use the cuDNN or cuBLAS handle at once.</para>
/// <para>Created through <see cref="BackendFactory"/> (BackendKind.Cuda or Auto); one instance per device and TF32
/// setting per process.</para>
/// </remarks>
public sealed unsafe partial class CudaBackend : IBackend
{
    private readonly object _gate = new();
    private readonly nint _context;
    private readonly nint _stream;
    private readonly nint _cublas;
    private readonly nint _cudnn;
    private readonly DeviceMemoryPool _pool;
    private readonly CudaKernels _kernels;
    [ThreadStatic] private static nint t_current;

    private CudaBackend(int deviceIndex, bool allowTf32)
    {
        DeviceIndex = deviceIndex;
        AllowTf32 = allowTf32;
        Driver.Check(Driver.cuDeviceGet(out int device, deviceIndex), "cuDeviceGet");
        Device = device;
        var name = stackalloc byte[256];
        Driver.Check(Driver.cuDeviceGetName(name, 256, device), "cuDeviceGetName");
        DeviceName = Marshal.PtrToStringUTF8((nint)name) ?? "?";
        Driver.Check(Driver.cuDeviceGetAttribute(out int major, Driver.AttributeComputeCapabilityMajor, device), "cuDeviceGetAttribute");
        Driver.Check(Driver.cuDeviceGetAttribute(out int minor, Driver.AttributeComputeCapabilityMinor, device), "cuDeviceGetAttribute");
        ComputeCapability = major * 10 + minor;
        Driver.Check(Driver.cuDevicePrimaryCtxRetain(out _context, device), "cuDevicePrimaryCtxRetain");
        using (Enter())
        {
            Driver.Check(Driver.cuStreamCreate(out _stream, Driver.StreamNonBlocking), "cuStreamCreate");
            CuBlas.Check(CuBlas.cublasCreate_v2(out _cublas), "cublasCreate");
            CuBlas.Check(CuBlas.cublasSetStream_v2(_cublas, _stream), "cublasSetStream");
            CuBlas.Check(CuBlas.cublasSetMathMode(_cublas, allowTf32 ? CuBlas.Tf32TensorOpMath : CuBlas.DefaultMath), "cublasSetMathMode");
            CuDnn.Check(CuDnn.cudnnCreate(out _cudnn), "cudnnCreate");
            CuDnn.Check(CuDnn.cudnnSetStream(_cudnn, _stream), "cudnnSetStream");
            CudnnVersion = CuDnn.VersionText(CuDnn.cudnnGetVersion());
            _pool = new DeviceMemoryPool(() => Enter());
            _kernels = CudaKernels.For(device, ComputeCapability);
        }
    }

    private static readonly Dictionary<(int, bool), CudaBackend> Instances = [];

    /// <summary>The backend for <paramref name="deviceIndex"/> (made once per process and TF32 setting).</summary>
    internal static CudaBackend Get(int deviceIndex, bool allowTf32)
    {
        lock (Instances)
        {
            if (!Instances.TryGetValue((deviceIndex, allowTf32), out var b)) Instances[(deviceIndex, allowTf32)] = b = new CudaBackend(deviceIndex, allowTf32);
            return b;
        }
    }

    public string Name => $"cuda:{DeviceIndex}";

    /// <summary>1: the kernels run on the device, in order on one stream, so more host threads would only queue behind each other.</summary>
    public int HostWorkers => 1;

    /// <summary>This backend: its kernels use no host threads of their own.</summary>
    public IBackend WithOneHostThread() => this;

    /// <summary>The device's ordinal as the driver numbers them.</summary>
    public int DeviceIndex { get; }
    /// <summary>The driver's device handle.</summary>
    internal int Device { get; }
    /// <summary>The GPU's name ("NVIDIA H200").</summary>
    public string DeviceName { get; }
    /// <summary>Compute capability as major * 10 + minor (90 for Hopper).</summary>
    public int ComputeCapability { get; }
    /// <summary>The loaded cuDNN's version ("9.x.y").</summary>
    public string CudnnVersion { get; }
    /// <summary>Whether cuDNN and cuBLAS may use TF32 tensor cores for float32 (off by default: exact float32).</summary>
    public bool AllowTf32 { get; }

    /// <summary>Device bytes the backend holds from the driver (in use plus cached); flat after warm-up.</summary>
    public long AllocatedBytes => _pool.AllocatedBytes;
    /// <summary>How many times the backend called cuMemAlloc; stops growing once every step reuses its blocks.</summary>
    public long DriverAllocations => _pool.DriverAllocations;

    public override string ToString() => $"{Name} ({DeviceName}, compute {ComputeCapability / 10}.{ComputeCapability % 10}, cuDNN {CudnnVersion})";

    // ---- the lock and the context ----

    /// <summary>Takes the backend's lock and makes its context current on this thread; dispose to release the lock.</summary>
    private Scope Enter()
    {
        Monitor.Enter(_gate);
        if (t_current != _context)
        {
            int r = Driver.cuCtxSetCurrent(_context);
            if (r != Driver.Success) { Monitor.Exit(_gate); Driver.Check(r, "cuCtxSetCurrent"); }
            t_current = _context;
        }
        return new Scope(_gate);
    }

    /// <summary>Releases the lock taken by <see cref="Enter"/>; a struct, so a kernel call allocates nothing.</summary>
    private readonly struct Scope(object gate) : IDisposable
    {
        public void Dispose() => Monitor.Exit(gate);
    }

    /// <summary>Waits until every queued kernel has finished (errors of earlier asynchronous calls surface here).</summary>
    public void Synchronize()
    {
        using var _ = Enter();
        Driver.Check(Driver.cuStreamSynchronize(_stream), "cuStreamSynchronize");
    }

    // ---- events, for profiling (CudaKernelProfiler) ----

    /// <summary>A new event recorded on the stream now: it completes when every kernel queued before it has.</summary>
    internal nint RecordEvent()
    {
        using var _ = Enter();
        Driver.Check(Driver.cuEventCreate(out var e, 0), "cuEventCreate");
        Driver.Check(Driver.cuEventRecord(e, _stream), "cuEventRecord");
        return e;
    }

    /// <summary>Milliseconds of device time between two completed events; then destroys <paramref name="start"/>.</summary>
    internal float ElapsedAndRelease(nint start, nint end)
    {
        using var _ = Enter();
        Driver.Check(Driver.cuEventElapsedTime(out float ms, start, end), "cuEventElapsedTime");
        Driver.cuEventDestroy_v2(start);
        return ms;
    }

    /// <summary>Destroys an event.</summary>
    internal void ReleaseEvent(nint e)
    {
        using var _ = Enter();
        Driver.cuEventDestroy_v2(e);
    }

    // ---- tensors ----

    /// <summary>
    /// The device address of a tensor whose memory this backend allocated. Ownership is checked on the storage, not on
    /// <see cref="Tensor.Backend"/>, so a wrapper (a <see cref="DelegatingBackend"/> that counts, traces or profiles)
    /// can hand its tensors to these kernels.
    /// </summary>
    private ulong Ptr(Tensor t) =>
        t.Storage is CudaStorage s && s.Pool == _pool ? s.Pointer
        : throw new ArgumentException($"Tensor {t.Shape} lives on backend '{t.Backend.Name}', not on '{Name}'; copy it explicitly.", nameof(t));

    /// <summary>Optional tensors: 0 for null.</summary>
    private ulong PtrOrNull(Tensor? t) => t is null ? 0 : Ptr(t);

    public Tensor Allocate(Shape shape)
    {
        using var _ = Enter();
        var t = new Tensor(this, new CudaStorage(_pool, shape.Length), shape);
        if (shape.Length > 0) Driver.Check(Driver.cuMemsetD32Async(Ptr(t), 0, (nuint)shape.Length, _stream), "cuMemsetD32Async");
        return t;
    }

    public void CopyFromHost(ReadOnlySpan<float> source, Tensor destination)
    {
        SameLength(source.Length, destination);
        if (source.Length == 0) return;
        using var _ = Enter();
        // From pageable memory the driver stages the data before returning, so the span may change afterwards.
        fixed (float* p = source)
            Driver.Check(Driver.cuMemcpyHtoDAsync_v2(Ptr(destination), p, (nuint)source.Length * sizeof(float), _stream), "cuMemcpyHtoDAsync");
    }

    public void CopyToHost(Tensor source, Span<float> destination)
    {
        SameLength(destination.Length, source);
        if (destination.Length == 0) return;
        using var _ = Enter();
        fixed (float* p = destination)
        {
            Driver.Check(Driver.cuMemcpyDtoHAsync_v2(p, Ptr(source), (nuint)destination.Length * sizeof(float), _stream), "cuMemcpyDtoHAsync");
            Driver.Check(Driver.cuStreamSynchronize(_stream), "cuStreamSynchronize");
        }
    }

    public void Copy(Tensor source, Tensor destination)
    {
        SameLength(source, destination);
        if (source.Length == 0) return;
        using var _ = Enter();
        Driver.Check(Driver.cuMemcpyDtoDAsync_v2(Ptr(destination), Ptr(source), (nuint)source.Length * sizeof(float), _stream), "cuMemcpyDtoDAsync");
    }

    public void Fill(Tensor tensor, float value)
    {
        if (tensor.Length == 0) return;
        using var _ = Enter();
        Driver.Check(Driver.cuMemsetD32Async(Ptr(tensor), BitConverter.SingleToUInt32Bits(value), (nuint)tensor.Length, _stream), "cuMemsetD32Async");
    }

    // ---- launching our own kernels ----

    /// <summary>Threads per block of the element-wise kernels.</summary>
    private const int BlockSize = 256;

    /// <summary>Blocks for one thread per element, capped (the kernels loop with a grid stride).</summary>
    private static uint Blocks(long count) => (uint)Math.Clamp((count + BlockSize - 1) / BlockSize, 1, 65535);

    /// <summary>
    /// Launches kernel <paramref name="name"/> of Kernels/*.cu on the stream. Each argument is one 8-byte slot made by
    /// <see cref="Arg(ulong)"/> and its overloads: the driver reads as many bytes as the parameter's C type has, and the
    /// slots are little-endian, so an int or float in the low bytes of a slot is read correctly.
    /// Call with the lock held (from inside a member that called <see cref="Enter"/>).
    /// </summary>
    private void Launch(string name, uint blocks, uint threads, params ReadOnlySpan<ulong> args)
    {
        var values = stackalloc ulong[args.Length];
        var pointers = stackalloc void*[args.Length];
        for (int i = 0; i < args.Length; i++) { values[i] = args[i]; pointers[i] = &values[i]; }
        Driver.Check(Driver.cuLaunchKernel(_kernels[name], blocks, 1, 1, threads, 1, 1, 0, _stream, pointers, null), $"cuLaunchKernel({name})");
    }

    /// <summary>A two-dimensional grid: <paramref name="blocksX"/> x <paramref name="blocksY"/> blocks of <paramref name="threads"/>.</summary>
    private void Launch2D(string name, uint blocksX, uint blocksY, uint threads, params ReadOnlySpan<ulong> args)
    {
        var values = stackalloc ulong[args.Length];
        var pointers = stackalloc void*[args.Length];
        for (int i = 0; i < args.Length; i++) { values[i] = args[i]; pointers[i] = &values[i]; }
        Driver.Check(Driver.cuLaunchKernel(_kernels[name], blocksX, blocksY, 1, threads, 1, 1, 0, _stream, pointers, null), $"cuLaunchKernel({name})");
    }

    private static ulong Arg(ulong pointer) => pointer;
    private static ulong Arg(long value) => (ulong)value;
    private static ulong Arg(int value) => (uint)value;
    private static ulong Arg(float value) => BitConverter.SingleToUInt32Bits(value);
    private static ulong Arg(double value) => BitConverter.DoubleToUInt64Bits(value);
    private static ulong Arg(bool value) => value ? 1u : 0u;

    // ---- scratch memory for cuDNN ----

    private Tensor? _workspace;

    /// <summary>A device buffer of at least <paramref name="bytes"/> bytes, reused across calls (grows, never shrinks). Call with the lock held.</summary>
    private ulong Workspace(long bytes)
    {
        if (bytes <= 0) return 0;
        long floats = (bytes + sizeof(float) - 1) / sizeof(float);
        if (_workspace is null || _workspace.Length < floats)
        {
            _workspace?.Dispose();
            _workspace = new Tensor(this, new CudaStorage(_pool, checked((int)floats)), new Shape(checked((int)floats)));
        }
        return Ptr(_workspace);
    }

    private static void SameLength(Tensor a, Tensor b)
    {
        if (a.Length != b.Length)
            throw new ArgumentException($"Tensors {a.Shape} and {b.Shape} differ in length ({a.Length} vs {b.Length}).");
    }

    private static void SameLength(int length, Tensor t)
    {
        if (length != t.Length)
            throw new ArgumentException($"Tensor {t.Shape} has {t.Length} elements but the host buffer has {length}.");
    }

    private static void CheckLength(Tensor t, int length, string name)
    {
        if (t.Length != length)
            throw new ArgumentException($"{name} {t.Shape} should have {length} elements.", name);
    }
}
