using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ConvNet.Onnx;
using MLNet.ConvNet.Transforms.Batching;

namespace MLNet.ConvNet.Transforms;

/// <summary>
/// What every transformer of this project does the same way: it reads one vector-of-Single column as rows
/// <c>[C, X...]</c>, runs them through the engine in mini-batches, writes a new vector column whose dimensions are
/// the output row shape, gives ML.NET a row-to-row mapper (so <c>PredictionEngine</c> works), and saves as its
/// ML.NET-native twin: an <c>OnnxTransformer</c> over <see cref="ExportOnnx"/>'s graph.
/// </summary>
/// <remarks>
/// <para>A transformer is immutable once fitted: its weights are private copies and every cursor, row and
/// PredictionEngine owns its buffers, so any number of them may run at once on different threads.</para>
/// <para>Persistence: ML.NET's model format is internal, so <c>mlContext.Model.Save</c> stores the twin, and
/// <c>mlContext.Model.Load</c> gives back an <c>OnnxTransformer</c> (or, when the output column replaces the input
/// column, a chain of <c>OnnxTransformer</c>, <c>CopyColumns</c> and <c>DropColumns</c>), not this type. The loaded
/// model needs Microsoft.ML.OnnxTransformer and ONNX Runtime, not this assembly. It computes the same function;
/// values differ by float rounding (ONNX Runtime sums in another order) and, for NaN inputs, by ONNX Runtime's own
/// NaN rules.</para>
/// <para>NaN: the engine propagates NaN (a NaN pixel makes NaN every output whose window holds it; a max-pooling
/// window holding a NaN gives NaN). A loaded model follows ONNX Runtime instead: its Conv propagates NaN the same way,
/// its MaxPool does not (it keeps a NaN only in some window positions). Replace missing pixels before these transforms
/// if a saved model must treat them the same way.</para>
/// </remarks>
public abstract class TensorTransformer : ITransformer
{
    private readonly int[]? _inputShapeOption;
    private long _engineCalls;
    private readonly VectorDataViewType _inputType;
    private readonly EngineFunction _function;

    private protected TensorTransformer(string transform, TensorTransformOptions options, Shape inputShape, Shape outputShape, VectorDataViewType inputType)
    {
        TransformName = transform;
        InputColumnName = options.SourceColumnName;
        OutputColumnName = options.OutputColumnName;
        _inputShapeOption = options.InputShape?.ToArray();
        BatchSize = options.BatchSize;
        InputShape = inputShape;
        OutputShape = outputShape;
        _inputType = inputType;
        OutputType = TensorColumn.VectorType(outputShape);
        var choice = options.CreateBackend();
        Backend = choice.Backend;
        BackendReason = choice.Reason;
        _function = new EngineFunction(this);
    }

    /// <summary>The backend every kernel of this transformer runs on and its weights live on (chosen at Fit from the options' Backend).</summary>
    public Backends.IBackend Backend { get; }

    /// <summary>Why <see cref="Backend"/> was chosen, in words.</summary>
    public string BackendReason { get; }

    /// <summary>A copy of host values on <see cref="Backend"/> (weights and statistics).</summary>
    private protected Tensor OnBackend(ReadOnlySpan<float> values, Shape shape) => Tensor.FromHost(values, shape, Backend);

    /// <summary>The transform's name in messages ("Convolution", "Pooling", ...).</summary>
    private protected string TransformName { get; }

    /// <summary>The column read.</summary>
    public string InputColumnName { get; }

    /// <summary>The column written.</summary>
    public string OutputColumnName { get; }

    /// <summary>The shape of one input row, <c>[C, X...]</c>, fixed when the transformer was fitted.</summary>
    public Shape InputShape { get; }

    /// <summary>The shape of one output row; the output column is <c>Vector&lt;Single, OutputShape...&gt;</c>.</summary>
    public Shape OutputShape { get; }

    /// <summary>The output column's type.</summary>
    public VectorDataViewType OutputType { get; }

    /// <summary>Rows sent through the engine per call.</summary>
    public int BatchSize { get; }

    /// <summary>True: this transformer maps each row on its own (<see cref="GetRowToRowMapper"/> works).</summary>
    public bool IsRowToRowMapper => true;

    /// <summary>The ranks of a row this transform accepts.</summary>
    private protected abstract RowRank Rank { get; }

    /// <summary>The engine's forward pass on a batch <c>[N, C, X...]</c>; returns <c>[N, OutputShape...]</c> and leaves x as it was.</summary>
    private protected abstract Tensor Forward(Tensor x);

    /// <summary>Adds the ONNX nodes of the forward pass on <paramref name="x"/> <c>[1, C, X...]</c>; returns the output value.</summary>
    private protected abstract string AddOnnxNodes(OnnxGraphBuilder builder, string x);

