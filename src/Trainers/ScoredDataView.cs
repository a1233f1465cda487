using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ConvNet.Transforms;

namespace MLNet.ConvNet.Trainers;

/// <summary>
/// Where each column of <see cref="ConvNetTransformer"/>'s output comes from: Score and PredictedLabel from the network,
/// every other column from an input column. The output schema is the twin's (so it is exactly what a saved and loaded
/// model gives); this maps it back onto the input.
/// </summary>
internal sealed class ScoringPlan
{
    /// <summary>Marks the computed columns in <see cref="Source"/>.</summary>
    public const int ScoreSource = -1, PredictedLabelSource = -2;

    private ScoringPlan(DataViewSchema input, DataViewSchema output, int[] source, int feature)
    {
        Input = input; Output = output; Source = source; FeatureColumn = feature;
    }

    public DataViewSchema Input { get; }
    public DataViewSchema Output { get; }
    /// <summary>Per output column: the input column it passes through, or <see cref="ScoreSource"/> / <see cref="PredictedLabelSource"/>.</summary>
    public int[] Source { get; }
    /// <summary>The index of the feature column in <see cref="Input"/>.</summary>
    public int FeatureColumn { get; }

    /// <summary>
    /// Maps <paramref name="output"/> (the twin's schema for <paramref name="input"/>) onto the input. The twin ends with
    /// DropColumns, which groups same-named columns in their first name's position but keeps their relative order, so
    /// the k-th output column named N that the network does not write is the k-th input column named N.
    /// </summary>
    public static ScoringPlan Create(DataViewSchema input, DataViewSchema output, string featureColumn)
    {
        int score = output[MLNetGraph.ScoreColumn].Index, predicted = output[MLNetGraph.PredictedLabelColumn].Index;
        var source = new int[output.Count];
        var seen = new Dictionary<string, int>();
        for (int j = 0; j < output.Count; j++)
        {
            if (j == score) { source[j] = ScoreSource; continue; }
            if (j == predicted) { source[j] = PredictedLabelSource; continue; }
            var column = output[j];
            int k = seen.GetValueOrDefault(column.Name);
            seen[column.Name] = k + 1;
            var match = input.Where(c => c.Name == column.Name).Skip(k).FirstOrDefault();
            if (match.Name is null || !match.Type.Equals(column.Type))
                throw new InvalidOperationException($"ConvNetTransformer: output column {j} '{column.Name}' ({column.Type}) has no input column to pass through.");
            source[j] = match.Index;
        }
        return new ScoringPlan(input, output, source, input[featureColumn].Index);
    }

    /// <summary>True when an active output column needs the network.</summary>
    public bool Scores(Func<int, bool> active) => Enumerable.Range(0, Output.Count).Any(j => active(j) && Source[j] < 0);

    /// <summary>The input columns the active output columns read.</summary>
    public IEnumerable<DataViewSchema.Column> InputsFor(Func<int, bool> active)
    {
        var needed = new SortedSet<int>();
        for (int j = 0; j < Output.Count; j++)
            if (active(j)) needed.Add(Source[j] >= 0 ? Source[j] : FeatureColumn);
        return needed.Select(i => Input[i]).ToArray();
    }

    /// <summary>Checks the length of one row's feature vector against the network's sample.</summary>
    public static void CheckRow(string column, int length, Shape sample)
    {
        if (length != sample.Length)
            throw new InvalidOperationException($"Feature column '{column}': a row holds {length} values but the column's type promised {sample.Length} (the network takes samples {sample}).");
    }

    internal static Exception Inactive(DataViewSchema.Column column) =>
        new InvalidOperationException($"Column '{column.Name}' is not active in this cursor; ask for it when creating the cursor.");

    internal static Exception WrongType<TValue>(DataViewSchema.Column column) =>
        new InvalidOperationException($"Column '{column.Name}' holds {column.Type} ({column.Type.RawType}); GetGetter was asked for {typeof(TValue)}.");
}

/// <summary>
/// The output of <see cref="ConvNetTransformer.Transform"/>: its cursors read ahead up to
/// <see cref="NetworkScorer.BatchSize"/> input rows, score them with one forward pass, then serve them one by one
/// (the pattern of src/Transforms' batching cursor, with two computed columns).
/// </summary>
internal sealed class ScoredDataView(NetworkScorer scorer, IDataView source, ScoringPlan plan) : IDataView
{
    public DataViewSchema Schema => plan.Output;
    public bool CanShuffle => source.CanShuffle;
    public long? GetRowCount() => source.GetRowCount();

    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null)
    {
        var active = Active(columnsNeeded);
        return new ScoringCursor(scorer, plan, source.GetRowCursor(plan.InputsFor(j => active[j]), rand), active);
    }

    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null)
    {
        var active = Active(columnsNeeded);
        return source.GetRowCursorSet(plan.InputsFor(j => active[j]), n, rand)
            .Select(c => (DataViewRowCursor)new ScoringCursor(scorer, plan, c, active))
            .ToArray();
    }

    private bool[] Active(IEnumerable<DataViewSchema.Column> columnsNeeded)
    {
        var active = new bool[plan.Output.Count];
        foreach (var c in columnsNeeded) active[c.Index] = true;
        return active;
    }
}

