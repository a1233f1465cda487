using MLNet.ConvNet.Backends;

namespace MLNet.ConvNet;

/// <summary>
/// A float32 tensor: a <see cref="Shape"/> over memory owned by a backend (host memory for the CPU backend,
/// device memory for a GPU backend).
/// </summary>
/// <remarks>
/// Code outside a backend never reads or writes tensor memory directly: moving data between host and
/// backend is explicit (<see cref="FromHost(ReadOnlySpan{float}, Shape, IBackend?)"/>, <see cref="ToHost()"/>,
/// <see cref="CopyFromHost"/>, <see cref="CopyToHost"/>). That is what lets the same layers run on a GPU.
/// </remarks>
public sealed class Tensor : IDisposable
{
    /// <summary>
    /// For backend implementations: a tensor of <paramref name="shape"/> over <paramref name="storage"/> that
    /// <paramref name="backend"/> owns. Ops dispatch every kernel to <see cref="Backend"/>.
    /// </summary>
    public static Tensor Create(IBackend backend, TensorStorage storage, Shape shape)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(storage);
        return new Tensor(backend, storage, shape);
    }

    internal Tensor(IBackend backend, TensorStorage storage, Shape shape)
    {
        if (shape.Length > storage.Length)
            throw new ArgumentException($"Shape {shape} needs {shape.Length} elements but the storage holds {storage.Length}.", nameof(shape));
        Backend = backend;
        Storage = storage;
        Shape = shape;
    }

    /// <summary>The dimensions, outermost first.</summary>
    public Shape Shape { get; }

    /// <summary>The backend that owns the memory and runs kernels on it.</summary>
    public IBackend Backend { get; }

    /// <summary>The backend's memory; a reshaped view shares it with its source.</summary>
    public TensorStorage Storage { get; }

    /// <summary>Number of elements.</summary>
    public int Length => Shape.Length;

    /// <summary>Rank (number of dimensions).</summary>
    public int Rank => Shape.Rank;

    /// <summary>Copies host data into a new tensor on <paramref name="backend"/> (<see cref="DefaultBackend"/> when null).</summary>
    public static Tensor FromHost(ReadOnlySpan<float> data, Shape shape, IBackend? backend = null)
    {
        if (data.Length != shape.Length)
            throw new ArgumentException($"Shape {shape} needs {shape.Length} values but {data.Length} were given.", nameof(data));
        var t = (backend ?? DefaultBackend.Instance).Allocate(shape);
        t.CopyFromHost(data);
        return t;
    }

    /// <summary>Copies host data into a new tensor; shorthand for <c>FromHost(data, new Shape(dims))</c> on the CPU.</summary>
    public static Tensor FromHost(float[] data, params int[] dims) => FromHost(data, new Shape(dims));

    /// <summary>A new zero-filled tensor on <paramref name="backend"/> (<see cref="DefaultBackend"/> when null).</summary>
    public static Tensor Zeros(Shape shape, IBackend? backend = null) => (backend ?? DefaultBackend.Instance).Allocate(shape);

    /// <summary>Copies the whole tensor to a new host array.</summary>
    public float[] ToHost()
    {
        var result = new float[Length];
        CopyToHost(result);
        return result;
    }

    /// <summary>Copies the whole tensor into <paramref name="destination"/>, which must have <see cref="Length"/> elements.</summary>
    public void CopyToHost(Span<float> destination)
    {
        if (destination.Length != Length)
            throw new ArgumentException($"Tensor {Shape} has {Length} elements but the destination has {destination.Length}.", nameof(destination));
        Backend.CopyToHost(this, destination);
    }

    /// <summary>Overwrites the whole tensor with <paramref name="source"/>, which must have <see cref="Length"/> elements.</summary>
    public void CopyFromHost(ReadOnlySpan<float> source)
    {
        if (source.Length != Length)
            throw new ArgumentException($"Tensor {Shape} has {Length} elements but the source has {source.Length}.", nameof(source));
        Backend.CopyFromHost(source, this);
    }

    /// <summary>A view with another shape of the same length over the same memory (no copy).</summary>
    public Tensor Reshape(Shape shape)
    {
        if (shape.Length != Length)
            throw new ArgumentException($"Cannot reshape {Shape} ({Length} elements) to {shape} ({shape.Length} elements).", nameof(shape));
        return new Tensor(Backend, Storage, shape);
    }

    /// <summary>A view with another shape; shorthand for <c>Reshape(new Shape(dims))</c>.</summary>
    public Tensor Reshape(params int[] dims) => Reshape(new Shape(dims));

    /// <summary>Releases the memory (a no-op for garbage-collected CPU storage; views share it).</summary>
    public void Dispose() => Storage.Dispose();

    public override string ToString() => $"Tensor{Shape} on {Backend.Name}";
}

/// <summary>Memory owned by a backend. Only that backend's kernels look inside.</summary>
public abstract class TensorStorage : IDisposable
{
    /// <summary>Capacity in float32 elements.</summary>
    public abstract int Length { get; }

    public virtual void Dispose() { }
}
