using MLNet.ConvNet.Backends;
using MLNet.ConvNet.Onnx;
using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Layers;

/// <summary>What a <see cref="GraphNode"/> computes.</summary>
public enum GraphNodeKind
{
    /// <summary>Its layer applied to its one input.</summary>
    Layer,
    /// <summary>The element-wise sum of its inputs (all the same shape): a residual connection.</summary>
    Add,
    /// <summary>Its inputs joined along dimension 1 (channels; features for <c>[N, F]</c>), in input order.</summary>
    Concat,
}

/// <summary>
/// One node of a <see cref="Graph"/>: a layer or a merge (<see cref="GraphNodeKind.Add"/>, <see cref="GraphNodeKind.Concat"/>),
/// reading the values named in <see cref="Inputs"/>: <see cref="Graph.InputName"/> (the block's input) or an earlier node's name.
/// </summary>
public sealed class GraphNode
{
    private GraphNode(string name, GraphNodeKind kind, Layer? layer, string[] inputs)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        if (name.Contains(',') || name == Graph.InputName)
            throw new ArgumentException($"Graph node name '{name}' must not contain ',' nor be '{Graph.InputName}'.", nameof(name));
        if (inputs.Length == 0 || inputs.Any(string.IsNullOrEmpty))
            throw new ArgumentException($"Graph node '{name}': give its input names.", nameof(inputs));
        if (kind != GraphNodeKind.Layer && inputs.Length < 2)
            throw new ArgumentException($"Graph node '{name}' ({kind}) merges values: give at least two inputs.", nameof(inputs));
        Name = name; Kind = kind; Layer = layer; Inputs = inputs;
    }

    /// <summary>The node's name: its layer's name, or the merge's.</summary>
    public string Name { get; }
    /// <summary>What the node computes.</summary>
    public GraphNodeKind Kind { get; }
    /// <summary>The layer of a <see cref="GraphNodeKind.Layer"/> node; null for a merge.</summary>
    public Layer? Layer { get; }
    /// <summary>The values the node reads, in order.</summary>
    public IReadOnlyList<string> Inputs { get; }

    /// <summary>A node applying <paramref name="layer"/> (which must have a <see cref="Layer.Name"/>) to value <paramref name="input"/>.</summary>
    public static GraphNode Of(Layer layer, string input)
    {
        ArgumentNullException.ThrowIfNull(layer);
        if (string.IsNullOrWhiteSpace(layer.Name)) throw new ArgumentException("A layer in a Graph needs a Name (it names the node).", nameof(layer));
        return new(layer.Name, GraphNodeKind.Layer, layer, [input]);
    }

    /// <summary>A node named <paramref name="name"/> summing <paramref name="inputs"/>.</summary>
    public static GraphNode Add(string name, params string[] inputs) => new(name, GraphNodeKind.Add, null, inputs);

    /// <summary>A node named <paramref name="name"/> joining <paramref name="inputs"/> along the channels.</summary>
    public static GraphNode Concat(string name, params string[] inputs) => new(name, GraphNodeKind.Concat, null, inputs);
}

/// <summary>
/// A block of layers wired as a directed acyclic graph, with one input and one output (the last node's value): residual
/// connections (<see cref="GraphNodeKind.Add"/>) and channel concatenations (<see cref="GraphNodeKind.Concat"/>) in a
/// network that is otherwise a sequence. The ONNX importer puts each non-sequential part of a model in one of these.
/// </summary>
/// <remarks>
/// <para>Forward runs the nodes in the order given (each reads only the block input and earlier nodes). Backward runs them
/// in reverse, summing the gradients of a value read by several nodes.</para>
/// <para>Concat has no kernel of its own: each input is placed into its channel range by a 1x1 convolution with a fixed
/// 0/1 selection filter, so it runs on every backend with existing kernels. Its cost is that of a 1x1 convolution with
/// (input channels x output channels) weights, and a NaN or infinity in one input spreads to the whole output (0 x NaN).</para>
/// </remarks>
public sealed class Graph : Layer
{
    /// <summary>The name by which a node reads the block's input: "input".</summary>
    public const string InputName = "input";

    private readonly GraphNode[] _nodes;
    private readonly int[][] _sources;                     // per node, per input: -1 for the block input, else the node index
    private readonly Layer[] _layers;
    private Shape[] _shapes = [];                          // per node, its output shape for the built input (batch 1)
    private Tensor[]?[] _selections = [];                  // per Concat node, per input: the 0/1 filter [Cout, Ci, 1]
    private readonly TensorSlot[] _out, _gradSum;
    private readonly TensorSlot[][] _partOut, _partGrad;   // per node, per input: Concat's partial output, its input gradient
    private readonly TensorSlot _inputGradSum = new();
    private Shape? _forwardInput;

