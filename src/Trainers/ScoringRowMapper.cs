using Microsoft.ML;
using Microsoft.ML.Data;

namespace MLNet.ConvNet.Trainers;

/// <summary>
/// The row-to-row mapper of a <see cref="ConvNetTransformer"/> (what <c>PredictionEngine</c> and
/// <c>TransformerChain.GetRowToRowMapper</c> use): pass-through columns come from the input row; Score and
/// PredictedLabel are computed for one row (a batch of 1) when first asked for and kept until the input row moves.
/// </summary>
internal sealed class ScoringRowMapper(NetworkScorer scorer, ScoringPlan plan) : IRowToRowMapper
{
    public DataViewSchema InputSchema => plan.Input;
    public DataViewSchema OutputSchema => plan.Output;

    public IEnumerable<DataViewSchema.Column> GetDependencies(IEnumerable<DataViewSchema.Column> dependingColumns)
    {
        var wanted = dependingColumns.Select(c => c.Index).ToHashSet();
        return plan.InputsFor(wanted.Contains);
    }

    public DataViewRow GetRow(DataViewRow input, IEnumerable<DataViewSchema.Column> activeColumns)
    {
        ArgumentNullException.ThrowIfNull(input);
        var active = new bool[plan.Output.Count];
        foreach (var c in activeColumns) active[c.Index] = true;
        return new MappedRow(scorer, plan, input, active);
    }

    private sealed class MappedRow : DataViewRow
    {
        private readonly NetworkScorer _scorer;
        private readonly ScoringPlan _plan;
        private readonly DataViewRow _input;
        private readonly bool[] _active;
        private readonly ValueGetter<VBuffer<float>>? _features;
        private readonly float[] _x = [], _p = [];
        private readonly int[] _predicted = new int[1];
        private VBuffer<float> _scratch;
        private long _computedAt = -1;
        private bool _computed;

        public MappedRow(NetworkScorer scorer, ScoringPlan plan, DataViewRow input, bool[] active)
        {
            _scorer = scorer; _plan = plan; _input = input; _active = active;
            if (plan.Scores(j => active[j]))
            {
                _features = input.GetGetter<VBuffer<float>>(input.Schema[plan.FeatureColumn]);
                _x = new float[scorer.SampleShape.Length];
                _p = new float[scorer.Classes];
            }
        }

        public override DataViewSchema Schema => _plan.Output;
        public override long Position => _input.Position;
        public override long Batch => _input.Batch;
        public override ValueGetter<DataViewRowId> GetIdGetter() => _input.GetIdGetter();

        public override bool IsColumnActive(DataViewSchema.Column column) => _active[column.Index];

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            if (!_active[column.Index]) throw ScoringPlan.Inactive(column);
            int source = _plan.Source[column.Index];
            if (source >= 0) return _input.GetGetter<TValue>(_input.Schema[source]);
            Delegate getter = source == ScoringPlan.ScoreSource
                ? (ValueGetter<VBuffer<float>>)((ref VBuffer<float> dst) =>
                {
                    Compute();
                    var editor = VBufferEditor.Create(ref dst, _p.Length);
                    _p.CopyTo(editor.Values);
                    dst = editor.Commit();
                })
                : (ValueGetter<uint>)((ref uint dst) => { Compute(); dst = (uint)(_predicted[0] + 1); });
            return getter as ValueGetter<TValue> ?? throw ScoringPlan.WrongType<TValue>(column);
        }

        private void Compute()
        {
            if (_computed && _computedAt == _input.Position) return;
            _features!(ref _scratch);
            ScoringPlan.CheckRow(_input.Schema[_plan.FeatureColumn].Name, _scratch.Length, _scorer.SampleShape);
            _scratch.CopyTo(_x);
            _scorer.Score(_x, 1, _p, _predicted);
            _computedAt = _input.Position;
            _computed = true;
        }
    }
}
