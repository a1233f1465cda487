using MLNet.ConvNet.Backends.Cuda.Interop;

namespace MLNet.ConvNet.Backends.Cuda;

/// <summary>Device memory for the CUDA backend: a block from the backend's <see cref="DeviceMemoryPool"/>.</summary>
/// <remarks>
/// Dispose (or, for a tensor nobody disposed, the finalizer) gives the block back to the pool, not to the driver, so
/// a training step that allocates the same shapes again reuses the same blocks. Giving back while kernels that use
/// the block are still queued is safe: the backend has one stream, so a later kernel that reuses it runs after them.
/// </remarks>
public sealed class CudaStorage : TensorStorage
{
    private readonly DeviceMemoryPool _pool;
    private ulong _pointer;

    internal CudaStorage(DeviceMemoryPool pool, int length)
    {
        _pool = pool;
        Length = length;
        Bytes = DeviceMemoryPool.RoundUp((nuint)Math.Max(1, length) * sizeof(float));
        _pointer = pool.Rent(Bytes);
    }

    public override int Length { get; }

    /// <summary>The pool (one per backend) the block came from: how a backend knows the memory is its own.</summary>
    internal DeviceMemoryPool Pool => _pool;

    /// <summary>The block's size as the pool knows it (rounded up).</summary>
    internal nuint Bytes { get; }

    /// <summary>The device address; an ObjectDisposedException after Dispose.</summary>
    internal ulong Pointer => _pointer != 0 ? _pointer : throw new ObjectDisposedException(nameof(CudaStorage), "This tensor's device memory was released (Dispose).");

    public override void Dispose()
    {
        Release();
        GC.SuppressFinalize(this);
    }

    ~CudaStorage() => Release();

    private void Release()
    {
        ulong p = Interlocked.Exchange(ref _pointer, 0);
        if (p != 0) _pool.Return(p, Bytes);
    }
}

/// <summary>
/// A caching allocator: blocks are kept by rounded size and handed out again, so a warm training step allocates no
/// device memory. When the driver is out of memory it first lets the garbage collector return blocks of tensors
/// nobody disposed, then frees the cached blocks, then tries once more before failing with the sizes involved.
/// </summary>
internal sealed class DeviceMemoryPool(Func<IDisposable> enterContext)
{
    private readonly object _gate = new();
    private readonly Dictionary<nuint, Stack<ulong>> _free = [];
    private long _allocated, _cached, _driverAllocations;

    /// <summary>Bytes currently held from the driver (in use plus cached).</summary>
    public long AllocatedBytes { get { lock (_gate) return _allocated; } }
    /// <summary>Bytes held in the cache, free for reuse.</summary>
    public long CachedBytes { get { lock (_gate) return _cached; } }
    /// <summary>How many times the pool called cuMemAlloc (flat after warm-up when every step reuses its blocks).</summary>
    public long DriverAllocations { get { lock (_gate) return _driverAllocations; } }

    /// <summary>Sizes round up to 512 bytes below 1 MiB and to 2 MiB above, so nearby sizes share blocks.</summary>
    public static nuint RoundUp(nuint bytes) => bytes <= (1 << 20) ? (bytes + 511) & ~(nuint)511 : (bytes + (2 << 20) - 1) & ~(nuint)((2 << 20) - 1);

    public ulong Rent(nuint bytes)
    {
        lock (_gate)
        {
            if (_free.TryGetValue(bytes, out var stack) && stack.Count > 0) { _cached -= (long)bytes; return stack.Pop(); }
        }
        using (enterContext())
        {
            int r = Driver.cuMemAlloc_v2(out ulong p, bytes);
            if (r == Driver.OutOfMemory)
            {
                // Tensors that were dropped without Dispose hold blocks until their finalizers run.
                GC.Collect(); GC.WaitForPendingFinalizers();
                lock (_gate)
                {
                    if (_free.TryGetValue(bytes, out var stack) && stack.Count > 0) { _cached -= (long)bytes; return stack.Pop(); }
                }
                ReleaseCached();
                r = Driver.cuMemAlloc_v2(out p, bytes);
            }
            if (r != Driver.Success)
            {
                Driver.cuMemGetInfo_v2(out var free, out var total);
                throw new CudaException("cuMemAlloc", r, $"{Driver.Describe(r)} asking for {bytes:N0} bytes; the pool holds {AllocatedBytes:N0}, the device has {free:N0} of {total:N0} free");
            }
            lock (_gate) { _allocated += (long)bytes; _driverAllocations++; }
            return p;
        }
    }

    public void Return(ulong pointer, nuint bytes)
    {
        lock (_gate)
        {
            if (!_free.TryGetValue(bytes, out var stack)) _free[bytes] = stack = new Stack<ulong>();
            stack.Push(pointer);
            _cached += (long)bytes;
        }
    }

    /// <summary>Gives every cached block back to the driver.</summary>
    public void ReleaseCached()
    {
        List<(ulong, nuint)> blocks = [];
        lock (_gate)
        {
            foreach (var (size, stack) in _free) while (stack.Count > 0) blocks.Add((stack.Pop(), size));
            _cached = 0;
        }
        using (enterContext())
            foreach (var (p, size) in blocks)
            {
                Driver.cuMemFree_v2(p);
                lock (_gate) _allocated -= (long)size;
            }
    }
}
