using MLNet.ConvNet.Backends;

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

    /// <summary>
    /// Backend = Auto: where the transform's kernels run (the GPU when a CUDA backend and device are present, else the
    /// CPU; Cpu; Cuda, which makes Fit throw <see cref="BackendUnavailableException"/> when no GPU can be used). The
    /// fitted transformer's <c>Backend</c> and <c>BackendReason</c> say which one runs and why.
    /// </summary>
    public BackendKind Backend { get; set; } = BackendKind.Auto;

    /// <summary>DeviceIndex = 0: the CUDA device (as the driver numbers them). Ignored by the CPU.</summary>
    public int DeviceIndex { get; set; }

    /// <summary>MaxThreads = null (all cores): threads of the CPU backend. Results do not depend on it.</summary>
    public int? MaxThreads { get; set; }

    /// <summary>CustomBackend = null: for advanced use and tests, a backend instance to run on instead of the one the options above choose.</summary>
    public IBackend? CustomBackend { get; set; }

    /// <summary>The backend these options ask for: <see cref="CustomBackend"/>, else <see cref="BackendFactory.Create"/>'s choice.</summary>
    internal BackendChoice CreateBackend() => CustomBackend is { } custom
        ? new BackendChoice(custom, "option CustomBackend")
        : BackendFactory.Create(new BackendOptions { Kind = Backend, DeviceIndex = DeviceIndex, MaxThreads = MaxThreads });

    /// <summary>Checks the shared options; throws naming the bad one.</summary>
    internal void ValidateColumns(string transform)
    {
        if (string.IsNullOrWhiteSpace(OutputColumnName))
            throw new ArgumentException($"{transform}: OutputColumnName is required.", nameof(OutputColumnName));
        if (InputColumnName is { } input && string.IsNullOrWhiteSpace(input))
            throw new ArgumentException($"{transform}: InputColumnName is empty; leave it null to read OutputColumnName.", nameof(InputColumnName));
        if (BatchSize < 1)
            throw new ArgumentOutOfRangeException(nameof(BatchSize), BatchSize, $"{transform}: BatchSize must be at least 1.");
        if (!Enum.IsDefined(Backend))
            throw new ArgumentOutOfRangeException(nameof(Backend), Backend, $"{transform}: unknown Backend {Backend}; use Auto, Cpu or Cuda.");
        if (DeviceIndex < 0)
            throw new ArgumentOutOfRangeException(nameof(DeviceIndex), DeviceIndex, $"{transform}: DeviceIndex must be >= 0.");
        if (MaxThreads is < 1)
            throw new ArgumentOutOfRangeException(nameof(MaxThreads), MaxThreads, $"{transform}: MaxThreads must be at least 1 (null: all cores).");
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