/// <summary>
/// A cursor that reads ahead a mini-batch of input rows, keeping copies of the active pass-through values (the input
/// cursor has moved on by the time they are asked for), the batch's probabilities and predicted keys.
/// </summary>
internal sealed class ScoringCursor : DataViewRowCursor, IBufferedRows
{
    private readonly NetworkScorer _scorer;
    private readonly ScoringPlan _plan;
    private readonly DataViewRowCursor _input;
    private readonly bool[] _active;
    private readonly ValueGetter<VBuffer<float>>? _features;
    private readonly ValueGetter<DataViewRowId> _id;
    private readonly RowBuffer?[] _buffers;
    private readonly RowBuffer[] _activeBuffers;
    private readonly DataViewRowId[] _ids;
    private readonly long[] _batches;
    private readonly float[] _x = [], _p = [];
    private readonly int[] _predicted = [];
    private VBuffer<float> _scratch;
    private int _count, _index = -1;
    private long _position = -1;

    public ScoringCursor(NetworkScorer scorer, ScoringPlan plan, DataViewRowCursor input, bool[] active)
    {
        _scorer = scorer; _plan = plan; _input = input; _active = active;
        int capacity = scorer.BatchSize;
        _ids = new DataViewRowId[capacity];
        _batches = new long[capacity];
        _id = input.GetIdGetter();
        if (plan.Scores(j => active[j]))
        {
            _features = input.GetGetter<VBuffer<float>>(input.Schema[plan.FeatureColumn]);
            _x = new float[capacity * scorer.SampleShape.Length];
            _p = new float[capacity * scorer.Classes];
            _predicted = new int[capacity];
        }
        _buffers = new RowBuffer?[plan.Output.Count];
        for (int j = 0; j < _buffers.Length; j++)
            if (active[j] && plan.Source[j] >= 0) _buffers[j] = RowBuffer.Create(input, input.Schema[plan.Source[j]], capacity);
        _activeBuffers = _buffers.OfType<RowBuffer>().ToArray();
    }

    public override DataViewSchema Schema => _plan.Output;
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

    /// <summary>Reads the next mini-batch from the input and scores it.</summary>
    private bool Fill()
    {
        int length = _scorer.SampleShape.Length;
        _count = 0;
        while (_count < _ids.Length && _input.MoveNext())
        {
            _id(ref _ids[_count]);
            _batches[_count] = _input.Batch;
            if (_features is not null)
            {
                _features(ref _scratch);
                ScoringPlan.CheckRow(_input.Schema[_plan.FeatureColumn].Name, _scratch.Length, _scorer.SampleShape);
                _scratch.CopyTo(_x.AsSpan(_count * length, length));
            }
            foreach (var b in _activeBuffers) b.Capture(_count);
            _count++;
        }
        if (_count == 0) return false;
        if (_features is not null) _scorer.Score(_x, _count, _p, _predicted);
        _index = -1;
        return true;
    }

    public override bool IsColumnActive(DataViewSchema.Column column) => _active[column.Index];

    public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
    {
        if (!_active[column.Index]) throw ScoringPlan.Inactive(column);
        int k = _scorer.Classes;
        Delegate getter = _plan.Source[column.Index] switch
        {
            ScoringPlan.ScoreSource => (ValueGetter<VBuffer<float>>)((ref VBuffer<float> dst) =>
            {
                var editor = VBufferEditor.Create(ref dst, k);
                _p.AsSpan(Index * k, k).CopyTo(editor.Values);
                dst = editor.Commit();
            }),
            // Keys count from 1; 0 is the missing key (a row whose scores hold NaN).
            ScoringPlan.PredictedLabelSource => (ValueGetter<uint>)((ref uint dst) => dst = (uint)(_predicted[Index] + 1)),
            _ => _buffers[column.Index]!.Getter(this),
        };
        return getter as ValueGetter<TValue> ?? throw ScoringPlan.WrongType<TValue>(column);
    }

    public override ValueGetter<DataViewRowId> GetIdGetter() => (ref DataViewRowId value) => value = _ids[Index];

    protected override void Dispose(bool disposing)
    {
        if (disposing) _input.Dispose();
        base.Dispose(disposing);
    }
}
