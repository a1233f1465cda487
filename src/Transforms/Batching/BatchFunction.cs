using Microsoft.ML;
using Microsoft.ML.Data;

namespace MLNet.ConvNet.Transforms.Batching;

/// <summary>
/// Advanced: what a <see cref="BatchedDataView"/> or <see cref="BatchedRowMapper"/> computes. It reads one
/// float-vector input column (the feature column of <see cref="BatchedColumns"/>) for a mini-batch of rows and writes
/// the computed output columns of those rows into a <see cref="BatchOutputs"/>. The transforms
/// (<see cref="TensorTransformer"/>) and the ConvNet trainer's transformer are built on it; applications do not need it.
/// </summary>
public abstract class BatchFunction
{
    /// <summary>A function over rows of <paramref name="inputLength"/> values, called with up to <paramref name="batchSize"/> rows.</summary>
    protected BatchFunction(int inputLength, int batchSize)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(inputLength, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        InputLength = inputLength;
        BatchSize = batchSize;
    }

    /// <summary>Values per row of the input column.</summary>
    public int InputLength { get; }

    /// <summary>The most rows a cursor reads ahead and passes to one <see cref="BatchOutputs.Compute"/> call.</summary>
    public int BatchSize { get; }

    /// <summary>Output buffers for up to <paramref name="capacity"/> rows (one per cursor or mapped row; never shared between threads).</summary>
    public abstract BatchOutputs CreateOutputs(int capacity);

    /// <summary>The error for a row of input column <paramref name="column"/> that holds <paramref name="length"/> values, not <see cref="InputLength"/>.</summary>
    public virtual Exception WrongRowLength(string column, int length) =>
        new InvalidOperationException($"{column}: a row holds {length} values; the column's type promised {InputLength}.");
}

/// <summary>Advanced: the computed columns' values for the rows of one mini-batch (see <see cref="BatchFunction"/>).</summary>
public abstract class BatchOutputs
{
    /// <summary>Computes the outputs of <paramref name="count"/> rows laid out one after another in <paramref name="input"/>.</summary>
    public abstract void Compute(float[] input, int count);

    /// <summary>
    /// A <c>ValueGetter</c> of computed column <paramref name="computed"/> (0, 1, ... in <see cref="BatchedColumns"/>'
    /// numbering) that serves the row in slot <paramref name="slot"/>(); the getter calls <paramref name="slot"/> every time.
    /// </summary>
    public abstract Delegate Getter(int computed, Func<int> slot);
}

/// <summary>
/// Advanced: where each output column of a <see cref="BatchedDataView"/> or <see cref="BatchedRowMapper"/> comes from:
/// an input column it passes through, or computed column k (<see cref="Computed"/>(k)) of a <see cref="BatchFunction"/>,
/// which reads the feature column.
/// </summary>
public sealed class BatchedColumns
{
    private readonly int[] _source;

    /// <summary>
    /// <paramref name="source"/>[j] is the input column output column j passes through (same type), or
    /// <see cref="Computed"/>(k); <paramref name="featureColumn"/> is the input column the function reads (a vector of float).
    /// </summary>
    public BatchedColumns(DataViewSchema input, DataViewSchema output, IReadOnlyList<int> source, int featureColumn)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(source);
        if (source.Count != output.Count)
            throw new ArgumentException($"BatchedColumns: {source.Count} sources for {output.Count} output columns.", nameof(source));
        if (featureColumn < 0 || featureColumn >= input.Count || input[featureColumn].Type is not VectorDataViewType { ItemType: NumberDataViewType n } || n != NumberDataViewType.Single)
            throw new ArgumentException($"BatchedColumns: feature column {featureColumn} is not a vector of Single in the input schema.", nameof(featureColumn));
        for (int j = 0; j < source.Count; j++)
            if (source[j] >= input.Count || (source[j] >= 0 && !input[source[j]].Type.Equals(output[j].Type)))
                throw new ArgumentException($"BatchedColumns: output column {j} '{output[j].Name}' ({output[j].Type}) cannot pass through input column {source[j]}.", nameof(source));
        Input = input; Output = output; FeatureColumn = featureColumn;
        _source = source.ToArray();
    }

    /// <summary>The source that marks computed column <paramref name="k"/> (a negative number).</summary>
    public static int Computed(int k) => ~k;

    /// <summary>The input schema.</summary>
    public DataViewSchema Input { get; }

    /// <summary>The output schema.</summary>
    public DataViewSchema Output { get; }

    /// <summary>The input column the function reads.</summary>
    public int FeatureColumn { get; }

    /// <summary>Output column <paramref name="j"/>'s source: an input column (&gt;= 0) or <see cref="Computed"/>(k).</summary>
    public int Source(int j) => _source[j];

    /// <summary>True when an active output column is computed.</summary>
    internal bool Computes(Func<int, bool> active) => Enumerable.Range(0, Output.Count).Any(j => active(j) && _source[j] < 0);

    /// <summary>The input columns the active output columns read.</summary>
    internal IEnumerable<DataViewSchema.Column> InputsFor(Func<int, bool> active)
    {
        var needed = new SortedSet<int>();
        for (int j = 0; j < Output.Count; j++)
            if (active(j)) needed.Add(_source[j] >= 0 ? _source[j] : FeatureColumn);
        return needed.Select(i => Input[i]).ToArray();
    }

    /// <summary>Which output columns are among <paramref name="columns"/>.</summary>
    internal bool[] Active(IEnumerable<DataViewSchema.Column> columns)
    {
        var active = new bool[Output.Count];
        foreach (var c in columns) active[c.Index] = true;
        return active;
    }

    internal static Exception Inactive(DataViewSchema.Column column) =>
        new InvalidOperationException($"Column '{column.Name}' is not active in this cursor; ask for it when creating the cursor.");

    internal static Exception WrongType<TValue>(DataViewSchema.Column column) =>
        new InvalidOperationException($"Column '{column.Name}' holds {column.Type} ({column.Type.RawType}); GetGetter was asked for {typeof(TValue)}.");
}
