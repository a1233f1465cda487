using MLNet.ConvNet.Layers;
using MLNet.ConvNet.Onnx;
using MLNet.ConvNet.Transforms.Batching;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace MLNet.ConvNet.Trainers;

/// <summary>
/// A trained network's penultimate layer as a vector column: the network without its last layer (the class logits)
/// maps each row's image to <c>Vector&lt;Single, D&gt;</c>, so LightGbm, SDCA and ML.NET's other trainers can learn on
/// CNN features. Made by <see cref="ConvNetFeaturizerEstimator.Fit"/>
/// (<c>mlContext.Transforms.ConvNetFeaturizer(model)</c>).
/// </summary>
/// <remarks>
/// <para>Features are computed by this project's engine, 256 rows per forward pass as a cursor reaches them, on copies
/// of the cut network (the scorer <see cref="ConvNetTransformer"/> uses, without the softmax). Dropout is the identity
/// here (inference mode) and batch norm uses its running statistics.</para>
/// <para>Saving goes through an ML.NET-native twin, as for <see cref="ConvNetTransformer"/>: <c>ApplyOnnxModel</c> over
/// the cut network exported to ONNX; after <c>mlContext.Model.Load</c> the column is computed by ONNX Runtime, with the
/// same type, values equal to float rounding.</para>
/// </remarks>
public sealed class ConvNetFeaturizerTransformer : ITransformer
{
    private readonly ITransformer _twin;
    private readonly NetworkScorer _scorer;
    private readonly FeatureFunction _function;

    internal ConvNetFeaturizerTransformer(Network body, string inputColumnName, string outputColumnName, IDataView schemaSource)
    {
        Body = body; InputColumnName = inputColumnName; OutputColumnName = outputColumnName;
        FeatureCount = body.OutputShape!.Value[0];
        _twin = BuildTwin(body, inputColumnName, outputColumnName, schemaSource);
        _scorer = new NetworkScorer(body, softmax: false);
        _function = new FeatureFunction(_scorer);
    }

    /// <summary>The network that computes the features: the trained network's layers but the last, with its weights.</summary>
    public Network Body { get; }

    /// <summary>The image column read.</summary>
    public string InputColumnName { get; }

    /// <summary>The feature column written.</summary>
    public string OutputColumnName { get; }

    /// <summary>D: the size of the feature vector (the penultimate layer's width).</summary>
    public int FeatureCount { get; }

    /// <summary>True: PredictionEngine works.</summary>
    public bool IsRowToRowMapper => true;

