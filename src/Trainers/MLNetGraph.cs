using MLNet.ConvNet.Layers;
using MLNet.ConvNet.Onnx;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms;

namespace MLNet.ConvNet.Trainers;

/// <summary>
/// The ONNX graphs a trained network is exported as, and the ML.NET-native "twin" that runs and saves it: ML.NET
/// cannot save a third-party transformer (its persistence API is internal), so a <see cref="ConvNetTransformer"/>
/// scores and saves through this pipeline of ML.NET's own transformers.
/// </summary>
/// <remarks>
/// The twin is <c>ApplyOnnxModel</c> over <see cref="ForMLNet"/>'s graph, which outputs Score (softmax inside, with
/// SlotNames) and the argmax index; then PredictedLabel is made a key with KeyValues. An ONNX output reaches ML.NET as
/// a vector (<c>Vector&lt;Int64, 1&gt;</c> for the argmax), and MapValue over a vector gives a vector, which
/// PredictionEngine rejects; <c>Hash(combine: true)</c> turns the 1-slot vector into a scalar, and MapValue from
/// those K hash values (a seed where they do not collide is searched) to the class names, with
/// <c>treatValuesAsKeyType</c>, gives <c>Key&lt;UInt32, K&gt;</c> whose KeyValues are the classes in class order
/// (as text: MapValue writes a key's values as text whatever their type).
/// The helper columns are dropped. Loading the saved model needs only Microsoft.ML, Microsoft.ML.OnnxTransformer and
/// Microsoft.ML.OnnxRuntime.
/// </remarks>
internal static class MLNetGraph
{
    /// <summary>The argmax column between the ONNX model and the Hash (dropped).</summary>
    public const string IndexColumn = "ConvNet.PredictedIndex";
    /// <summary>The hash column between Hash and MapValue (dropped).</summary>
    public const string HashColumn = "ConvNet.PredictedHash";
    /// <summary>The name of the output column of scores.</summary>
    public const string ScoreColumn = "Score";
    /// <summary>The name of the output column of predicted labels.</summary>
    public const string PredictedLabelColumn = "PredictedLabel";

    /// <summary>
    /// The graph ML.NET runs one row at a time: input <paramref name="featureColumn"/> <c>[-1, sample...]</c>; outputs
    /// Score <c>[K]</c> (softmax probabilities, SlotNames = <paramref name="classNames"/>) and <see cref="IndexColumn"/>
    /// (int64 argmax).
    /// </summary>
    public static byte[] ForMLNet(Network network, string featureColumn, IReadOnlyList<string> classNames)
    {
        var b = new OnnxGraphBuilder();
        string x = b.Input(featureColumn, [-1, .. network.InputShape!.Value.AsSpan()]);
        string probabilities = b.Softmax(network.ExportOnnx(b, x), axis: 1);
        b.Output(b.Reshape(probabilities, [classNames.Count]), ScoreColumn);
        b.SlotNames(ScoreColumn, classNames);
        b.Output(b.ArgMax(probabilities, axis: 1, keepDims: false), IndexColumn);
        return b.ToBytes();
    }

    /// <summary>
    /// The graph for ONNX Runtime users, any batch size: input <paramref name="featureColumn"/> <c>[N, sample...]</c>;
    /// outputs Score <c>[N, K]</c> (softmax probabilities, SlotNames = the class names) and PredictedClassIndex
    /// <c>[N]</c> (int64, 0-based index into the class names).
    /// </summary>
    public static byte[] ForBatches(Network network, string featureColumn, IReadOnlyList<string> classNames)
    {
        var b = new OnnxGraphBuilder();
        string x = b.Input(featureColumn, [-1, .. network.InputShape!.Value.AsSpan()]);
        string probabilities = b.Softmax(network.ExportOnnx(b, x), axis: 1);
        b.Output(probabilities, ScoreColumn);
        b.SlotNames(ScoreColumn, classNames);
        b.Output(b.ArgMax(probabilities, axis: 1, keepDims: false), "PredictedClassIndex");
        return b.ToBytes();
    }

    /// <summary>The twin pipeline over <paramref name="graph"/>, fitted on <paramref name="schemaSource"/>'s schema.</summary>
    public static ITransformer BuildTwin(byte[] graph, string featureColumn, LabelClasses classes, IDataView schemaSource)
    {
        var ml = new MLContext(seed: 0);
        var (seed, hashes) = DistinctHashes(ml, classes.Count);
        var pipeline = ml.Transforms.ApplyOnnxModel([ScoreColumn, IndexColumn], [featureColumn], new MemoryStream(graph))
            .Append(ml.Transforms.Conversion.Hash(Hash(seed)))
            .Append(ml.Transforms.Conversion.MapValue(PredictedLabelColumn, hashes.Select((h, i) => new KeyValuePair<uint, string>(h, classes.Names[i])), HashColumn, treatValuesAsKeyType: true))
            .Append(ml.Transforms.DropColumns(IndexColumn, HashColumn));
        var twin = pipeline.Fit(schemaSource);
        var predicted = twin.GetOutputSchema(schemaSource.Schema)[PredictedLabelColumn];
        if (predicted.Type is not KeyDataViewType { Count: var count } || count != (ulong)classes.Count)
            throw new InvalidOperationException($"PredictedLabel came out as {predicted.Type}, not a key of {classes.Count} classes; are the label's values distinct? ({string.Join(", ", classes.Names)})");
        return twin;
    }

    private static HashingEstimator.ColumnOptions Hash(uint seed) =>
        new(HashColumn, IndexColumn, numberOfBits: 31, seed: seed, useOrderedHashing: false, maximumNumberOfInverts: 0, combine: true);

    /// <summary>The first seed for which ML.NET's hashes of the indices 0..K-1 (as 1-slot int64 vectors) are distinct, and those hashes.</summary>
    private static (uint Seed, uint[] Hashes) DistinctHashes(MLContext ml, int k)
    {
        var definition = SchemaDefinition.Create(typeof(IndexRow));
        definition[0].ColumnName = IndexColumn;
        var indices = ml.Data.LoadFromEnumerable(Enumerable.Range(0, k).Select(i => new IndexRow { Index = [i] }), definition);
        for (uint seed = 0; seed < 1000; seed++)
        {
            var hashed = ml.Transforms.Conversion.Hash(Hash(seed)).Fit(indices).Transform(indices);
            var hashes = hashed.GetColumn<uint>(HashColumn).ToArray();
            if (hashes.Distinct().Count() == k) return (seed, hashes);
        }
        throw new InvalidOperationException($"No hash seed below 1000 separates {k} classes.");
    }

    private sealed class IndexRow
    {
        [VectorType(1)]
        public long[] Index { get; set; } = [];
    }
}
