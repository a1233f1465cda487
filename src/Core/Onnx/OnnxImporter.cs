using System.Runtime.InteropServices;
using Google.Protobuf;
using MLNet.ConvNet.Backends;
using MLNet.ConvNet.Layers;
using Onnx;
using DataType = Onnx.TensorProto.Types.DataType;

namespace MLNet.ConvNet.Onnx;

// ONNX import, one file per concern:
//   OnnxImporter.cs        reading the model (protobuf through OnnxSharp's generated classes), constants, the data
//                          input, and turning the node list into a sequence of layers and Graph blocks (this file)
//   OnnxImporter.Ops.cs    one method per supported ONNX op: its attributes checked, the layer it becomes

/// <summary>A network read from an ONNX file by <see cref="OnnxImporter"/>.</summary>
public sealed class ImportedModel
{
    internal ImportedModel(Network network, string inputName, string outputName, long opset, bool softmaxRemoved)
    {
        Network = network; InputName = inputName; OutputName = outputName; Opset = opset; SoftmaxRemoved = softmaxRemoved;
    }

    /// <summary>The network, built for the model's sample shape, its parameters and running statistics the file's initializers.</summary>
    public Network Network { get; }
    /// <summary>The name of the model's data input.</summary>
    public string InputName { get; }
    /// <summary>The name of the model's output.</summary>
    public string OutputName { get; }
    /// <summary>The model's opset of the default ONNX domain.</summary>
    public long Opset { get; }
    /// <summary>
    /// True when the model ended in a Softmax, which the import leaves out: the network returns the logits it was
    /// applied to (what training needs); the model's own output is their softmax over dimension 1.
    /// </summary>
    public bool SoftmaxRemoved { get; }
}

/// <summary>
/// Reads a convolutional network from an ONNX model (opset 11 or newer) into our layers: a sequence of layers, with each
/// part that branches (residual additions, channel concatenations) in a <see cref="Graph"/> block. The initializers
/// become the layers' parameters (and batch norm's running statistics). docs/onnx-import.md lists every supported op
/// and attribute; any other op, or an attribute value outside what our layers compute, is an
/// <see cref="NotSupportedException"/> naming the node, its op type and the supported ops.
/// </summary>
/// <example>
/// <code>
/// var model = OnnxImporter.Import("resnet18.onnx");         // model.Network: built, weights loaded
/// var logits = model.Network.Forward(x, training: false);   // x: [N, 3, 224, 224]
/// </code>
/// </example>
public static partial class OnnxImporter
{
    /// <summary>The oldest opset of the default domain the importer reads (11).</summary>
    public const long MinimumOpset = 11;

