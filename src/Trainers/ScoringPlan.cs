using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ConvNet.Transforms.Batching;

namespace MLNet.ConvNet.Trainers;

/// <summary>
/// Where each column of <see cref="ConvNetTransformer"/>'s output comes from: Score and PredictedLabel from the network,
/// every other column from an input column. The output schema is the twin's (so it is exactly what a saved and loaded
/// model gives); this maps it back onto the input, as the <see cref="BatchedColumns"/> that src/Transforms' batched
/// view and row mapper serve.
/// </summary>
internal static class ScoringPlan
{
    /// <summary>The computed columns' numbers in <see cref="ScoringFunction"/>.</summary>
    public const int Score = 0, PredictedLabel = 1;

    /// <summary>
    /// Maps <paramref name="output"/> (the twin's schema for <paramref name="input"/>) onto the input. The twin ends with
    /// DropColumns, which groups same-named columns in their first name's position but keeps their relative order, so
    /// the k-th output column named N that the network does not write is the k-th input column named N.
    /// </summary>
    public static BatchedColumns Create(DataViewSchema input, DataViewSchema output, string featureColumn)
    {
        int score = output[MLNetGraph.ScoreColumn].Index, predicted = output[MLNetGraph.PredictedLabelColumn].Index;
        var source = new int[output.Count];
        var seen = new Dictionary<string, int>();
        for (int j = 0; j < output.Count; j++)
        {
            if (j == score) { source[j] = BatchedColumns.Computed(Score); continue; }
            if (j == predicted) { source[j] = BatchedColumns.Computed(PredictedLabel); continue; }
            var column = output[j];
            int k = seen.GetValueOrDefault(column.Name);
            seen[column.Name] = k + 1;
            var match = input.Where(c => c.Name == column.Name).Skip(k).FirstOrDefault();
            if (match.Name is null || !match.Type.Equals(column.Type))
                throw new InvalidOperationException($"ConvNetTransformer: output column {j} '{column.Name}' ({column.Type}) has no input column to pass through.");
            source[j] = match.Index;
        }
        return new BatchedColumns(input, output, source, input[featureColumn].Index);
    }
}

/// <summary>
/// The network as the batched view's function: samples in, Score (softmax probabilities) and PredictedLabel (a key)
/// out, <see cref="NetworkScorer.BatchSize"/> rows per call.
/// </summary>
internal sealed class ScoringFunction(NetworkScorer scorer) : BatchFunction(scorer.SampleShape.Length, scorer.BatchSize)
{
    public override BatchOutputs CreateOutputs(int capacity) => new Outputs(scorer, capacity);

    public override Exception WrongRowLength(string column, int length) =>
        new InvalidOperationException($"Feature column '{column}': a row holds {length} values but the column's type promised {scorer.SampleShape.Length} (the network takes samples {scorer.SampleShape}).");

    private sealed class Outputs(NetworkScorer scorer, int capacity) : BatchOutputs
    {
        private readonly float[] _p = new float[capacity * scorer.Classes];
        private readonly int[] _predicted = new int[capacity];

        public override void Compute(float[] input, int count) => scorer.Score(input, count, _p, _predicted);

        public override Delegate Getter(int computed, Func<int> slot)
        {
            int k = scorer.Classes;
            return computed == ScoringPlan.Score
                ? (ValueGetter<VBuffer<float>>)((ref VBuffer<float> dst) =>
                {
                    var editor = VBufferEditor.Create(ref dst, k);
                    _p.AsSpan(slot() * k, k).CopyTo(editor.Values);
                    dst = editor.Commit();
                })
                // Keys count from 1; 0 is the missing key (a row whose scores hold NaN).
                : (ValueGetter<uint>)((ref uint dst) => dst = (uint)(_predicted[slot()] + 1));
        }
    }
}
