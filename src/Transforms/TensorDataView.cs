using Microsoft.ML;
using Microsoft.ML.Data;

namespace MLNet.ConvNet.Transforms;

/// <summary>
/// The output of <see cref="TensorTransformer.Transform"/>: the input columns plus one computed column. Its cursors
/// read ahead up to <see cref="TensorTransformer.BatchSize"/> input rows, run them through the engine in one call,
/// then serve them one by one.
/// </summary>
internal sealed class TensorDataView : IDataView
{
    private readonly TensorTransformer _parent;
    private readonly IDataView _source;
    private readonly int _sourceColumn;

    public TensorDataView(TensorTransformer parent, IDataView source, DataViewSchema schema, int sourceColumn)
    {
        _parent = parent; _source = source; Schema = schema; _sourceColumn = sourceColumn;
    }

    public DataViewSchema Schema { get; }
    public bool CanShuffle => _source.CanShuffle;
    public long? GetRowCount() => _source.GetRowCount();

    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null)
    {
        var (active, inputs) = Plan(columnsNeeded);
        return new BatchingCursor(_parent, Schema, _source.GetRowCursor(inputs, rand), _sourceColumn, active);
    }

    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null)
    {
        var (active, inputs) = Plan(columnsNeeded);
        return _source.GetRowCursorSet(inputs, n, rand)
            .Select(c => (DataViewRowCursor)new BatchingCursor(_parent, Schema, c, _sourceColumn, active))
            .ToArray();
    }

    /// <summary>Which output columns are active, and the input columns they need.</summary>
    private (bool[] active, List<DataViewSchema.Column> inputs) Plan(IEnumerable<DataViewSchema.Column> columnsNeeded)
    {
        var active = new bool[Schema.Count];
        foreach (var c in columnsNeeded) active[c.Index] = true;
        var inputs = new List<DataViewSchema.Column>();
        for (int i = 0; i < _source.Schema.Count; i++)
            if (active[i] || (i == _sourceColumn && active[^1])) inputs.Add(_source.Schema[i]);
        return (active, inputs);
    }
}

/// <summary>
/// A cursor that reads ahead a mini-batch of input rows, keeping copies of the active pass-through values (the input
/// cursor has moved on by the time they are asked for) and the batch's engine output.
/// </summary>
internal sealed class BatchingCursor : DataViewRowCursor, IBufferedRows
{
    private readonly TensorTransformer _parent;
    private readonly DataViewRowCursor _input;
    private readonly int _outputColumn;
    private readonly ValueGetter<VBuffer<float>>? _pixels;
    private readonly ValueGetter<DataViewRowId> _id;
    private readonly RowBuffer?[] _buffers;
    private readonly RowBuffer[] _activeBuffers;
    private readonly DataViewRowId[] _ids;
    private readonly long[] _batches;
    private readonly float[] _x = [], _y = [];
    private readonly int _inLength, _outLength;
    private VBuffer<float> _scratch;
    private int _count, _index = -1;
    private long _position = -1;

    public BatchingCursor(TensorTransformer parent, DataViewSchema schema, DataViewRowCursor input, int sourceColumn, bool[] active)
    {
        _parent = parent; _input = input; Schema = schema;
        _outputColumn = schema.Count - 1;
        int capacity = parent.BatchSize;
        _ids = new DataViewRowId[capacity];
        _batches = new long[capacity];
        _id = input.GetIdGetter();
        _inLength = parent.InputShape.Length;
        _outLength = parent.OutputShape.Length;
        if (active[_outputColumn])
        {
            _pixels = input.GetGetter<VBuffer<float>>(input.Schema[sourceColumn]);
            _x = new float[capacity * _inLength];
            _y = new float[capacity * _outLength];
        }
        _buffers = new RowBuffer?[_outputColumn];
        for (int i = 0; i < _outputColumn; i++)
            if (active[i]) _buffers[i] = RowBuffer.Create(input, input.Schema[i], capacity);
        _activeBuffers = _buffers.OfType<RowBuffer>().ToArray();
    }

    public override DataViewSchema Schema { get; }
    public override long Position => _position;
    public override long Batch => _index >= 0 && _index < _count ? _batches[_index] : _input.Batch;

    /// <summary>The slot of the current row in the buffers.</summary>
    public int Index => _index >= 0 && _index < _count ? _index
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