    /// <summary>
    /// Imports the model in file <paramref name="path"/> onto <paramref name="backend"/> (the default CPU backend when
    /// null). <paramref name="sampleShape"/> (one sample, no batch dimension) replaces the shape the model declares: needed
    /// when it declares symbolic sizes, and allowed when the network takes another size (a convnet ending in global pooling).
    /// </summary>
    public static ImportedModel Import(string path, IBackend? backend = null, Shape? sampleShape = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"OnnxImporter: no file '{path}'.", path);
        try { return Import(File.ReadAllBytes(path), backend, sampleShape); }
        catch (InvalidDataException e) { throw new InvalidDataException($"OnnxImporter: '{path}': {e.Message}", e); }
    }

    /// <summary>Imports the serialized model <paramref name="model"/>; see <see cref="Import(string, IBackend?, Shape?)"/>.</summary>
    public static ImportedModel Import(byte[] model, IBackend? backend = null, Shape? sampleShape = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ModelProto proto;
        try { proto = ModelProto.Parser.ParseFrom(model); }
        catch (InvalidProtocolBufferException e) { throw new InvalidDataException($"not an ONNX model ({e.Message}).", e); }
        if (proto.Graph is null) throw new InvalidDataException("the model has no graph.");
        long opset = proto.OpsetImport.Where(o => o.Domain is "" or "ai.onnx").Select(o => o.Version).DefaultIfEmpty(0).Max();
        if (opset < MinimumOpset)
            throw new NotSupportedException($"OnnxImporter reads opset {MinimumOpset} and newer; this model uses opset {opset} of the default domain (convert it, e.g. with onnx.version_converter).");
        return new Reader(proto.Graph, opset).Read(backend ?? DefaultBackend.Instance, sampleShape);
    }

    /// <summary>The ONNX op types the importer reads (docs/onnx-import.md gives their attribute limits).</summary>
    public static IReadOnlyList<string> SupportedOps { get; } =
    [
        "Conv", "ConvTranspose", "BatchNormalization", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Elu", "MaxPool", "AveragePool",
        "GlobalAveragePool", "GlobalMaxPool", "Gemm", "MatMul", "Add", "Concat", "Flatten", "Reshape", "Dropout", "Softmax",
        "LRN", "Identity", "Constant",
    ];

    /// <summary>A constant (initializer or Constant node): its dimensions and values as floats (int64 values converted).</summary>
    private sealed record Constant(int[] Dims, float[] Values, long[]? Longs)
    {
        public int Length => Values.Length;
    }

    /// <summary>One step of the imported network: a layer (one input) or a merge (several), and the value it writes.</summary>
    private sealed class Item(string name, GraphNodeKind kind, Layer? layer, string[] inputs, string output)
    {
        public string Name { get; } = name;
        public GraphNodeKind Kind { get; } = kind;
        public Layer? Layer { get; } = layer;
        public string[] Inputs { get; } = inputs;
        public string Output { get; } = output;
        /// <summary>The values of the layer's Parameters, then of its Buffers, in order, with the ONNX names they come from.</summary>
        public List<(string Source, Constant Value)> Weights { get; } = [];
    }

    /// <summary>One pass over a graph: the constants, the data values' shapes, and the items made so far.</summary>
    private sealed partial class Reader(GraphProto graph, long opset)
    {
        private readonly Dictionary<string, Constant> _constants = new(StringComparer.Ordinal);
        private readonly Dictionary<string, Shape> _shapes = new(StringComparer.Ordinal);   // data values (batch 1)
        private readonly Dictionary<string, string> _alias = new(StringComparer.Ordinal);   // Identity: value -> value it equals
        private readonly List<Item> _items = [];
        private readonly HashSet<string> _names = new(StringComparer.Ordinal);
        private readonly HashSet<NodeProto> _fused = [];                                      // Adds absorbed into a MatMul
        private bool _softmaxRemoved;

        public ImportedModel Read(IBackend backend, Shape? sampleShape)
        {
            foreach (var t in graph.Initializer) _constants[t.Name] = ReadTensor(t, $"initializer '{t.Name}'");
            var inputs = graph.Input.Where(i => !_constants.ContainsKey(i.Name)).ToArray();
            if (inputs.Length != 1)
                throw new NotSupportedException($"OnnxImporter takes a model with one data input; this one has {inputs.Length}: {string.Join(", ", inputs.Select(i => i.Name))}.");
            if (graph.Output.Count != 1)
                throw new NotSupportedException($"OnnxImporter takes a model with one output; this one has {graph.Output.Count}: {string.Join(", ", graph.Output.Select(o => o.Name))}.");
            var input = inputs[0];
            var sample = sampleShape ?? DeclaredSample(input);
            _shapes[input.Name] = new Shape([1, .. sample.AsSpan()]);

            var nodes = graph.Node.ToArray();
            for (int i = 0; i < nodes.Length; i++)
            {
                var node = nodes[i];
                if (_fused.Contains(node)) continue;
                if (node.Domain is not ("" or "ai.onnx")) throw Unsupported(node, $"its domain '{node.Domain}' is not the default ONNX domain");
                ReadNode(node, i, nodes);
            }

            string output = Resolve(graph.Output[0].Name);
            if (!_shapes.ContainsKey(output)) throw new NotSupportedException($"OnnxImporter: the model's output '{graph.Output[0].Name}' is not computed from its input by the supported ops.");
            var layers = Sequence(input.Name, output);
            var network = new Network(layers, backend);
            try { network.Build(sample); }
            catch (ArgumentException e) { throw new ArgumentException($"OnnxImporter: the imported network cannot take samples {sample}: {e.Message}", nameof(sampleShape), e); }
            LoadWeights();
            return new ImportedModel(network, input.Name, graph.Output[0].Name, opset, _softmaxRemoved);
        }

        /// <summary>The data input's declared shape without its batch dimension; every other dimension must be a number.</summary>
        private static Shape DeclaredSample(ValueInfoProto input)
        {
            var tensor = input.Type?.TensorType;
            if (tensor is null || tensor.ElemType != (int)DataType.Float)
                throw new NotSupportedException($"OnnxImporter: input '{input.Name}' must be a float tensor.");
            var dims = tensor.Shape?.Dim.ToArray() ?? [];
            if (dims.Length < 2 || dims.Skip(1).Any(d => d.ValueCase != TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue || d.DimValue < 1))
                throw new NotSupportedException($"OnnxImporter: input '{input.Name}' has shape [{string.Join(", ", dims.Select(d => d.ValueCase == TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue ? d.DimValue.ToString() : d.DimParam))}]; " +
                    "every dimension after the batch must be a number. Pass the sample shape to Import (e.g. [3, 224, 224]).");
            return new Shape(dims.Skip(1).Select(d => checked((int)d.DimValue)).ToArray());
        }

        /// <summary>The value <paramref name="name"/> stands for after Identity nodes.</summary>
        private string Resolve(string name)
        {
            while (_alias.TryGetValue(name, out var to)) name = to;
            return name;
        }

        /// <summary>Input <paramref name="index"/> of <paramref name="node"/> as a data value (computed from the model's input); returns its name.</summary>
        private string Data(NodeProto node, int index)
        {
            if (index >= node.Input.Count || node.Input[index] == "") throw Unsupported(node, $"it has no input {index}");
            string name = Resolve(node.Input[index]);
            if (_constants.ContainsKey(name)) throw Unsupported(node, $"its input {index} '{name}' is a constant where the importer needs a value computed from the model's input");
            if (!_shapes.ContainsKey(name)) throw new InvalidDataException($"ONNX node '{node.Name}' ({node.OpType}) reads '{name}', which no earlier node writes (the nodes must be in topological order).");
            return name;
        }

        /// <summary>Input <paramref name="index"/> of <paramref name="node"/> as a constant, or null when absent and <paramref name="optional"/>.</summary>
        private Constant? Const(NodeProto node, int index, bool optional = false)
        {
            if (index >= node.Input.Count || node.Input[index] == "")
                return optional ? null : throw Unsupported(node, $"it has no input {index}");
            string name = Resolve(node.Input[index]);
            return _constants.TryGetValue(name, out var c) ? c
                : throw Unsupported(node, $"its input {index} '{name}' is computed; the importer needs a constant (initializer) there");
        }

        /// <summary>Adds an item for <paramref name="node"/>; checks the shapes by asking the layer (or merge) for its output shape.</summary>
        private Item Add(NodeProto node, int index, GraphNodeKind kind, Layer? layer, string[] inputs, string? output = null)
        {
            string name = UniqueName(string.IsNullOrEmpty(node.Name) ? $"{node.OpType}_{index}" : node.Name);
            if (layer is not null) layer.Name = name;
            output ??= node.Output[0];
            var ins = inputs.Select(i => _shapes[i]).ToArray();
            try
            {
                _shapes[output] = kind switch
                {
                    GraphNodeKind.Layer => layer!.OutputShape(ins[0]),
                    GraphNodeKind.Add => ins.All(s => s == ins[0]) ? ins[0] : throw new ArgumentException($"its inputs have shapes {string.Join(" and ", ins.Select(s => s.ToString()))}; the importer adds values of equal shape only (no broadcasting)."),
                    _ => ConcatShape(ins),
                };
            }
            catch (ArgumentException e)
            {
                throw new NotSupportedException($"ONNX node '{node.Name}' ({node.OpType}) cannot take input {string.Join(" and ", ins.Select(s => "[N, " + string.Join(", ", s.AsSpan()[1..].ToArray()) + "]"))}: {e.Message}", e);
            }
            var item = new Item(name, kind, layer, inputs, output);
            _items.Add(item);
            return item;
        }

        private static Shape ConcatShape(Shape[] ins)
        {
            var first = ins[0];
            foreach (var s in ins)
                if (s.Rank != first.Rank || !s.AsSpan()[2..].SequenceEqual(first.AsSpan()[2..]))
                    throw new ArgumentException($"Concat on dimension 1 needs inputs equal in every other dimension; got {string.Join(", ", ins.Select(x => x.ToString()))}.");
            var dims = first.ToArray();
            dims[1] = ins.Sum(s => s[1]);
            return new Shape(dims);
        }

        private string UniqueName(string wanted)
        {
            string name = wanted.Replace(',', '_');
            if (name == Graph.InputName) name += "_";
            for (int k = 1; !_names.Add(name); k++) name = $"{wanted}_{k}";
            return name;
        }

        /// <summary>
        /// The items as a sequence: a "cut" is a value after which nothing earlier is read again. Between two cuts, one
        /// layer reading the previous cut is a top-level layer; anything else (branches and their merge) is a Graph block.
        /// </summary>
        private List<Layer> Sequence(string input, string output)
        {
            var uses = new Dictionary<string, int>(StringComparer.Ordinal) { [output] = 1 };
            foreach (var item in _items)
                foreach (var v in item.Inputs) uses[v] = uses.GetValueOrDefault(v) + 1;
            foreach (var item in _items)
                if (!uses.ContainsKey(item.Output))
                    throw new NotSupportedException($"ONNX node '{item.Name}': its output '{item.Output}' is used by no node and is not the model's output; the importer takes a model with one output.");
            var producer = _items.ToDictionary(i => i.Output, i => i.Name, StringComparer.Ordinal);
            var live = new HashSet<string>(StringComparer.Ordinal) { input };
            var layers = new List<Layer>();
            string cut = input;
            int start = 0, blocks = 0;
            for (int k = 0; k < _items.Count; k++)
            {
                var item = _items[k];
                foreach (var v in item.Inputs)
                    if (--uses[v] == 0) live.Remove(v);
                live.Add(item.Output);
                if (live.Count != 1) continue;
                var segment = _items.GetRange(start, k + 1 - start);
                if (segment.Count == 1 && item.Layer is not null && item.Inputs[0] == cut) layers.Add(item.Layer);
                else
                {
                    var nodes = segment.Select(i =>
                    {
                        var ins = i.Inputs.Select(v => v == cut ? Graph.InputName : producer[v]).ToArray();
                        return i.Kind switch
                        {
                            GraphNodeKind.Layer => GraphNode.Of(i.Layer!, ins[0]),
                            GraphNodeKind.Add => GraphNode.Add(i.Name, ins),
                            _ => GraphNode.Concat(i.Name, ins),
                        };
                    });
                    layers.Add(new Graph(nodes) { Name = UniqueName(BlockName(segment, ++blocks)) });
                }
                cut = item.Output;
                start = k + 1;
            }
            if (cut != output) throw new NotSupportedException($"OnnxImporter: the model's output '{output}' is not the last value its nodes compute.");
            return layers;
        }

        /// <summary>The longest "/a/b" path prefix the segment's node names share (PyTorch names nodes "/layer1/layer1.0/conv1/Conv"), else "block{k}".</summary>
        private static string BlockName(List<Item> segment, int k)
        {
            string prefix = segment.Select(i => i.Name).Aggregate((a, b) => a[..a.Zip(b).TakeWhile(p => p.First == p.Second).Count()]);
            int slash = prefix.LastIndexOf('/');
            prefix = slash > 0 ? prefix[..slash] : "";
            return prefix.Length > 0 ? prefix : $"block{k}";
        }

        /// <summary>Copies each item's constants into its built layer's parameters, then buffers, checking shapes.</summary>
        private void LoadWeights()
        {
            foreach (var item in _items)
            {
                if (item.Layer is null) continue;
                var targets = item.Layer.Parameters.Select(p => p.Value).Concat(item.Layer.Buffers.Select(b => b.Value)).ToArray();
                if (targets.Length != item.Weights.Count)
                    throw new InvalidOperationException($"OnnxImporter: layer '{item.Name}' has {targets.Length} tensors but {item.Weights.Count} constants were read for it.");
                for (int i = 0; i < targets.Length; i++)
                {
                    var (source, c) = item.Weights[i];
                    if (c.Length != targets[i].Length)
                        throw new NotSupportedException($"ONNX node '{item.Name}': constant '{source}' has shape [{string.Join(", ", c.Dims)}] ({c.Length} values) but the layer, built for its input, needs {targets[i].Shape}.");
                    targets[i].CopyFromHost(c.Values);
                }
            }
        }

        /// <summary>A float or int64 tensor's values; other types, and data stored outside the file, are errors.</summary>
        private static Constant ReadTensor(TensorProto t, string what)
        {
            if (t.DataLocation == TensorProto.Types.DataLocation.External)
                throw new NotSupportedException($"OnnxImporter: {what} is stored in an external file; save the model with its weights inside (onnx.save(model, path, save_as_external_data=False)).");
            int[] dims = t.Dims.Select(d => checked((int)d)).ToArray();
            long count = dims.Aggregate(1L, (a, d) => a * d);
            switch ((DataType)t.DataType)
            {
                case DataType.Float:
                {
                    float[] v = t.RawData.Length > 0 ? FromRaw<float>(t.RawData, what) : t.FloatData.ToArray();
                    if (v.Length != count) throw new InvalidDataException($"{what} has dimensions [{string.Join(", ", dims)}] but {v.Length} values.");
                    return new Constant(dims, v, null);
                }
                case DataType.Int64:
                {
                    long[] v = t.RawData.Length > 0 ? FromRaw<long>(t.RawData, what) : t.Int64Data.ToArray();
                    if (v.Length != count) throw new InvalidDataException($"{what} has dimensions [{string.Join(", ", dims)}] but {v.Length} values.");
                    return new Constant(dims, v.Select(x => (float)x).ToArray(), v);
                }
                default:
                    throw new NotSupportedException($"OnnxImporter: {what} holds {(DataType)t.DataType} values; the importer reads float and int64 constants.");
            }
        }

        /// <summary>Little-endian raw_data as <typeparamref name="T"/> values.</summary>
        private static T[] FromRaw<T>(ByteString raw, string what) where T : struct
        {
            if (!BitConverter.IsLittleEndian) throw new NotSupportedException("OnnxImporter: raw_data is little-endian; this host is big-endian.");
            int size = Marshal.SizeOf<T>();
            if (raw.Length % size != 0) throw new InvalidDataException($"{what}: raw_data holds {raw.Length} bytes, not a whole number of {typeof(T).Name} values.");
            return MemoryMarshal.Cast<byte, T>(raw.Span).ToArray();
        }

        private static NotSupportedException Unsupported(NodeProto node, string why) =>
            new($"ONNX node '{node.Name}' (op {node.OpType}) is not supported: {why}. Supported ops: {string.Join(", ", SupportedOps)} (docs/onnx-import.md).");
    }
}
