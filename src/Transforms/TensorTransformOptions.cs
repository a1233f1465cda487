namespace MLNet.ConvNet.Transforms;

/// <summary>
/// The options every transform of this project shares: which column it reads, which it writes, how a flat vector is
/// shaped, and how many rows go through the engine at once.
/// </summary>
public abstract record TensorTransformOptions
{
    /// <summary>The column to write: a <c>Vector&lt;Single, ...&gt;</c> whose dimensions are the output row shape. Required.</summary>
    public string OutputColumnName { get; set; } = "";

    /// <summary>The column to read, a known-size vector of Single; null means <see cref="OutputColumnName"/> (the column is replaced).</summary>
    public string? InputColumnName { get; set; }

    /// <summary>
    /// InputShape = null: the row shape <c>[C, X...]</c> is the column type's dimensions. Give it for a flat vector
    /// (for example <c>[1, 28, 28]</c> for a <c>Vector&lt;Single, 784&gt;</c>) or to re-read a shaped one; its product must
    /// equal the vector's size.
    /// </summary>
    public int[]? InputShape { get; set; }

    /// <summary>BatchSize = 64: rows read ahead and sent through the engine in one call.</summary>
    public int BatchSize { get; set; } = TensorTransformDefaults.BatchSize;

    /// <summary>Checks the shared options; throws naming the bad one.</summary>
    internal void ValidateColumns(string transform)
    {
        if (string.IsNullOrWhiteSpace(OutputColumnName))
            throw new ArgumentException($"{transform}: OutputColumnName is required.", nameof(OutputColumnName));
        if (InputColumnName is { } input && string.IsNullOrWhiteSpace(input))
            throw new ArgumentException($"{transform}: InputColumnName is empty; leave it null to read OutputColumnName.", nameof(InputColumnName));
        if (BatchSize < 1)
            throw new ArgumentOutOfRangeException(nameof(BatchSize), BatchSize, $"{transform}: BatchSize must be at least 1.");
        if (InputShape is { } shape && (shape.Length == 0 || shape.Any(d => d < 1)))
            throw new ArgumentException($"{transform}: InputShape {TensorColumn.Format(shape)} must list at least one dimension, each at least 1.", nameof(InputShape));
    }

    /// <summary>The input column's name: <see cref="InputColumnName"/>, or <see cref="OutputColumnName"/> when null.</summary>
    internal string SourceColumnName => InputColumnName ?? OutputColumnName;
}

/// <summary>Defaults shared by every transform (each estimator's <c>Defaults</c> repeats them by reference).</summary>
public static class TensorTransformDefaults
{
    /// <summary>Rows per engine call: enough to amortize a call, small enough to keep a cursor's buffers in cache.</summary>
    public const int BatchSize = 64;
}