    /// <summary>Why the saved twin could not run (null when it can): checked by Save before it builds the twin.</summary>
    private protected virtual string? UnsavableBecause => null;

    /// <summary>The input columns plus the output column (hiding an input column of the same name).</summary>
    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        CheckInput(inputSchema);
        var builder = new DataViewSchema.Builder();
        builder.AddColumns(inputSchema);
        builder.AddColumn(OutputColumnName, OutputType);
        return builder.ToSchema();
    }

    /// <summary>A lazy view: rows are computed in mini-batches of <see cref="BatchSize"/> as a cursor reaches them.</summary>
    public IDataView Transform(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        int source = CheckInput(input.Schema);
        return new BatchedDataView(_function, input, Columns(input.Schema, source));
    }

    /// <summary>A mapper that computes one row at a time on request (what <c>PredictionEngine</c> uses).</summary>
    public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        int source = CheckInput(inputSchema);
        return new BatchedRowMapper(_function, Columns(inputSchema, source));
    }

    /// <summary>
    /// Writes the transform as an ONNX model (opset 17): input named <see cref="InputColumnName"/> of shape
    /// <see cref="InputShape"/> (one row), output of shape <see cref="OutputShape"/> named <see cref="OutputColumnName"/>
    /// (or <c>OutputColumnName + "__ConvNetOutput"</c> when that equals the input's name, as ONNX names are unique, or ends
    /// with ".output", which ML.NET's OnnxTransformer strips). Weights are initializers.
    /// </summary>
    public void ExportOnnx(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        stream.Write(OnnxModel(out _));
    }

    void ICanSaveModel.Save(ModelSaveContext ctx)
    {
        if (UnsavableBecause is { } reason)
            throw new NotSupportedException($"{TransformName} (column '{OutputColumnName}') cannot be saved: {reason}");
        var twin = CreateOnnxTwin(new MLContext());
        try { ((ICanSaveModel)twin).Save(ctx); }
        finally { (twin as IDisposable)?.Dispose(); }
    }

    /// <summary>The ML.NET-native equivalent that <c>Model.Save</c> stores (see the remarks on persistence).</summary>
    internal ITransformer CreateOnnxTwin(MLContext mlContext)
    {
        var model = OnnxModel(out string onnxOutput);
        var builder = new DataViewSchema.Builder();
        builder.AddColumn(InputColumnName, _inputType);
        var empty = new EmptyDataView(builder.ToSchema());
        var onnx = mlContext.Transforms.ApplyOnnxModel([onnxOutput], [InputColumnName], new MemoryStream(model));
        if (onnxOutput == OutputColumnName) return onnx.Fit(empty);
        return onnx.Append(mlContext.Transforms.CopyColumns(OutputColumnName, onnxOutput))
            .Append(mlContext.Transforms.DropColumns(onnxOutput))
            .Fit(empty);
    }

    /// <summary>The ONNX bytes and the name of the graph's output.</summary>
    internal byte[] OnnxModel(out string outputName)
    {
        var b = new OnnxGraphBuilder(TransformName);
        string x = b.Input(InputColumnName, InputShape.ToArray());
        // ML.NET's OnnxTransformer feeds one row without a batch dimension: add it, run the op, drop it.
        x = b.Reshape(x, [1, .. ToLongs(InputShape)]);
        x = AddOnnxNodes(b, x);
        x = b.Reshape(x, ToLongs(OutputShape));
        // ONNX names are unique, so an output replacing its input needs another name; and ML.NET's OnnxTransformer
        // names the column of an ONNX output "X.output" "X" (its own exporter's convention). Both get a helper name,
        // which the twin copies to the real column and drops.
        bool helper = OutputColumnName == InputColumnName || OutputColumnName.EndsWith(".output", StringComparison.Ordinal);
        outputName = helper ? OutputColumnName + "__ConvNetOutput" : OutputColumnName;
        b.Output(x, outputName);
        return b.ToBytes();
    }

    /// <summary>Runs <paramref name="count"/> rows of <paramref name="input"/> through the engine into <paramref name="output"/>.</summary>
    internal void RunBatch(float[] input, int count, float[] output)
    {
        Interlocked.Increment(ref _engineCalls);
        using var x = Tensor.FromHost(input.AsSpan(0, count * InputShape.Length), new Shape([count, .. InputShape.AsSpan()]), Backend);
        using var y = Forward(x);
        y.CopyToHost(output.AsSpan(0, count * OutputShape.Length));
    }

    /// <summary>How many times this transformer has called the engine (tests check rows are batched).</summary>
    internal long EngineCalls => Interlocked.Read(ref _engineCalls);

    /// <summary>The output schema's columns: the input's passed through, then the one computed column.</summary>
    private BatchedColumns Columns(DataViewSchema inputSchema, int sourceColumn)
    {
        var source = Enumerable.Range(0, inputSchema.Count).Append(BatchedColumns.Computed(0)).ToArray();
        return new BatchedColumns(inputSchema, GetOutputSchema(inputSchema), source, sourceColumn);
    }

    /// <summary>The engine as the batched view's function: rows of <see cref="InputShape"/> in, rows of <see cref="OutputShape"/> out.</summary>
    private sealed class EngineFunction(TensorTransformer parent) : BatchFunction(parent.InputShape.Length, parent.BatchSize)
    {
        public override BatchOutputs CreateOutputs(int capacity) => new Outputs(parent, capacity);

        private sealed class Outputs(TensorTransformer parent, int capacity) : BatchOutputs
        {
            private readonly int _length = parent.OutputShape.Length;
            private readonly float[] _y = new float[capacity * parent.OutputShape.Length];

            public override void Compute(float[] input, int count) => parent.RunBatch(input, count, _y);

            // One computed column: the output row.
            public override Delegate Getter(int computed, Func<int> slot) => (ValueGetter<VBuffer<float>>)((ref VBuffer<float> dst) =>
            {
                var editor = VBufferEditor.Create(ref dst, _length);
                _y.AsSpan(slot() * _length, _length).CopyTo(editor.Values);
                dst = editor.Commit();
            });
        }
    }

    /// <summary>Checks the input column against the fitted row shape; returns its index.</summary>
    private int CheckInput(DataViewSchema schema)
    {
        var shape = TensorColumn.RowShape(schema, InputColumnName, _inputShapeOption, Rank, TransformName);
        if (shape != InputShape)
            throw new ArgumentException($"{TransformName}: column '{InputColumnName}' has row shape {shape} but this transformer was fitted for {InputShape}.", nameof(schema));
        return schema[InputColumnName].Index;
    }

    private static long[] ToLongs(Shape s) => Array.ConvertAll(s.ToArray(), d => (long)d);

    /// <summary>Names the column and both shapes when the engine's geometry rejects an input row shape.</summary>
    private protected static Exception ShapeError(string transform, string column, Shape rowShape, ArgumentException inner) =>
        new ArgumentException($"{transform}: column '{column}' with row shape {rowShape} does not fit: {inner.Message}", inner.ParamName, inner);
}

