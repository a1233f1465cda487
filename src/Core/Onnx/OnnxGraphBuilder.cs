using Google.Protobuf;
using Onnx;
using DataType = Onnx.TensorProto.Types.DataType;

namespace MLNet.ConvNet.Onnx;

// ONNX export, one file per concern:
//   OnnxGraphBuilder.cs          names, graph inputs and outputs, shapes, serialization (this file)
//   OnnxGraphBuilder.Layers.cs   our ops as ONNX nodes: Conv, ConvTranspose, pooling, LRN, batch norm,
//                                activations, Gemm, Softmax
//   OnnxGraphBuilder.Shaping.cs  Flatten, Reshape, ArgMax, LabelEncoder and ML.NET's SlotNames convention
//   OnnxProto.cs                 constructors for the protobuf messages (OnnxSharp's generated classes)

/// <summary>
/// Builds an ONNX model from our ops, node by node: every method takes the names of its input values and
/// returns the name of its output value; weights are given as <see cref="Tensor"/>s and become initializers.
/// </summary>
/// <remarks>
/// <para>Usage:</para>
/// <code>
/// var b = new OnnxGraphBuilder();
/// string x = b.Input("features", [-1, 1, 28, 28]);          // -1: dynamic batch (dim_param "N")
/// string h = b.Convolution(x, w1, b1, new ConvolutionOptions { Padding = 2 });
/// h = b.Activation(h, ActivationKind.ReLU);
/// h = b.Pooling(h, PoolingOptions.Default);
/// h = b.Dense(h, w2, b2);                                   // flattens [N, C, H, W] to [N, C*H*W] first
/// h = b.Softmax(h);
/// b.Output(h, "Score");
/// byte[] model = b.ToBytes();
/// </code>
/// <para>The model uses ONNX opset <see cref="OpsetVersion"/> (default domain) and, when a LabelEncoder is
/// present, <c>ai.onnx.ml</c> opset <see cref="MlOpsetVersion"/>, with IR version <see cref="IrVersion"/>:
/// the pair released together with ONNX 1.12, which ONNX Runtime 1.31 and ML.NET's OnnxTransformer load.</para>
/// <para>Shapes are tracked from the inputs through every op and checked with the engine's own geometry
/// (<see cref="Ops.ConvGeometry"/>, <see cref="Ops.PoolGeometry"/>), so a graph that builds here has the shapes our
/// forward ops would produce. Only the batch dimension (dimension 0) may be dynamic; the geometry checks read it
/// as 1, so their error messages show a dynamic batch as 1.</para>
/// <para>Node, value and initializer names are unique: generated names are <c>{OpType}_{index}</c> for nodes,
/// with suffixes <c>_Y</c> (output), <c>_W</c>, <c>_B</c>, ... for their values and constants.</para>
/// </remarks>
public sealed partial class OnnxGraphBuilder
{
    /// <summary>ONNX IR version written into the model (8: ONNX 1.12, the release of opset 17).</summary>
    public const long IrVersion = 8;

    /// <summary>Opset of the default ONNX domain (17).</summary>
    public const long OpsetVersion = 17;

    /// <summary>Opset of the <c>ai.onnx.ml</c> domain (3, the one paired with opset 17), used only by LabelEncoder.</summary>
    public const long MlOpsetVersion = 3;

    /// <summary>The <c>dim_param</c> written for a dynamic (-1) batch dimension.</summary>
    public const string DynamicDimensionName = "N";

    /// <summary>The domain of the ONNX-ML operators (LabelEncoder).</summary>
    public const string MlDomain = "ai.onnx.ml";

