namespace MLNet.ConvNet;

/// <summary>
/// The dimensions of a tensor, outermost first (row-major): <c>[N, C, X]</c> for 1-D signals,
/// <c>[N, C, H, W]</c> for images, <c>[N, C, D, H, W]</c> for volumes, <c>[N, F]</c> for dense features.
/// </summary>
/// <remarks>
/// Row-major <c>[N, C, H, W]</c> is the same memory as Knet's column-major <c>[W, H, C, N]</c>: the last
/// dimension varies fastest. This is the one place the layout is stated; cuDNN calls it NCHW / NCDHW.
/// </remarks>
public readonly struct Shape : IEquatable<Shape>
{
    private readonly int[]? _dims;

    /// <summary>Creates a shape; every dimension must be positive.</summary>
    public Shape(params int[] dims)
    {
        ArgumentNullException.ThrowIfNull(dims);
        if (dims.Length == 0) throw new ArgumentException("A shape needs at least one dimension.", nameof(dims));
        long length = 1;
        for (int i = 0; i < dims.Length; i++)
        {
            if (dims[i] <= 0)
                throw new ArgumentException($"Dimension {i} of shape {Format(dims)} is {dims[i]}; every dimension must be at least 1 (empty tensors are not supported).", nameof(dims));
            length *= dims[i];
            if (length > Array.MaxLength)
                throw new ArgumentException($"Shape {Format(dims)} holds {length}+ elements, more than one buffer can hold ({Array.MaxLength}).", nameof(dims));
        }
        _dims = (int[])dims.Clone();
    }

    private int[] Dims => _dims ?? throw new InvalidOperationException("This Shape is default(Shape) and has no dimensions.");

    /// <summary>Number of dimensions.</summary>
    public int Rank => Dims.Length;

    /// <summary>Size of dimension <paramref name="i"/>; negative indices count from the end.</summary>
    public int this[int i] => Dims[i < 0 ? Dims.Length + i : i];

    /// <summary>Size of dimension <paramref name="i"/>; <c>shape[^1]</c> is the last dimension (not the last element).</summary>
    public int this[Index i] => Dims[i];

    /// <summary>Total number of elements.</summary>
    public int Length
    {
        get { int n = 1; foreach (int d in Dims) n *= d; return n; }
    }

    /// <summary>A copy of the dimensions.</summary>
    public int[] ToArray() => (int[])Dims.Clone();

    /// <summary>The dimensions as a read-only span (no copy).</summary>
    public ReadOnlySpan<int> AsSpan() => Dims;

    /// <summary>Dimensions from index 2 on: the spatial sizes of an <c>[N, C, ...]</c> tensor.</summary>
    public int[] Spatial => Dims.Length > 2 ? Dims[2..] : Array.Empty<int>();

    /// <summary>Product of the dimensions from <paramref name="start"/> on (1 when none).</summary>
    public int SizeFrom(int start)
    {
        int n = 1;
        for (int i = start; i < Dims.Length; i++) n *= Dims[i];
        return n;
    }

    public bool Equals(Shape other) => Dims.AsSpan().SequenceEqual(other.Dims);
    public override bool Equals(object? obj) => obj is Shape s && Equals(s);
    public override int GetHashCode()
    {
        var h = new HashCode();
        foreach (int d in Dims) h.Add(d);
        return h.ToHashCode();
    }
    public static bool operator ==(Shape a, Shape b) => a.Equals(b);
    public static bool operator !=(Shape a, Shape b) => !a.Equals(b);

    /// <summary>Prints as <c>[2, 3, 28, 28]</c>.</summary>
    public override string ToString() => _dims is null ? "[]" : Format(_dims);

    internal static string Format(ReadOnlySpan<int> dims) => "[" + string.Join(", ", dims.ToArray()) + "]";
}
