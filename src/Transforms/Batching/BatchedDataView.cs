using Microsoft.ML;
using Microsoft.ML.Data;

namespace MLNet.ConvNet.Transforms.Batching;

/// <summary>
/// Advanced: a lazy view of <see cref="BatchedColumns.Output"/> over a source view. Its cursors read ahead up to
/// <see cref="BatchFunction.BatchSize"/> source rows, compute them in one <see cref="BatchOutputs.Compute"/> call,
/// then serve them one by one. What the transforms' and the ConvNet trainer's <c>Transform</c> return.
/// </summary>
public sealed class BatchedDataView : IDataView
{
    private readonly BatchFunction _function;
    private readonly IDataView _source;
    private readonly BatchedColumns _columns;

    /// <summary>A view of <paramref name="source"/>, whose schema must be <paramref name="columns"/>' input schema.</summary>
    public BatchedDataView(BatchFunction function, IDataView source, BatchedColumns columns)
    {
        ArgumentNullException.ThrowIfNull(function);
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(columns);
        if (source.Schema.Count != columns.Input.Count)
            throw new ArgumentException($"BatchedDataView: the source has {source.Schema.Count} columns but the columns were planned for {columns.Input.Count}.", nameof(source));
        _function = function; _source = source; _columns = columns;
    }

    /// <inheritdoc/>
    public DataViewSchema Schema => _columns.Output;
    /// <inheritdoc/>
    public bool CanShuffle => _source.CanShuffle;
    /// <inheritdoc/>
    public long? GetRowCount() => _source.GetRowCount();

    /// <inheritdoc/>
    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null)
    {
        var active = _columns.Active(columnsNeeded);
        return new BatchedCursor(_function, _columns, _source.GetRowCursor(_columns.InputsFor(j => active[j]), rand), active);
    }

    /// <inheritdoc/>
    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null)
    {
        var active = _columns.Active(columnsNeeded);
        return _source.GetRowCursorSet(_columns.InputsFor(j => active[j]), n, rand)
            .Select(c => (DataViewRowCursor)new BatchedCursor(_function, _columns, c, active))
            .ToArray();
    }
}

/// <summary>
/// A cursor that reads ahead a mini-batch of input rows, keeping copies of the active pass-through values (the input
/// cursor has moved on by the time they are asked for) and the batch's computed outputs.
/// </summary>
internal sealed class BatchedCursor : DataViewRowCursor
{
    private readonly BatchFunction _function;
    private readonly BatchedColumns _columns;
    private readonly DataViewRowCursor _input;
    private readonly bool[] _active;
    private readonly ValueGetter<VBuffer<float>>? _features;
    private readonly ValueGetter<DataViewRowId> _id;
    private readonly BatchOutputs? _outputs;
    private readonly RowBuffer?[] _buffers;
    private readonly RowBuffer[] _activeBuffers;
    private readonly DataViewRowId[] _ids;
    private readonly long[] _batches;
    private readonly float[] _x = [];
    private VBuffer<float> _scratch;
    private int _count, _index = -1;
    private long _position = -1;

    public BatchedCursor(BatchFunction function, BatchedColumns columns, DataViewRowCursor input, bool[] active)
    {
        _function = function; _columns = columns; _input = input; _active = active;
        int capacity = function.BatchSize;
        _ids = new DataViewRowId[capacity];
        _batches = new long[capacity];
        _id = input.GetIdGetter();
        if (columns.Computes(j => active[j]))
        {
            _features = input.GetGetter<VBuffer<float>>(input.Schema[columns.FeatureColumn]);
            _x = new float[capacity * function.InputLength];
            _outputs = function.CreateOutputs(capacity);
        }
        _buffers = new RowBuffer?[columns.Output.Count];
        for (int j = 0; j < _buffers.Length; j++)
            if (active[j] && columns.Source(j) >= 0) _buffers[j] = RowBuffer.Create(input, input.Schema[columns.Source(j)], capacity);
        _activeBuffers = _buffers.OfType<RowBuffer>().ToArray();
    }

    public override DataViewSchema Schema => _columns.Output;
    public override long Position => _position;
    public override long Batch => _index >= 0 && _index < _count ? _batches[_index] : _input.Batch;

