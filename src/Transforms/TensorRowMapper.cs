using Microsoft.ML;
using Microsoft.ML.Data;

namespace MLNet.ConvNet.Transforms;

/// <summary>
/// The row-to-row mapper of a <see cref="TensorTransformer"/> (what <c>PredictionEngine</c> and
/// <c>TransformerChain.GetRowToRowMapper</c> use): pass-through columns come from the input row, the output column is
/// computed for one row (a batch of 1) when first asked for and kept until the input row moves.
/// </summary>
internal sealed class TensorRowMapper : IRowToRowMapper
{
    private readonly TensorTransformer _parent;
    private readonly int _sourceColumn;

    public TensorRowMapper(TensorTransformer parent, DataViewSchema inputSchema, DataViewSchema outputSchema, int sourceColumn)
    {
        _parent = parent; InputSchema = inputSchema; OutputSchema = outputSchema; _sourceColumn = sourceColumn;
    }

    public DataViewSchema InputSchema { get; }
    public DataViewSchema OutputSchema { get; }

    public IEnumerable<DataViewSchema.Column> GetDependencies(IEnumerable<DataViewSchema.Column> dependingColumns)
    {
        var needed = new SortedSet<int>();
        foreach (var c in dependingColumns)
            needed.Add(c.Index == OutputSchema.Count - 1 ? _sourceColumn : c.Index);
        return needed.Select(i => InputSchema[i]).ToArray();
    }

    public DataViewRow GetRow(DataViewRow input, IEnumerable<DataViewSchema.Column> activeColumns)
    {
        ArgumentNullException.ThrowIfNull(input);
        bool computes = activeColumns.Any(c => c.Index == OutputSchema.Count - 1);
        return new MappedRow(_parent, input, OutputSchema, computes ? _sourceColumn : -1);
    }

    private sealed class MappedRow : DataViewRow
    {
        private readonly TensorTransformer _parent;
        private readonly DataViewRow _input;
        private readonly ValueGetter<VBuffer<float>>? _pixels;
        private readonly float[] _x = [], _y = [];
        private VBuffer<float> _scratch;
        private long _computedAt = -1;
        private bool _computed;

        public MappedRow(TensorTransformer parent, DataViewRow input, DataViewSchema schema, int sourceColumn)
        {
            _parent = parent; _input = input; Schema = schema;
            if (sourceColumn >= 0)
            {
                _pixels = input.GetGetter<VBuffer<float>>(input.Schema[sourceColumn]);
                _x = new float[parent.InputShape.Length];
                _y = new float[parent.OutputShape.Length];
            }
        }

        public override DataViewSchema Schema { get; }
        public override long Position => _input.Position;
        public override long Batch => _input.Batch;
        public override ValueGetter<DataViewRowId> GetIdGetter() => _input.GetIdGetter();

        private int OutputColumn => Schema.Count - 1;

        public override bool IsColumnActive(DataViewSchema.Column column) =>
            column.Index == OutputColumn ? _pixels is not null : _input.IsColumnActive(_input.Schema[column.Index]);

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            if (column.Index != OutputColumn) return _input.GetGetter<TValue>(_input.Schema[column.Index]);
            if (_pixels is null) throw BatchingCursor.Inactive(column);
            ValueGetter<VBuffer<float>> getter = (ref VBuffer<float> dst) =>
            {
                Compute();
                var editor = VBufferEditor.Create(ref dst, _y.Length);
                _y.CopyTo(editor.Values);
                dst = editor.Commit();
            };
            return getter as ValueGetter<TValue> ?? throw BatchingCursor.WrongType<TValue>(column);
        }

        private void Compute()
        {
            if (_computed && _computedAt == _input.Position) return;
            _pixels!(ref _scratch);
            if (_scratch.Length != _x.Length)
                throw new InvalidOperationException($"{_parent.InputColumnName}: the row holds {_scratch.Length} values; the column's type promised {_x.Length}.");
            _scratch.CopyTo(_x);
            _parent.RunBatch(_x, 1, _y);
            _computedAt = _input.Position;
            _computed = true;
        }
    }
}
