using Microsoft.ML;
using Microsoft.ML.Data;

namespace MLNet.ConvNet.Transforms.Batching;

/// <summary>
/// Advanced: the row-to-row mapper over <see cref="BatchedColumns"/> (what <c>PredictionEngine</c> and
/// <c>TransformerChain.GetRowToRowMapper</c> use): pass-through columns come from the input row, the computed columns
/// are computed for one row (a batch of 1) when first asked for and kept until the input row moves.
/// </summary>
public sealed class BatchedRowMapper : IRowToRowMapper
{
    private readonly BatchFunction _function;
    private readonly BatchedColumns _columns;

    /// <summary>A mapper from <paramref name="columns"/>' input schema to its output schema.</summary>
    public BatchedRowMapper(BatchFunction function, BatchedColumns columns)
    {
        ArgumentNullException.ThrowIfNull(function);
        ArgumentNullException.ThrowIfNull(columns);
        _function = function; _columns = columns;
    }

    /// <inheritdoc/>
    public DataViewSchema InputSchema => _columns.Input;
    /// <inheritdoc/>
    public DataViewSchema OutputSchema => _columns.Output;

    /// <inheritdoc/>
    public IEnumerable<DataViewSchema.Column> GetDependencies(IEnumerable<DataViewSchema.Column> dependingColumns)
    {
        var active = _columns.Active(dependingColumns);
        return _columns.InputsFor(j => active[j]);
    }

    /// <inheritdoc/>
    public DataViewRow GetRow(DataViewRow input, IEnumerable<DataViewSchema.Column> activeColumns)
    {
        ArgumentNullException.ThrowIfNull(input);
        return new MappedRow(_function, _columns, input, _columns.Active(activeColumns));
    }

    private sealed class MappedRow : DataViewRow
    {
        private readonly BatchFunction _function;
        private readonly BatchedColumns _columns;
        private readonly DataViewRow _input;
        private readonly bool[] _active;
        private readonly ValueGetter<VBuffer<float>>? _features;
        private readonly BatchOutputs? _outputs;
        private readonly float[] _x = [];
        private VBuffer<float> _scratch;
        private long _computedAt = -1;
        private bool _computed;

        public MappedRow(BatchFunction function, BatchedColumns columns, DataViewRow input, bool[] active)
        {
            _function = function; _columns = columns; _input = input; _active = active;
            if (columns.Computes(j => active[j]))
            {
                _features = input.GetGetter<VBuffer<float>>(input.Schema[columns.FeatureColumn]);
                _x = new float[function.InputLength];
                _outputs = function.CreateOutputs(1);
            }
        }

        public override DataViewSchema Schema => _columns.Output;
        public override long Position => _input.Position;
        public override long Batch => _input.Batch;
        public override ValueGetter<DataViewRowId> GetIdGetter() => _input.GetIdGetter();

        // Pass-through columns are the input row's own.
        public override bool IsColumnActive(DataViewSchema.Column column)
        {
            int source = _columns.Source(column.Index);
            return source >= 0 ? _input.IsColumnActive(_input.Schema[source]) : _active[column.Index];
        }

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            int source = _columns.Source(column.Index);
            if (source >= 0) return _input.GetGetter<TValue>(_input.Schema[source]);
            if (!_active[column.Index]) throw BatchedColumns.Inactive(column);
            // Slot 0, computed on the first read of each input row.
            return _outputs!.Getter(~source, () => { Compute(); return 0; }) as ValueGetter<TValue> ?? throw BatchedColumns.WrongType<TValue>(column);
        }

        private void Compute()
        {
            if (_computed && _computedAt == _input.Position) return;
            _features!(ref _scratch);
            if (_scratch.Length != _x.Length)
                throw _function.WrongRowLength(_input.Schema[_columns.FeatureColumn].Name, _scratch.Length);
            _scratch.CopyTo(_x);
            _outputs!.Compute(_x, 1);
            _computedAt = _input.Position;
            _computed = true;
        }
    }
}