    /// <summary>The input schema plus the feature column (<c>Vector&lt;Single, D&gt;</c>); throws naming the input column when it is missing or does not fit.</summary>
    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        var column = DataViewReader.FeatureColumn(inputSchema, InputColumnName, "Input");
        var sample = Body.InputShape!.Value;
        int size = ((VectorDataViewType)column.Type).Size;
        if (size != sample.Length)
            throw new ArgumentOutOfRangeException("InputColumnName", column.Type.ToString(),
                $"Input column '{InputColumnName}' has type {column.Type} ({size} values) but the network takes samples {sample} ({sample.Length} values).");
        return _twin.GetOutputSchema(inputSchema);
    }

    /// <summary>Adds the feature column lazily, computed 256 rows at a time as a cursor reaches them.</summary>
    public IDataView Transform(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        return new BatchedDataView(_function, input, Plan(input.Schema));
    }

    /// <summary>The row-to-row mapper PredictionEngine uses: one forward pass per row.</summary>
    public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema) => new BatchedRowMapper(_function, Plan(inputSchema));

    /// <summary>The ML.NET-native pipeline that saves for this transformer (what <c>Model.Load</c> gives back).</summary>
    public ITransformer ToMLNetTransformer() => _twin;

    /// <summary>Saves the ML.NET-native twin (see the remarks).</summary>
    void ICanSaveModel.Save(ModelSaveContext ctx) => ((ICanSaveModel)_twin).Save(ctx);

    /// <summary>The twin: ApplyOnnxModel over the body's graph, input named after the image column, output after the feature column.</summary>
    private static ITransformer BuildTwin(Network body, string input, string output, IDataView schemaSource)
    {
        var b = new OnnxGraphBuilder();
        string x = b.Input(input, [-1, .. body.InputShape!.Value.AsSpan()]);
        // ML.NET runs the graph one row at a time; a [D] output becomes Vector<Single, D> (a [1, D] one would be 2-D).
        b.Output(b.Reshape(body.ExportOnnx(b, x), [body.OutputShape!.Value[0]]), output);
        var ml = new MLContext(seed: 0);
        return ml.Transforms.ApplyOnnxModel([output], [input], new MemoryStream(b.ToBytes())).Fit(schemaSource);
    }

    /// <summary>Each output column: the feature column is computed, every other one is the same-named input column (the k-th of that name).</summary>
    private BatchedColumns Plan(DataViewSchema input)
    {
        var output = GetOutputSchema(input);
        int computed = output[OutputColumnName].Index;
        var source = new int[output.Count];
        var seen = new Dictionary<string, int>();
        for (int j = 0; j < output.Count; j++)
        {
            if (j == computed) { source[j] = BatchedColumns.Computed(0); continue; }
            int k = seen.GetValueOrDefault(output[j].Name);
            seen[output[j].Name] = k + 1;
            source[j] = input.Where(c => c.Name == output[j].Name).Skip(k).First().Index;
        }
        return new BatchedColumns(input, output, source, input[InputColumnName].Index);
    }

    /// <summary>The body as the batched view's function: images in, the feature vectors out.</summary>
    private sealed class FeatureFunction(NetworkScorer scorer) : BatchFunction(scorer.SampleShape.Length, scorer.BatchSize)
    {
        public override BatchOutputs CreateOutputs(int capacity) => new Outputs(scorer, capacity);

        private sealed class Outputs(NetworkScorer scorer, int capacity) : BatchOutputs
        {
            private readonly float[] _features = new float[capacity * scorer.Classes];
            private readonly int[] _argMax = new int[capacity]; // the scorer's argmax, not used here

            public override void Compute(float[] input, int count) => scorer.Score(input, count, _features, _argMax);

            public override Delegate Getter(int computed, Func<int> slot)
            {
                int d = scorer.Classes;
                return (ValueGetter<VBuffer<float>>)((ref VBuffer<float> dst) =>
                {
                    var editor = VBufferEditor.Create(ref dst, d);
                    _features.AsSpan(slot() * d, d).CopyTo(editor.Values);
                    dst = editor.Commit();
                });
            }
        }
    }

    /// <summary>
    /// The body of <paramref name="trained"/>: copies of all its layers but the last, on its backend, holding its weights.
    /// Throws when the network is not built, has one layer, or its penultimate output is not a vector.
    /// </summary>
    internal static Network Cut(Network trained)
    {
        ArgumentNullException.ThrowIfNull(trained);
        if (trained.InputShape is not { } sample) throw new ArgumentException("ConvNetFeaturizer: the network is not built (train it first).", "network");
        if (trained.Layers.Count < 2) throw new ArgumentException("ConvNetFeaturizer: the network has one layer; there is no penultimate layer to take features from.", "network");
        var body = new Network(trained.Layers.Take(trained.Layers.Count - 1).Select(l => l.Clone()), trained.Backend);
        body.Build(sample);
        if (body.OutputShape is not { Rank: 1 } output)
            throw new ArgumentException($"ConvNetFeaturizer: the layer before the last ('{trained.Layers[^2].Name}') outputs {body.OutputShape} per sample; the featurizer needs a vector (end the network with Flatten/Dense before its last layer).", "network");
        // Clones keep their layers' names, so every tensor of the body has its namesake in the trained network.
        var state = trained.StateTensors().ToDictionary(t => t.Name, t => t.Value);
        foreach (var (name, target) in body.StateTensors()) target.CopyFromHost(state[name].ToHost());
        return body;
    }
}