    private readonly GraphProto _graph;
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);
    private readonly Dictionary<string, ValueInfo> _values = new(StringComparer.Ordinal);
    private readonly List<KeyValuePair<string, string>> _metadata = [];
    private int _nodeCount;
    private bool _usesMlDomain;

    /// <summary>The shape (-1 for a dynamic batch) and element type of one value in the graph.</summary>
    private sealed record ValueInfo(int[] Dims, DataType Type);

    /// <summary>Creates an empty graph named <paramref name="graphName"/>.</summary>
    public OnnxGraphBuilder(string graphName = "MLNet.ConvNet")
    {
        ArgumentException.ThrowIfNullOrEmpty(graphName);
        _graph = new GraphProto { Name = graphName };
    }

    /// <summary>
    /// Declares a float32 graph input named <paramref name="name"/> with dimensions <paramref name="dims"/>
    /// (outermost first; -1 in dimension 0 is a dynamic batch, written as dim_param <c>"N"</c>) and returns its name.
    /// </summary>
    /// <remarks>For ML.NET's <c>ApplyOnnxModel</c>, the input's name is the feature column's name.</remarks>
    public string Input(string name, int[] dims)
    {
        ArgumentNullException.ThrowIfNull(dims);
        if (dims.Length == 0) throw new ArgumentException($"Input '{name}': give at least one dimension.", nameof(dims));
        for (int i = 0; i < dims.Length; i++)
            if (!(dims[i] > 0 || (dims[i] == -1 && i == 0)))
                throw new ArgumentException($"Input '{name}': dimension {i} of {Shape.Format(dims)} is {dims[i]}; dimensions must be positive, and only dimension 0 (the batch) may be -1 (dynamic).", nameof(dims));
        Claim(name, nameof(name));
        _values[name] = new ValueInfo((int[])dims.Clone(), DataType.Float);
        _graph.Input.Add(OnnxProto.Value(name, DataType.Float, dims, hasShape: true, DynamicDimensionName));
        return name;
    }

    /// <summary>
    /// Declares <paramref name="value"/> a graph output named <paramref name="name"/> (an Identity node gives it that name).
    /// Its declared shape is <paramref name="dims"/> when given (-1 marks a dynamic dimension), else the tracked shape.
    /// </summary>
    /// <remarks>For ML.NET's <c>ApplyOnnxModel</c>, output names become column names (e.g. "Score").</remarks>
    public void Output(string value, string name, int[]? dims = null)
    {
        var info = Get(value, nameof(value));
        var declared = dims is null ? info.Dims : (int[])dims.Clone();
        if (dims is not null)
        {
            if (dims.Length != info.Dims.Length)
                throw new ArgumentException($"Output '{name}': {Shape.Format(dims)} has {dims.Length} dimensions but value '{value}' has shape {Format(info.Dims)}.", nameof(dims));
            for (int i = 0; i < dims.Length; i++)
            {
                bool valid = dims[i] > 0 || dims[i] == -1;
                bool agrees = dims[i] == -1 || info.Dims[i] == -1 || dims[i] == info.Dims[i];
                if (!valid || !agrees)
                    throw new ArgumentException($"Output '{name}': dimension {i} is declared {dims[i]} but value '{value}' has shape {Format(info.Dims)}.", nameof(dims));
            }
        }
        Claim(name, nameof(name));
        AddNode(NewNodeName("Identity"), "Identity", [value], [], output: name);
        _values[name] = info with { Dims = declared };
        _graph.Output.Add(OnnxProto.Value(name, info.Type, declared, hasShape: true, DynamicDimensionName));
    }

    /// <summary>
    /// Adds an entry to the model's <c>metadata_props</c> (free-form key/value text that ONNX Runtime returns as
    /// <c>ModelMetadata.CustomMetadataMap</c>); a key may be given once.
    /// </summary>
    public void Metadata(string key, string value)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        ArgumentNullException.ThrowIfNull(value);
        if (_metadata.Any(m => m.Key == key)) throw new ArgumentException($"Metadata key '{key}' is already set.", nameof(key));
        _metadata.Add(new(key, value));
    }

    /// <summary>The tracked shape of <paramref name="value"/> (-1 for a dynamic batch).</summary>
    public int[] ShapeOf(string value) => (int[])Get(value, nameof(value)).Dims.Clone();

    /// <summary>Serializes the model (ModelProto) to bytes, ready for <c>InferenceSession</c> or <c>ApplyOnnxModel</c>.</summary>
    public byte[] ToBytes()
    {
        if (_graph.Input.Count == 0) throw new InvalidOperationException("The graph has no input; call Input first.");
        if (_graph.Output.Count == 0) throw new InvalidOperationException("The graph has no output; call Output first.");
        var model = new ModelProto
        {
            IrVersion = IrVersion,
            ProducerName = "MLNet.ConvNet",
            ProducerVersion = typeof(OnnxGraphBuilder).Assembly.GetName().Version?.ToString() ?? "",
            Graph = _graph,
        };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = OpsetVersion });
        if (_usesMlDomain) model.OpsetImport.Add(new OperatorSetIdProto { Domain = MlDomain, Version = MlOpsetVersion });
        foreach (var (key, value) in _metadata) model.MetadataProps.Add(new StringStringEntryProto { Key = key, Value = value });
        return model.ToByteArray();
    }

    // ---- plumbing shared by the op files ----

    /// <summary>
    /// Adds node <paramref name="node"/> (a name from <see cref="NewNodeName"/> or claimed) with one output;
    /// returns the output's name: <paramref name="output"/> when given, else <c>{node}_Y</c>.
    /// </summary>
    private string AddNode(string node, string opType, IEnumerable<string> inputs, IEnumerable<AttributeProto> attributes,
        string? output = null, string domain = "")
    {
        output ??= Fresh(node + "_Y");
        var n = new NodeProto { Name = node, OpType = opType, Domain = domain };
        n.Input.AddRange(inputs);
        n.Output.Add(output);
        n.Attribute.AddRange(attributes);
        _graph.Node.Add(n);
        return output;
    }

    /// <summary>A node name <c>{opType}_{index}</c>, the index counting every node of the graph.</summary>
    private string NewNodeName(string opType) => Fresh($"{opType}_{_nodeCount++}");

    /// <summary>Records the shape and type of a node's output; returns its name.</summary>
    private string Track(string value, int[] dims, DataType type = DataType.Float)
    {
        _values[value] = new ValueInfo(dims, type);
        return value;
    }

    /// <summary>Adds a float initializer named <c>{node}_{role}</c>; returns its name.</summary>
    private string Constant(string node, string role, ReadOnlySpan<float> data, ReadOnlySpan<int> dims)
    {
        string name = Fresh($"{node}_{role}");
        _graph.Initializer.Add(OnnxProto.FloatTensor(name, data, dims));
        return name;
    }

    /// <summary>Adds an int64 initializer named <c>{node}_{role}</c>; returns its name.</summary>
    private string Constant(string node, string role, ReadOnlySpan<long> data, ReadOnlySpan<int> dims)
    {
        string name = Fresh($"{node}_{role}");
        _graph.Initializer.Add(OnnxProto.Int64Tensor(name, data, dims));
        return name;
    }

    /// <summary><paramref name="wanted"/> if no node, value or initializer has it yet, else the first free <c>{wanted}_k</c>.</summary>
    private string Fresh(string wanted)
    {
        string name = wanted;
        for (int k = 1; _names.Contains(name); k++) name = $"{wanted}_{k}";
        _names.Add(name);
        return name;
    }

    /// <summary>Reserves a name the caller chose; it must be new (ONNX names are unique within a graph).</summary>
    private string Claim(string name, string parameter)
    {
        ArgumentException.ThrowIfNullOrEmpty(name, parameter);
        if (!_names.Add(name))
            throw new ArgumentException($"The name '{name}' is already used in this graph (by a value, node or initializer).", parameter);
        return name;
    }

    private ValueInfo Get(string value, string parameter)
    {
        ArgumentNullException.ThrowIfNull(value, parameter);
        if (!_values.TryGetValue(value, out var info))
            throw new ArgumentException($"'{value}' is not a value of this graph; pass a name returned by Input or by an op.", parameter);
        return info;
    }

    /// <summary>The float value <paramref name="value"/>'s shape, checked to have a rank in [<paramref name="minRank"/>, <paramref name="maxRank"/>].</summary>
    private int[] FloatInput(string value, string op, int minRank, int maxRank = int.MaxValue)
    {
        var info = Get(value, "x");
        if (info.Type != DataType.Float)
            throw new ArgumentException($"{op}: '{value}' holds {info.Type} values; expected float.", "x");
        if (info.Dims.Length < minRank || info.Dims.Length > maxRank)
            throw new ArgumentException($"{op}: '{value}' has shape {Format(info.Dims)} (rank {info.Dims.Length}); expected rank {(maxRank == int.MaxValue ? $">= {minRank}" : minRank == maxRank ? $"{minRank}" : $"{minRank} to {maxRank}")}.", "x");
        return info.Dims;
    }

    /// <summary>
    /// A concrete <see cref="MLNet.ConvNet.Shape"/> standing in for <paramref name="dims"/> (a dynamic batch read as 1),
    /// so the engine's geometry classes can check the op; <see cref="WithBatch"/> puts the dynamic batch back.
    /// </summary>
    private static Shape Proxy(int[] dims) => new(dims[0] == -1 ? [1, .. dims[1..]] : dims);

    private static int[] WithBatch(Shape shape, int[] input)
    {
        var dims = shape.ToArray();
        dims[0] = input[0];
        return dims;
    }

    private static string Format(int[] dims) => Shape.Format(dims);
}