    /// <summary>A block of <paramref name="nodes"/>; the last node's value is the block's output.</summary>
    public Graph(IEnumerable<GraphNode> nodes)
    {
        ArgumentNullException.ThrowIfNull(nodes);
        _nodes = nodes.ToArray();
        if (_nodes.Length == 0) throw new ArgumentException("A Graph needs at least one node.", nameof(nodes));
        var index = new Dictionary<string, int>(StringComparer.Ordinal);
        _sources = new int[_nodes.Length][];
        for (int i = 0; i < _nodes.Length; i++)
        {
            var n = _nodes[i] ?? throw new ArgumentNullException(nameof(nodes), $"Graph node {i} is null.");
            _sources[i] = n.Inputs.Select(name => name == InputName ? -1 : index.TryGetValue(name, out int k) ? k
                : throw new ArgumentException($"Graph node '{n.Name}' reads '{name}', which is neither '{InputName}' nor an earlier node.", nameof(nodes))).ToArray();
            if (!index.TryAdd(n.Name, i)) throw new ArgumentException($"Two Graph nodes are named '{n.Name}'.", nameof(nodes));
        }
        var read = _sources.SelectMany(s => s).ToHashSet();
        if (!read.Contains(-1)) throw new ArgumentException($"No Graph node reads '{InputName}'.", nameof(nodes));
        for (int i = 0; i < _nodes.Length - 1; i++)
            if (!read.Contains(i)) throw new ArgumentException($"Graph node '{_nodes[i].Name}' is read by no later node; only the last node may be the output.", nameof(nodes));
        _layers = _nodes.Where(n => n.Layer is not null).Select(n => n.Layer!).ToArray();
        if (_layers.Distinct().Count() != _layers.Length) throw new ArgumentException("The same layer object appears twice in a Graph.", nameof(nodes));
        _out = _nodes.Select(_ => new TensorSlot()).ToArray();
        _gradSum = _nodes.Select(_ => new TensorSlot()).ToArray();
        _partOut = _nodes.Select(n => n.Inputs.Select(_ => new TensorSlot()).ToArray()).ToArray();
        _partGrad = _nodes.Select(n => n.Inputs.Select(_ => new TensorSlot()).ToArray()).ToArray();
    }

    /// <summary>The nodes, in execution order.</summary>
    public IReadOnlyList<GraphNode> Nodes => _nodes;

    public override IReadOnlyList<Layer> Children => _layers;
    public override IReadOnlyList<Parameter> Parameters => _layers.SelectMany(c => c.Parameters).ToArray();
    public override IReadOnlyList<Buffer> Buffers => _layers.SelectMany(c => c.Buffers).ToArray();
    internal override bool UsesRelu => _layers.Any(l => l.UsesRelu);
    protected internal override string NameStem => "graph";
    public override long MultiplyAddsPerSample => 0;

    /// <summary>
    /// "nodes" = the count, then per node i: "i.name", "i.kind" (Layer, Add, Concat), "i.inputs" (comma-separated) and, for
    /// a layer, "i.layer" (its kind) and its own values as "i:key". Null when a layer has no spec.
    /// </summary>
    public override LayerSpec? Spec
    {
        get
        {
            var values = new List<KeyValuePair<string, string>> { new("nodes", _nodes.Length.ToString(System.Globalization.CultureInfo.InvariantCulture)) };
            for (int i = 0; i < _nodes.Length; i++)
            {
                var n = _nodes[i];
                values.Add(new($"{i}.name", n.Name));
                values.Add(new($"{i}.kind", n.Kind.ToString()));
                values.Add(new($"{i}.inputs", string.Join(",", n.Inputs)));
                if (n.Layer is null) continue;
                if (n.Layer.Spec is not { } spec) return null;
                values.Add(new($"{i}.layer", spec.Kind));
                values.AddRange(spec.Values.Select(v => KeyValuePair.Create($"{i}:{v.Key}", v.Value)));
            }
            return new LayerSpec("Graph", values);
        }
    }

    internal static Graph Parse(LayerSpec s)
    {
        int count = s.GetInt("nodes");
        var nodes = new GraphNode[count];
        for (int i = 0; i < count; i++)
        {
            string name = s.Get($"{i}.name");
            string[] inputs = s.Get($"{i}.inputs").Split(',');
            nodes[i] = s.GetEnum<GraphNodeKind>($"{i}.kind") switch
            {
                GraphNodeKind.Add => GraphNode.Add(name, inputs),
                GraphNodeKind.Concat => GraphNode.Concat(name, inputs),
                _ => GraphNode.Of(LayerOf(s, i, name), inputs.Single()),
            };
        }
        return new Graph(nodes);
    }

