using MLNet.ConvNet.Layers;
using MLNet.ConvNet.Training;
using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ConvNet.Transforms.Batching;

namespace MLNet.ConvNet.Trainers;

/// <summary>
/// A trained convolutional network as an ML.NET transformer: adds <c>Score</c> (<c>Vector&lt;Single, K&gt;</c>, the class
/// probabilities, with SlotNames) and <c>PredictedLabel</c> (<c>Key&lt;UInt32, K&gt;</c> whose KeyValues are the label's
/// values as text), so <c>MulticlassClassification.Evaluate</c>, <c>Model.Save</c>/<c>Load</c> and PredictionEngine work as with
/// ML.NET's own trainers. Made by <see cref="ConvNetTrainer.Fit"/>.
/// </summary>
/// <remarks>
/// <para>Scoring runs this project's engine: <see cref="Transform"/>'s cursors read ahead 256 rows, score them
/// (<c>Network.Forward(x, training: false)</c>, then softmax, on chunks of rows spread over the cores) and serve the
/// rows one by one; PredictionEngine's row mapper scores one row per call. The network scored is a private copy made when training ended, so later changes
/// to <see cref="Network"/> reach only <see cref="ExportOnnx(Stream)"/>. Cursors, rows and PredictionEngines may run
/// at once on different threads: each forward pass rents its own copy of the network (see the scorer's remarks).</para>
/// <para>Saving goes through an ML.NET-native twin (<see cref="ToMLNetTransformer"/>): <c>ApplyOnnxModel</c> over the
/// network exported to ONNX at the end of training, then the columns that make PredictedLabel a key. ML.NET cannot
/// save a third-party transformer, so <see cref="ICanSaveModel.Save"/> saves the twin: after
/// <c>mlContext.Model.Load</c> the model is a <c>TransformerChain&lt;ITransformer&gt;</c> of ML.NET types, not this
/// class, and it scores with ONNX Runtime, one row at a time. Both give the same schema; their scores differ by float
/// rounding (the two implementations sum in different orders: a few 1e-7 on probabilities), so a PredictedLabel can
/// differ only where two classes tie to that precision.</para>
/// <para>A row whose features hold NaN gets NaN scores and a missing PredictedLabel (key 0) here; ONNX Runtime follows
/// its own NaN rules (docs/mlnet-trainer.md).</para>
/// </remarks>
public sealed class ConvNetTransformer : ITransformer
{
    private readonly ITransformer _twin;
    private readonly ConvNetModel _twinView;
    private readonly NetworkScorer _scorer;
    private readonly ScoringFunction _function;

    internal ConvNetTransformer(Network network, LabelClasses classes, string featureColumnName, string labelColumnName,
        IReadOnlyList<EpochMetrics> history, int? bestEpoch, bool stoppedEarly, IDataView schemaSource)
    {
        Network = network; Classes = classes; FeatureColumnName = featureColumnName; LabelColumnName = labelColumnName;
        History = history; BestEpoch = bestEpoch; StoppedEarly = stoppedEarly;
        _twin = MLNetGraph.BuildTwin(MLNetGraph.ForMLNet(network, featureColumnName, classes.Names), featureColumnName, classes, schemaSource);
        // What ToMLNetTransformer hands out: not IDisposable, so a PredictionEngine over it cannot dispose the twin that Save needs.
        _twinView = ConvNetModel.Wrap(new MLContext(seed: 0), _twin, schemaSource.Schema, "the fitted ConvNetTransformer's ONNX twin");
        _scorer = new NetworkScorer(network);
        _function = new ScoringFunction(_scorer);
    }

    /// <summary>The trained network: layers, weights (<see cref="Network.Parameters"/>), <see cref="Network.ComputeHash"/>.</summary>
    public Network Network { get; }

    /// <summary>The classes, in the order of Score's slots and PredictedLabel's keys.</summary>
    public LabelClasses Classes { get; }

    /// <summary>The class names (Score's SlotNames).</summary>
    public IReadOnlyList<string> ClassNames => Classes.Names;