/// <summary>
/// What every estimator of this project does the same way: check the input column's kind before fitting and report the
/// output column, so <c>EstimatorChain</c> can check a whole pipeline before it fits.
/// </summary>
public abstract class TensorEstimator<TTransformer> : IEstimator<TTransformer> where TTransformer : TensorTransformer
{
    private protected TensorEstimator(string transform, TensorTransformOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.ValidateColumns(transform);
        TransformName = transform;
        InputColumnName = options.SourceColumnName;
        OutputColumnName = options.OutputColumnName;
    }

    private protected string TransformName { get; }
    private protected string InputColumnName { get; }
    private protected string OutputColumnName { get; }

    /// <summary>Fits the transformer: fixes the row shape from <paramref name="input"/>'s schema (and reads data where the transform learns).</summary>
    public abstract TTransformer Fit(IDataView input);

    /// <summary>
    /// The input columns plus the output column, a known-size vector of Single. Throws when the input column is missing
    /// or is not a known-size vector of Single; row shapes are checked by <see cref="Fit"/> (a schema shape has no dimensions).
    /// </summary>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        var input = TensorColumn.CheckShape(inputSchema, InputColumnName, TransformName);
        // SchemaShape.Column has no public constructor; CopyColumns reports a column of the input's kind and item
        // type (a known-size vector of Single), which is what this transform writes.
        var borrowed = new MLContext().Transforms.CopyColumns(OutputColumnName, InputColumnName).GetOutputSchema(new SchemaShape([input]));
        var output = TensorColumn.Find(borrowed, OutputColumnName);
        if (output.Name is null)
            throw new InvalidOperationException($"{TransformName}: could not describe output column '{OutputColumnName}'.");
        var columns = inputSchema.Where(c => c.Name != OutputColumnName).ToList();
        columns.Add(output);
        return new SchemaShape(columns);
    }

    /// <summary>The row shape of the input column in <paramref name="schema"/>.</summary>
    private protected Shape RowShape(DataViewSchema schema, TensorTransformOptions options, RowRank rank, out VectorDataViewType type)
    {
        var shape = TensorColumn.RowShape(schema, InputColumnName, options.InputShape, rank, TransformName);
        type = (VectorDataViewType)schema[InputColumnName].Type;
        return shape;
    }
}