    /// <summary>Reads the next mini-batch from the input and runs it through the engine.</summary>
    private bool Fill()
    {
        _count = 0;
        while (_count < _ids.Length && _input.MoveNext())
        {
            _id(ref _ids[_count]);
            _batches[_count] = _input.Batch;
            if (_pixels is not null)
            {
                _pixels(ref _scratch);
                if (_scratch.Length != _inLength)
                    throw new InvalidOperationException($"{_parent.InputColumnName}: a row holds {_scratch.Length} values; the column's type promised {_inLength}.");
                _scratch.CopyTo(_x.AsSpan(_count * _inLength, _inLength));
            }
            foreach (var b in _activeBuffers) b.Capture(_count);
            _count++;
        }
        if (_count == 0) return false;
        if (_pixels is not null) _parent.RunBatch(_x, _count, _y);
        _index = -1;
        return true;
    }

    public override bool IsColumnActive(DataViewSchema.Column column) =>
        column.Index == _outputColumn ? _pixels is not null : _buffers[column.Index] is not null;

    public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
    {
        if (column.Index == _outputColumn)
        {
            if (_pixels is null) throw Inactive(column);
            ValueGetter<VBuffer<float>> getter = (ref VBuffer<float> dst) =>
            {
                var editor = VBufferEditor.Create(ref dst, _outLength);
                _y.AsSpan(Index * _outLength, _outLength).CopyTo(editor.Values);
                dst = editor.Commit();
            };
            return getter as ValueGetter<TValue> ?? throw WrongType<TValue>(column);
        }
        var buffer = _buffers[column.Index] ?? throw Inactive(column);
        return buffer.Getter(this) as ValueGetter<TValue> ?? throw WrongType<TValue>(column);
    }

    public override ValueGetter<DataViewRowId> GetIdGetter() => (ref DataViewRowId value) => value = _ids[Index];

    protected override void Dispose(bool disposing)
    {
        if (disposing) _input.Dispose();
        base.Dispose(disposing);
    }

    internal static Exception Inactive(DataViewSchema.Column column) =>
        new InvalidOperationException($"Column '{column.Name}' is not active in this cursor; ask for it when creating the cursor.");

    internal static Exception WrongType<TValue>(DataViewSchema.Column column) =>
        new InvalidOperationException($"Column '{column.Name}' holds {column.Type} ({column.Type.RawType}); GetGetter was asked for {typeof(TValue)}.");
}

/// <summary>Copies of one pass-through column's values for the rows of a mini-batch (the transforms' cursor and the ConvNet scorer's).</summary>
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

    /// <summary>A getter returning the value stored for the cursor's current row.</summary>
    public abstract Delegate Getter(IBufferedRows cursor);
}

/// <summary>A cursor that serves rows from mini-batch buffers: <see cref="Index"/> is the current row's slot in them.</summary>
internal interface IBufferedRows
{
    int Index { get; }
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

    public override Delegate Getter(IBufferedRows cursor) => (ValueGetter<T>)((ref T dst) => dst = _values[cursor.Index]);
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

    public override Delegate Getter(IBufferedRows cursor) => (ValueGetter<VBuffer<T>>)((ref VBuffer<T> dst) => _values[cursor.Index].CopyTo(ref dst));
}

/// <summary>A view with a schema and no rows: what the ONNX twin is fitted on (it only checks the schema).</summary>
internal sealed class EmptyDataView(DataViewSchema schema) : IDataView
{
    public DataViewSchema Schema { get; } = schema;
    public bool CanShuffle => false;
    public long? GetRowCount() => 0;
    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null) => new Cursor(Schema);
    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) => [new Cursor(Schema)];

    private sealed class Cursor(DataViewSchema schema) : DataViewRowCursor
    {
        public override DataViewSchema Schema { get; } = schema;
        public override long Position => -1;
        public override long Batch => 0;
        public override bool MoveNext() => false;
        public override bool IsColumnActive(DataViewSchema.Column column) => true;
        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column) =>
            (ref TValue value) => throw new InvalidOperationException("An empty view has no rows.");
        public override ValueGetter<DataViewRowId> GetIdGetter() =>
            (ref DataViewRowId value) => throw new InvalidOperationException("An empty view has no rows.");
    }
}
