using MLNet.ConvNet.Layers;
using MLNet.ConvNet.Training;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace MLNet.ConvNet.Trainers;

/// <summary>
/// A trained convolutional network as an ML.NET transformer: adds <c>Score</c> (<c>Vector&lt;Single, K&gt;</c>, the class
/// probabilities, with SlotNames) and <c>PredictedLabel</c> (<c>Key&lt;UInt32, K&gt;</c> whose KeyValues are the label's
/// values as text), so <c>MulticlassClassification.Evaluate</c>, <c>Model.Save</c>/<c>Load</c> and PredictionEngine work as with
/// ML.NET's own trainers. Made by <see cref="ConvNetTrainer.Fit"/>.
/// </summary>
/// <remarks>
/// <para>Scoring and saving go through an ML.NET-native twin (<see cref="ToMLNetTransformer"/>): <c>ApplyOnnxModel</c>
/// over the network exported to ONNX at the end of training, then the columns that make PredictedLabel a key. ML.NET
/// cannot save a third-party transformer, so <see cref="ICanSaveModel.Save"/> saves the twin: after
/// <c>mlContext.Model.Load</c> the model is a <c>TransformerChain&lt;ITransformer&gt;</c> of ML.NET types, not this class,
/// and it scores exactly as this transformer does (same graph, same ONNX Runtime).</para>
/// <para><see cref="Network"/> is the trained network itself; <see cref="Transform"/> and saving use the weights as
/// they were when training ended (later changes to the network reach only <see cref="ExportOnnx(Stream)"/>).</para>
/// </remarks>
public sealed class ConvNetTransformer : ITransformer
{
    private readonly ITransformer _twin;

    internal ConvNetTransformer(Network network, LabelClasses classes, string featureColumnName, string labelColumnName,
        IReadOnlyList<EpochMetrics> history, int? bestEpoch, bool stoppedEarly, IDataView schemaSource)
    {
        Network = network; Classes = classes; FeatureColumnName = featureColumnName; LabelColumnName = labelColumnName;
        History = history; BestEpoch = bestEpoch; StoppedEarly = stoppedEarly;
        _twin = MLNetGraph.BuildTwin(MLNetGraph.ForMLNet(network, featureColumnName, classes.Names), featureColumnName, classes, schemaSource);
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
    public bool IsRowToRowMapper => _twin.IsRowToRowMapper;

    /// <summary>The input schema plus Score and PredictedLabel; throws naming the feature column when it is missing or does not fit.</summary>
    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema)
    {
        CheckInput(inputSchema);
        return _twin.GetOutputSchema(inputSchema);
    }

    /// <summary>Scores <paramref name="input"/> lazily (ML.NET's usual contract): adds Score and PredictedLabel.</summary>
    public IDataView Transform(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        CheckInput(input.Schema);
        return _twin.Transform(input);
    }

    /// <summary>The row-to-row mapper PredictionEngine uses.</summary>
    public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema)
    {
        CheckInput(inputSchema);
        return _twin.GetRowToRowMapper(inputSchema);
    }

    /// <summary>The ML.NET-native pipeline that scores and saves for this transformer (what <c>Model.Load</c> gives back).</summary>
    public ITransformer ToMLNetTransformer() => _twin;

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