    /// <summary>The shape of one input sample (<c>[C, H, W]</c>).</summary>
    public Shape InputShape => Network.InputShape!.Value;

    /// <summary>The feature column the network reads.</summary>
    public string FeatureColumnName { get; }

    /// <summary>The label column it was trained on (not needed for scoring).</summary>
    public string LabelColumnName { get; }

    /// <summary>Loss and accuracy per epoch (training, and validation when there was validation data), learning rate, seconds.</summary>
    public IReadOnlyList<EpochMetrics> History { get; }

    /// <summary>With early stopping: the epoch (from 1) whose weights the network holds; null otherwise.</summary>
    public int? BestEpoch { get; }

    /// <summary>True when early stopping ended training before <see cref="ConvNetTrainer.Options.Epochs"/>.</summary>
    public bool StoppedEarly { get; }

    /// <summary>True: the transformer maps row to row (PredictionEngine works).</summary>
    public bool IsRowToRowMapper => true;

    /// <summary>The input schema plus Score and PredictedLabel; throws naming the feature column when it is missing or does not fit.</summary>
    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema)
    {
        CheckInput(inputSchema);
        return _twin.GetOutputSchema(inputSchema);
    }

    /// <summary>
    /// Scores <paramref name="input"/> lazily (ML.NET's usual contract): adds Score and PredictedLabel, computed by the
    /// engine 256 rows at a time as a cursor reaches them.
    /// </summary>
    public IDataView Transform(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        return new BatchedDataView(_function, input, Plan(input.Schema));
    }

    /// <summary>The row-to-row mapper PredictionEngine uses: one forward pass per row.</summary>
    public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema) => new BatchedRowMapper(_function, Plan(inputSchema));

    /// <summary>The output columns' sources for <paramref name="inputSchema"/>; the schema is the twin's (what a loaded model gives).</summary>
    private BatchedColumns Plan(DataViewSchema inputSchema) =>
        ScoringPlan.Create(inputSchema, GetOutputSchema(inputSchema), FeatureColumnName);

    /// <summary>The scorer (tests check how many network copies it made).</summary>
    internal NetworkScorer Scorer => _scorer;

    /// <summary>
    /// The ML.NET-native pipeline that saves for this transformer (what <c>Model.Load</c> gives back; it scores with ONNX
    /// Runtime), wrapped as a <see cref="ConvNetModel"/> so that disposing a PredictionEngine over it leaves it working.
    /// </summary>
    public ITransformer ToMLNetTransformer() => _twinView;

    /// <summary>Saves the ML.NET-native twin (see the remarks): <c>mlContext.Model.Save(transformer, schema, path)</c> calls this.</summary>
    void ICanSaveModel.Save(ModelSaveContext ctx) => ((ICanSaveModel)_twin).Save(ctx);

    /// <summary>
    /// Writes the network as an ONNX model for any batch size: input named after the feature column, <c>[N, sample...]</c>;
    /// outputs <c>Score</c> <c>[N, K]</c> (softmax probabilities, SlotNames = <see cref="ClassNames"/>) and
    /// <c>PredictedClassIndex</c> <c>[N]</c> (int64 index into <see cref="ClassNames"/>). Uses the network's current weights.
    /// </summary>
    public void ExportOnnx(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        stream.Write(MLNetGraph.ForBatches(Network, FeatureColumnName, ClassNames));
    }

    /// <summary>Writes <see cref="ExportOnnx(Stream)"/>'s model to the file <paramref name="path"/>.</summary>
    public void ExportOnnx(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        using var f = File.Create(path);
        ExportOnnx(f);
    }

    private void CheckInput(DataViewSchema schema)
    {
        ArgumentNullException.ThrowIfNull(schema);
        var column = DataViewReader.FeatureColumn(schema, FeatureColumnName);
        int size = ((VectorDataViewType)column.Type).Size;
        if (size != InputShape.Length)
            throw new ArgumentOutOfRangeException("FeatureColumnName", column.Type.ToString(),
                $"Feature column '{FeatureColumnName}' has type {column.Type} ({size} values) but the network takes samples {InputShape} ({InputShape.Length} values).");
    }
}