/// <summary>
/// Estimator of <see cref="ConvNetFeaturizerTransformer"/>: it does not look at the data; Fit cuts the trained network
/// before its last layer. Made by <c>mlContext.Transforms.ConvNetFeaturizer(...)</c>.
/// </summary>
/// <remarks>
/// <list type="table">
/// <item><term>Does this estimator need to look at the data to train its parameters?</term><description>No</description></item>
/// <item><term>Input column data type</term><description>Known-size vector of Single holding the network's samples (the trained model's feature column)</description></item>
/// <item><term>Output column data type</term><description><c>Vector&lt;Single, D&gt;</c>, D the penultimate layer's width (84 for lenet5, 128 for cnn2bn)</description></item>
/// <item><term>Exportable to ONNX</term><description>Saved models hold the cut network as ONNX (ApplyOnnxModel)</description></item>
/// <item><term>Backends</term><description>The trained network's backend</description></item>
/// </list>
/// </remarks>
public sealed class ConvNetFeaturizerEstimator : IEstimator<ConvNetFeaturizerTransformer>
{
    /// <summary>"CnnFeatures": the default output column.</summary>
    public const string DefaultOutputColumnName = "CnnFeatures";

    private readonly Network _body;
    private readonly string _input, _output;

    /// <summary>
    /// A featurizer from the trained <paramref name="network"/> (built), reading images from <paramref name="inputColumnName"/>
    /// and writing the penultimate layer's output to <paramref name="outputColumnName"/>. The weights are copied now.
    /// </summary>
    public ConvNetFeaturizerEstimator(Network network, string inputColumnName, string outputColumnName = DefaultOutputColumnName)
    {
        ArgumentException.ThrowIfNullOrEmpty(inputColumnName);
        ArgumentException.ThrowIfNullOrEmpty(outputColumnName);
        if (inputColumnName == outputColumnName)
            throw new ArgumentException($"ConvNetFeaturizer: outputColumnName '{outputColumnName}' must differ from inputColumnName (the saved ONNX graph cannot read and write one name).", nameof(outputColumnName));
        _body = ConvNetFeaturizerTransformer.Cut(network);
        _input = inputColumnName; _output = outputColumnName;
    }

    /// <summary>A featurizer from a fitted <see cref="ConvNetTransformer"/>, reading its feature column.</summary>
    public ConvNetFeaturizerEstimator(ConvNetTransformer model, string outputColumnName = DefaultOutputColumnName)
        : this((model ?? throw new ArgumentNullException(nameof(model))).Network, model.FeatureColumnName, outputColumnName) { }

    /// <summary>The input schema plus the feature column (a vector of Single); throws naming the input column when it is missing or not a vector of Single.</summary>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        var found = inputSchema.Where(c => c.Name == _input).ToArray();
        if (found.Length == 0)
            throw new ArgumentOutOfRangeException("inputColumnName", _input, $"Input column '{_input}' is not in the data; its columns are: {string.Join(", ", inputSchema.Select(c => c.Name))}.");
        var column = found[^1];
        if (column.Kind != SchemaShape.Column.VectorKind.Vector || column.ItemType != NumberDataViewType.Single)
            throw new ArgumentOutOfRangeException("inputColumnName", column.ItemType.ToString(), $"Input column '{_input}' is not a known-size vector of Single.");
        // SchemaShape.Column's constructor is internal: a Concatenate of the input gives the same kind of column.
        return new MLContext(seed: 0).Transforms.Concatenate(_output, _input).GetOutputSchema(inputSchema);
    }

    /// <summary>The transformer (the data are only used for their schema).</summary>
    public ConvNetFeaturizerTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        DataViewReader.FeatureColumn(input.Schema, _input, "Input");
        return new ConvNetFeaturizerTransformer(_body, _input, _output, input);
    }
}
