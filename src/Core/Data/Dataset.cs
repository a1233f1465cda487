namespace MLNet.ConvNet.Data;

/// <summary>
/// Labelled samples that a trainer reads in mini-batches by index (any order): the engine's only view of data,
/// so an in-memory array, a file reader or an ML.NET IDataView adapter can all feed it.
/// </summary>
public interface IDataset
{
    /// <summary>Number of samples.</summary>
    int Count { get; }
    /// <summary>The shape of one sample, without a batch dimension (<c>[1, 28, 28]</c>).</summary>
    Shape SampleShape { get; }
    /// <summary>Number of classes; labels are in [0, ClassCount).</summary>
    int ClassCount { get; }
    /// <summary>
    /// Writes the samples at <paramref name="indices"/> into <paramref name="features"/> (<c>indices.Length x
    /// SampleShape.Length</c> floats, row after row) and their labels into <paramref name="labels"/>.
    /// </summary>
    void CopyBatch(ReadOnlySpan<int> indices, Span<float> features, Span<int> labels);
}

/// <summary>An <see cref="IDataset"/> held in two arrays: features (sample after sample) and labels.</summary>
public sealed class InMemoryDataset : IDataset
{
    private readonly float[] _features;
    private readonly int[] _labels;

    /// <summary>
    /// Wraps <paramref name="features"/> (<c>labels.Length x sampleShape.Length</c> values) and <paramref name="labels"/>
    /// (each in [0, <paramref name="classCount"/>)); the arrays are used as they are, not copied.
    /// </summary>
    public InMemoryDataset(float[] features, int[] labels, Shape sampleShape, int classCount)
    {
        ArgumentNullException.ThrowIfNull(features);
        ArgumentNullException.ThrowIfNull(labels);
        ArgumentOutOfRangeException.ThrowIfLessThan(classCount, 1);
        if (features.Length != (long)labels.Length * sampleShape.Length)
            throw new ArgumentException($"{labels.Length} labels with samples of shape {sampleShape} need {(long)labels.Length * sampleShape.Length} feature values; got {features.Length}.", nameof(features));
        for (int i = 0; i < labels.Length; i++)
            if ((uint)labels[i] >= (uint)classCount)
                throw new ArgumentOutOfRangeException(nameof(labels), labels[i], $"Label {labels[i]} of sample {i} is outside [0, {classCount}).");
        _features = features; _labels = labels; SampleShape = sampleShape; ClassCount = classCount;
    }

    public int Count => _labels.Length;
    public Shape SampleShape { get; }
    public int ClassCount { get; }

    /// <summary>The features, sample after sample (not a copy).</summary>
    public ReadOnlySpan<float> Features => _features;
    /// <summary>The labels (not a copy).</summary>
    public ReadOnlySpan<int> Labels => _labels;

    public void CopyBatch(ReadOnlySpan<int> indices, Span<float> features, Span<int> labels)
    {
        int len = SampleShape.Length;
        if (features.Length < indices.Length * len || labels.Length < indices.Length)
            throw new ArgumentException($"CopyBatch: {indices.Length} samples need {indices.Length * len} feature slots and {indices.Length} label slots; got {features.Length} and {labels.Length}.");
        for (int i = 0; i < indices.Length; i++)
        {
            int s = indices[i];
            if ((uint)s >= (uint)Count) throw new ArgumentOutOfRangeException(nameof(indices), s, $"Sample index {s} is outside [0, {Count}).");
            _features.AsSpan(s * len, len).CopyTo(features.Slice(i * len, len));
            labels[i] = _labels[s];
        }
    }

    /// <summary>The first <paramref name="count"/> samples (copies), or this dataset when it is not larger.</summary>
    public InMemoryDataset Take(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (count >= Count) return this;
        return new InMemoryDataset(_features[..(count * SampleShape.Length)], _labels[..count], SampleShape, ClassCount);
    }
}

/// <summary>
/// Some samples of another dataset, by index, without copying them: sample i is <c>inner[indices[i]]</c> (a validation
/// split of a dataset that may live on disk).
/// </summary>
/// <remarks>One <see cref="CopyBatch"/> runs at a time (it maps the indices in a buffer of its own).</remarks>
public sealed class SubsetDataset : IDataset
{
    private readonly IDataset _inner;
    private readonly int[] _indices;
    private int[] _mapped = [];

    /// <summary>The samples of <paramref name="inner"/> at <paramref name="indices"/> (used as given, not copied), in that order.</summary>
    public SubsetDataset(IDataset inner, int[] indices)
    {
        ArgumentNullException.ThrowIfNull(inner);
        ArgumentNullException.ThrowIfNull(indices);
        foreach (int i in indices)
            if ((uint)i >= (uint)inner.Count) throw new ArgumentOutOfRangeException(nameof(indices), i, $"Sample index {i} is outside [0, {inner.Count}).");
        _inner = inner; _indices = indices;
    }

    /// <inheritdoc/>
    public int Count => _indices.Length;
    /// <inheritdoc/>
    public Shape SampleShape => _inner.SampleShape;
    /// <inheritdoc/>
    public int ClassCount => _inner.ClassCount;

    /// <inheritdoc/>
    public void CopyBatch(ReadOnlySpan<int> indices, Span<float> features, Span<int> labels)
    {
        if (_mapped.Length < indices.Length) _mapped = new int[indices.Length];
        for (int i = 0; i < indices.Length; i++)
        {
            int s = indices[i];
            if ((uint)s >= (uint)Count) throw new ArgumentOutOfRangeException(nameof(indices), s, $"Sample index {s} is outside [0, {Count}).");
            _mapped[i] = _indices[s];
        }
        _inner.CopyBatch(_mapped.AsSpan(0, indices.Length), features, labels);
    }
}