    /// <summary>Node <paramref name="i"/>'s layer from its "i.*" values.</summary>
    private static Layer LayerOf(LayerSpec s, int i, string name)
    {
        string prefix = $"{i}:";
        var own = s.Values.Where(v => v.Key.StartsWith(prefix, StringComparison.Ordinal)).Select(v => KeyValuePair.Create(v.Key[prefix.Length..], v.Value));
        var layer = FromSpec(new LayerSpec(s.Get($"{i}.layer"), own));
        layer.Name = name;
        return layer;
    }

    /// <summary>Unbuilt copies of the nodes' layers, wired the same way.</summary>
    public override Layer Clone() => new Graph(_nodes.Select(n => n.Kind switch
    {
        GraphNodeKind.Layer => GraphNode.Of(n.Layer!.Clone(), n.Inputs[0]),
        GraphNodeKind.Add => GraphNode.Add(n.Name, [.. n.Inputs]),
        _ => GraphNode.Concat(n.Name, [.. n.Inputs]),
    })) { Name = Name };

    /// <summary>Each node's own export: a layer's nodes, an ONNX Add, or an ONNX Concat on axis 1.</summary>
    public override string ExportOnnx(OnnxGraphBuilder builder, string x)
    {
        var values = new string[_nodes.Length];
        string Value(int source) => source < 0 ? x : values[source];
        for (int i = 0; i < _nodes.Length; i++)
        {
            var n = _nodes[i];
            var inputs = _sources[i].Select(Value).ToArray();
            values[i] = n.Kind switch
            {
                GraphNodeKind.Layer => n.Layer!.ExportOnnx(builder, inputs[0]),
                GraphNodeKind.Add => inputs.Skip(1).Aggregate(inputs[0], builder.Add),
                _ => builder.Concat(inputs, axis: 1),
            };
        }
        return values[^1];
    }

    public override Shape OutputShape(Shape input) => Shapes(input)[^1];

    /// <summary>Every node's output shape for <paramref name="input"/>; throws naming the node that does not fit.</summary>
    private Shape[] Shapes(Shape input)
    {
        var shapes = new Shape[_nodes.Length];
        Shape Of(int source) => source < 0 ? input : shapes[source];
        for (int i = 0; i < _nodes.Length; i++)
        {
            var n = _nodes[i];
            var ins = _sources[i].Select(Of).ToArray();
            try
            {
                shapes[i] = n.Kind switch
                {
                    GraphNodeKind.Layer => n.Layer!.OutputShape(ins[0]),
                    GraphNodeKind.Add => ins.All(s => s == ins[0]) ? ins[0]
                        : throw new ArgumentException($"Add of differently shaped values {string.Join(", ", ins.Select(s => s.ToString()))}."),
                    _ => ConcatShape(ins),
                };
            }
            catch (ArgumentException e)
            {
                throw new ArgumentException($"Graph '{Name}': node '{n.Name}' ({n.Kind}) cannot take input {string.Join(" and ", ins.Select(s => s.ToString()))}: {e.Message}", "x", e);
            }
        }
        return shapes;
    }

    private static Shape ConcatShape(Shape[] ins)
    {
        var first = ins[0];
        foreach (var s in ins)
            if (s.Rank != first.Rank || s.Rank < 2 || s[0] != first[0] || !s.AsSpan()[2..].SequenceEqual(first.AsSpan()[2..]))
                throw new ArgumentException($"Concat needs values [N, C, ...] equal in every dimension but the channels; got {string.Join(", ", ins.Select(x => x.ToString()))}.");
        var dims = first.ToArray();
        dims[1] = ins.Sum(s => s[1]);
        return new Shape(dims);
    }

    protected override void OnBuild(Shape input, IBackend backend)
    {
        _shapes = Shapes(input);
        Shape Of(int source) => source < 0 ? input : _shapes[source];
        _selections = new Tensor[]?[_nodes.Length];
        for (int i = 0; i < _nodes.Length; i++)
        {
            var n = _nodes[i];
            if (n.Kind == GraphNodeKind.Layer) n.Layer!.Build(Of(_sources[i][0]), backend);
            else if (n.Kind == GraphNodeKind.Concat)
            {
                // Input j's channel c goes to output channel offset_j + c: a [Cout, Cj, 1] filter with ones there.
                int cout = _shapes[i][1], offset = 0;
                _selections[i] = _sources[i].Select(source =>
                {
                    int cj = Of(source)[1];
                    var w = new float[cout * cj];
                    for (int c = 0; c < cj; c++) w[(offset + c) * cj + c] = 1f;
                    offset += cj;
                    var t = backend.Allocate(new Shape(cout, cj, 1));
                    t.CopyFromHost(w);
                    return t;
                }).ToArray();
            }
        }
    }

