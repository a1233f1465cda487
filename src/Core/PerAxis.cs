namespace MLNet.ConvNet;

/// <summary>
/// An integer option given per spatial dimension (padding, stride, dilation, window), or one value for all.
/// </summary>
/// <remarks>
/// <c>Padding = 1</c> is shorthand for <c>Padding = new[] { 1, 1 }</c> on a 2-D input, as in Knet.
/// Values are listed in the tensor's order (D, H, W), which is the reverse of Knet's column-major tuples:
/// Knet's <c>padding=(1,0)</c> on a <c>(W,H,C,N)</c> array is our <c>new[] { 0, 1 }</c> on <c>[N, C, H, W]</c>.
/// </remarks>
public readonly struct PerAxis : IEquatable<PerAxis>
{
    private readonly int[]? _values;

    /// <summary>One value for every spatial dimension.</summary>
    public PerAxis(int value) => _values = [value];

    /// <summary>One value per spatial dimension, outermost first.</summary>
    public PerAxis(params int[] values)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (values.Length == 0) throw new ArgumentException("Give at least one value.", nameof(values));
        _values = (int[])values.Clone();
    }

    public static implicit operator PerAxis(int value) => new(value);
    public static implicit operator PerAxis(int[] values) => new(values);

    /// <summary>True for <c>default(PerAxis)</c>: the option was not given.</summary>
    public bool IsDefault => _values is null;

    /// <summary>
    /// The values for <paramref name="rank"/> spatial dimensions: a scalar is repeated, a list must have
    /// exactly <paramref name="rank"/> entries. <paramref name="option"/> names the option in errors.
    /// </summary>
    public int[] Expand(int rank, string option)
    {
        if (_values is null) throw new InvalidOperationException($"{option} was not given.");
        if (_values.Length == 1) return Enumerable.Repeat(_values[0], rank).ToArray();
        if (_values.Length != rank)
            throw new ArgumentException($"{option} has {_values.Length} values {Shape.Format(_values)} but the input has {rank} spatial dimension(s); give one value or {rank}.", option);
        return (int[])_values.Clone();
    }

    public bool Equals(PerAxis other) =>
        (_values ?? []).AsSpan().SequenceEqual(other._values ?? []);
    public override bool Equals(object? obj) => obj is PerAxis p && Equals(p);
    public override int GetHashCode() => _values is null ? 0 : _values.Aggregate(17, (h, v) => h * 31 + v);
    public override string ToString() => _values is null ? "default" : _values.Length == 1 ? _values[0].ToString() : Shape.Format(_values);
}