    /// <summary>The slot of the current row in the buffers.</summary>
    private int Index => _index >= 0 && _index < _count ? _index
        : throw new InvalidOperationException("The cursor is not on a row: call MoveNext first, and read values only while it returns true.");

    public override bool MoveNext()
    {
        if (_index + 1 < _count || Fill())
        {
            _index = _index + 1 < _count ? _index + 1 : 0;
            _position++;
            return true;
        }
        _index = _count;
        return false;
    }

    /// <summary>Reads the next mini-batch from the input and computes it.</summary>
    private bool Fill()
    {
        int length = _function.InputLength;
        _count = 0;
        while (_count < _ids.Length && _input.MoveNext())
        {
            _id(ref _ids[_count]);
            _batches[_count] = _input.Batch;
            if (_features is not null)
            {
                _features(ref _scratch);
                if (_scratch.Length != length)
                    throw _function.WrongRowLength(_input.Schema[_columns.FeatureColumn].Name, _scratch.Length);
                _scratch.CopyTo(_x.AsSpan(_count * length, length));
            }
            foreach (var b in _activeBuffers) b.Capture(_count);
            _count++;
        }
        if (_count == 0) return false;
        _outputs?.Compute(_x, _count);
        _index = -1;
        return true;
    }

    public override bool IsColumnActive(DataViewSchema.Column column) => _active[column.Index];

    public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
    {
        if (!_active[column.Index]) throw BatchedColumns.Inactive(column);
        int source = _columns.Source(column.Index);
        var getter = source >= 0 ? _buffers[column.Index]!.Getter(() => Index) : _outputs!.Getter(~source, () => Index);
        return getter as ValueGetter<TValue> ?? throw BatchedColumns.WrongType<TValue>(column);
    }

    public override ValueGetter<DataViewRowId> GetIdGetter() => (ref DataViewRowId value) => value = _ids[Index];

    protected override void Dispose(bool disposing)
    {
        if (disposing) _input.Dispose();
        base.Dispose(disposing);
    }
}

/// <summary>Copies of one pass-through column's values for the rows of a mini-batch.</summary>
internal abstract class RowBuffer
{
    /// <summary>A buffer for <paramref name="column"/> of <paramref name="row"/>, deep-copying vectors.</summary>
    public static RowBuffer Create(DataViewRow row, DataViewSchema.Column column, int capacity)
    {
        var type = column.Type is VectorDataViewType v
            ? typeof(VectorBuffer<>).MakeGenericType(v.ItemType.RawType)
            : typeof(ValueBuffer<>).MakeGenericType(column.Type.RawType);
        return (RowBuffer)Activator.CreateInstance(type, row, column, capacity)!;
    }

    /// <summary>Stores the current input row's value in slot <paramref name="slot"/>.</summary>
    public abstract void Capture(int slot);

    /// <summary>A getter returning the value stored in slot <paramref name="slot"/>() (the cursor's current row).</summary>
    public abstract Delegate Getter(Func<int> slot);
}

internal sealed class ValueBuffer<T> : RowBuffer
{
    private readonly ValueGetter<T> _get;
    private readonly T[] _values;

    public ValueBuffer(DataViewRow row, DataViewSchema.Column column, int capacity)
    {
        _get = row.GetGetter<T>(column);
        _values = new T[capacity];
    }

    // default first: a getter handed a previous object may reuse or dispose it, and that object was served already.
    public override void Capture(int slot) { _values[slot] = default!; _get(ref _values[slot]); }

    public override Delegate Getter(Func<int> slot) => (ValueGetter<T>)((ref T dst) => dst = _values[slot()]);
}

internal sealed class VectorBuffer<T> : RowBuffer
{
    private readonly ValueGetter<VBuffer<T>> _get;
    private readonly VBuffer<T>[] _values;
    private VBuffer<T> _scratch;

    public VectorBuffer(DataViewRow row, DataViewSchema.Column column, int capacity)
    {
        _get = row.GetGetter<VBuffer<T>>(column);
        _values = new VBuffer<T>[capacity];
    }

    // A getter may hand out its own arrays; copy so the value survives the input cursor moving on.
    public override void Capture(int slot) { _get(ref _scratch); _scratch.CopyTo(ref _values[slot]); }

    public override Delegate Getter(Func<int> slot) => (ValueGetter<VBuffer<T>>)((ref VBuffer<T> dst) => _values[slot()].CopyTo(ref dst));
}