    /// <summary><paramref name="t"/> [N, C, ...] viewed as [N, C, rest] for the 1-D selection convolution.</summary>
    private static Tensor AsChannels(Tensor t) => t.Reshape(t.Shape[0], t.Shape[1], t.Shape.SizeFrom(2));

    private static ConvGeometry SelectionGeometry(Tensor x, Tensor w) =>
        ConvGeometry.Create(x.Shape, w.Shape, Conv.DefaultOptions, "Concat");

    private static Shape Batch(Shape sample, int n) { var d = sample.ToArray(); d[0] = n; return new Shape(d); }

    public override Tensor Forward(Tensor x, bool training)
    {
        CheckInput(x);
        var values = new Tensor[_nodes.Length];
        Tensor Value(int source) => source < 0 ? x : values[source];
        int batch = x.Shape[0];
        for (int i = 0; i < _nodes.Length; i++)
        {
            var n = _nodes[i];
            var src = _sources[i];
            switch (n.Kind)
            {
                case GraphNodeKind.Layer:
                    values[i] = n.Layer!.Forward(Value(src[0]), training);
                    break;
                case GraphNodeKind.Add:
                {
                    var y = Output(_out[i], Value(src[0]).Shape);
                    x.Backend.Add(Value(src[0]), Value(src[1]), y);
                    for (int j = 2; j < src.Length; j++) x.Backend.AddScaled(Value(src[j]), 1f, y);
                    values[i] = y;
                    break;
                }
                default:
                {
                    var shape = Batch(_shapes[i], batch);
                    var y = AsChannels(Output(_out[i], shape));
                    for (int j = 0; j < src.Length; j++)
                    {
                        var xj = AsChannels(Value(src[j]));
                        var w = _selections[i]![j];
                        var target = j == 0 ? y : Output(_partOut[i][j], y.Shape);
                        Convolution.Forward(SelectionGeometry(xj, w), xj, w, null, target);
                        if (j > 0) x.Backend.AddScaled(target, 1f, y);
                    }
                    values[i] = y.Reshape(shape);
                    break;
                }
            }
        }
        _forwardInput = x.Shape;
        return values[^1];
    }

    public override Tensor Backward(Tensor dy)
    {
        ArgumentNullException.ThrowIfNull(dy);
        var inputShape = _forwardInput ?? throw new InvalidOperationException($"{Describe()}: Backward needs a training-mode Forward first.");
        var grads = new Tensor?[_nodes.Length];
        var counts = new int[_nodes.Length];
        Tensor? inputGrad = null;
        int inputCount = 0;
        grads[^1] = dy;
        // Adds gradient g to value `source`: the first is kept as is, the second summed into the value's own tensor.
        void Accumulate(int source, Tensor g)
        {
            ref Tensor? slot = ref source < 0 ? ref inputGrad : ref grads[source];
            ref int count = ref source < 0 ? ref inputCount : ref counts[source];
            var sum = source < 0 ? _inputGradSum : _gradSum[source];
            if (count == 0) slot = g;
            else if (count == 1)
            {
                var s = Output(sum, g.Shape);
                g.Backend.Add(slot!, g, s);
                slot = s;
            }
            else g.Backend.AddScaled(g, 1f, slot!);
            count++;
        }
        for (int i = _nodes.Length - 1; i >= 0; i--)
        {
            var n = _nodes[i];
            var src = _sources[i];
            var g = grads[i] ?? throw new InvalidOperationException($"{Describe()}: node '{n.Name}' got no gradient.");
            switch (n.Kind)
            {
                case GraphNodeKind.Layer:
                    Accumulate(src[0], n.Layer!.Backward(g));
                    break;
                case GraphNodeKind.Add:
                    foreach (int s in src) Accumulate(s, g);
                    break;
                default:
                {
                    var gy = AsChannels(g);
                    for (int j = 0; j < src.Length; j++)
                    {
                        var w = _selections[i]![j];
                        var inShape = src[j] < 0 ? inputShape : Batch(_shapes[src[j]], g.Shape[0]);
                        var dxj = Output(_partGrad[i][j], new Shape(inShape[0], inShape[1], inShape.SizeFrom(2)));
                        Convolution.BackwardData(SelectionGeometry(dxj, w), w, gy, dxj);
                        Accumulate(src[j], dxj.Reshape(inShape));
                    }
                    break;
                }
            }
        }
        return inputGrad!;
    }
}
