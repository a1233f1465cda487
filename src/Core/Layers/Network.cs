using System.Security.Cryptography;
using System.Text;
using MLNet.ConvNet.Backends;
using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Layers;

/// <summary>
/// A sequential network: layers applied in order. <see cref="Build"/> takes the shape of one sample
/// (<c>[C, H, W]</c>, no batch dimension), checks every layer's shape, allocates and initialises the parameters.
/// </summary>
/// <example>
/// <code>
/// var net = new Network(new Conv(6, 5, Conv.DefaultOptions with { Padding = 2 }), Activation.Relu(), new Pool(),
///                       new Flatten(), new Dense(10)).Build(new Shape(1, 28, 28), seed: 42);
/// var logits = net.Forward(x, training: true);     // x: [N, 1, 28, 28] -> [N, 10]
/// var dx = net.Backward(dlogits);                  // fills every Parameter.Gradient
/// </code>
/// </example>
public sealed class Network
{
    private readonly Layer[] _layers;
    private Parameter[] _parameters = [];
    private Buffer[] _buffers = [];
    private int _firstWeighted = -1;                       // the first layer with parameters (set by Build)
    private int _firstTrained = -1;                        // the first unfrozen layer with parameters
    private int _frozen;
    private bool _reuseBuffers;
    private readonly InferenceBuffers _inferenceBuffers = new();

    /// <summary>A network of <paramref name="layers"/> whose tensors live on <paramref name="backend"/> (<see cref="DefaultBackend"/>, the CPU, when null: a convenience for samples and tests; the ML.NET components always pass the backend they were configured with).</summary>
    public Network(IEnumerable<Layer> layers, IBackend? backend = null)
    {
        ArgumentNullException.ThrowIfNull(layers);
        _layers = layers.ToArray();
        if (_layers.Length == 0) throw new ArgumentException("A network needs at least one layer.", nameof(layers));
        for (int i = 0; i < _layers.Length; i++)
            if (_layers[i] is null) throw new ArgumentNullException(nameof(layers), $"Layer {i} is null.");
        if (_layers.Distinct().Count() != _layers.Length)
            throw new ArgumentException("The same layer object appears twice; each layer holds its own weights and cache, so create one per position.", nameof(layers));
        Backend = backend ?? DefaultBackend.Instance;
        NameLayers();
    }

    /// <summary>A network of <paramref name="layers"/> on <see cref="DefaultBackend"/> (the CPU).</summary>
    public Network(params Layer[] layers) : this((IEnumerable<Layer>)layers) { }

    /// <summary>The layers, in order.</summary>
    public IReadOnlyList<Layer> Layers => _layers;

    /// <summary>The backend every tensor of the network lives on.</summary>
    public IBackend Backend { get; }

    /// <summary>The shape of one input sample (no batch dimension); null before <see cref="Build"/>.</summary>
    public Shape? InputShape { get; private set; }

    /// <summary>The shape of one output sample (<c>[classes]</c> for a classifier); null before <see cref="Build"/>.</summary>
    public Shape? OutputShape { get; private set; }

    /// <summary>Every trained parameter, named "layer.name" ("conv1.weight", "res2.conv1.weight"), in layer order.</summary>
    public IReadOnlyList<Parameter> Parameters => _parameters;

    /// <summary>Every non-trained state tensor (batch norm's running statistics), named like the parameters.</summary>
    public IReadOnlyList<Buffer> Buffers => _buffers;

    /// <summary>
    /// False (default): <see cref="Forward"/> and <see cref="Backward"/> return new tensors the caller may keep. True: every
    /// layer writes into tensors it keeps and reuses while the batch shape stays the same, so a warm training step
    /// allocates nothing; a returned tensor then belongs to the network and is overwritten by the next call. The
    /// <see cref="Training.Trainer"/> turns it on for the length of Fit and Evaluate and restores it after.
    /// See <see cref="Layer.ReuseBuffers"/>.
    /// </summary>
    public bool ReuseBuffers
    {
        get => _reuseBuffers;
        set { _reuseBuffers = value; foreach (var l in _layers) l.ReuseBuffers = value; }
    }

    /// <summary>
    /// FrozenLayerCount = 0: the first K top-level layers are frozen (transfer learning): they run in inference mode even
    /// in a training pass (batch norm uses and keeps its running statistics, dropout is off), <see cref="BackwardParameters"/>
    /// stops before them, and <see cref="TrainableParameters"/> leaves their parameters out, so an optimizer over those
    /// never changes them. <see cref="Backward"/> (the input gradient) is refused while any layer is frozen.
    /// </summary>
    public int FrozenLayerCount
    {
        get => _frozen;
        set
        {
            if (value < 0 || value > _layers.Length)
                throw new ArgumentOutOfRangeException(nameof(value), value, $"Network: FrozenLayerCount must be in [0, {_layers.Length}] (the number of layers).");
            _frozen = value;
            _firstTrained = Array.FindIndex(_layers, value, l => l.Parameters.Count > 0);
        }
    }

    /// <summary>The parameters of the layers after the first <see cref="FrozenLayerCount"/>: what an optimizer should update.</summary>
    public IReadOnlyList<Parameter> TrainableParameters
    {
        get
        {
            if (_frozen == 0) return _parameters;
            var frozen = _layers.Take(_frozen).SelectMany(l => l.Parameters).ToHashSet();
            return _parameters.Where(p => !frozen.Contains(p)).ToArray();
        }
    }

    /// <summary>The number of trained values (61,706 for <see cref="Presets.LeNet5"/>).</summary>
    public long ParameterCount => _parameters.Sum(p => (long)p.Value.Length);

    /// <summary>Every layer including those inside composite layers, depth first.</summary>
    public IEnumerable<Layer> AllLayers() => _layers.SelectMany(Descendants);

    private static IEnumerable<Layer> Descendants(Layer l) => l.Children.Count == 0 ? [l] : [l, .. l.Children.SelectMany(Descendants)];

    /// <summary>
    /// Checks every layer's shape for samples of <paramref name="sampleShape"/> (e.g. <c>[1, 28, 28]</c>), allocates the
    /// parameters and initialises them from <paramref name="seed"/>. A layer that does not fit (a spatial size shrinking
    /// below 1, a channel mismatch) throws <see cref="ArgumentException"/> naming the layer's index, name and input shape.
    /// </summary>
    public Network Build(Shape sampleShape, ulong seed = 0, WeightInit init = WeightInit.Auto)
    {
        if (InputShape is not null) throw new InvalidOperationException($"The network is already built for samples {InputShape}.");
        var shape = new Shape([1, .. sampleShape.AsSpan()]);
        // Check every shape first, so a failure leaves no layer half built.
        var shapes = new Shape[_layers.Length + 1];
        shapes[0] = shape;
        for (int i = 0; i < _layers.Length; i++)
        {
            try { shapes[i + 1] = _layers[i].OutputShape(shapes[i]); }
            catch (ArgumentException e)
            {
                throw new ArgumentException($"Network: layer {i} '{_layers[i].Name}' ({_layers[i].GetType().Name}) cannot take input {Format(shapes[i])} (sample {sampleShape}): {e.Message}", nameof(sampleShape), e);
            }
        }
        for (int i = 0; i < _layers.Length; i++) _layers[i].Build(shapes[i], Backend);
        InputShape = sampleShape;
        OutputShape = new Shape(shapes[^1].AsSpan()[1..].ToArray());
        CollectState();
        _firstWeighted = Array.FindIndex(_layers, l => l.Parameters.Count > 0);
        FrozenLayerCount = _frozen;
        Initialize(seed, init);
        return this;
    }

    /// <summary>
    /// Redraws every parameter from <paramref name="seed"/> (weights He or Glorot, biases 0, batch-norm scales 1),
    /// resets running statistics and dropout steps. <see cref="WeightInit.Auto"/> picks He when any layer is a
    /// ReLU-family activation or a residual block, Glorot otherwise.
    /// </summary>
    public void Initialize(ulong seed, WeightInit init = WeightInit.Auto)
    {
        RequireBuilt();
        if (init == WeightInit.Auto) init = AllLayers().Any(l => l.UsesRelu) ? WeightInit.He : WeightInit.Glorot;
        var rng = new Rng(seed);
        foreach (var l in _layers) l.Initialize(rng, init);
    }

    /// <summary>Runs the layers in order on <paramref name="x"/> <c>[N, sample...]</c>.</summary>
    public Tensor Forward(Tensor x, bool training)
    {
        RequireBuilt();
        ArgumentNullException.ThrowIfNull(x);
        if (x.Rank != InputShape!.Value.Rank + 1 || !x.Shape.AsSpan()[1..].SequenceEqual(InputShape.Value.AsSpan()))
            throw new ArgumentException($"Network: input {x.Shape} does not match the built sample shape {InputShape} (expected [N, {string.Join(", ", InputShape.Value.ToArray())}]).", nameof(x));
        if (!ReferenceEquals(x.Backend, Backend))
            throw new ArgumentException($"Network: input lives on '{x.Backend.Name}' but the network on '{Backend.Name}'; copy it explicitly.", nameof(x));
        for (int i = 0; i < _layers.Length;) i += ForwardAt(i, ref x, training);
        return x;
    }

    /// <summary>
    /// One step of <see cref="Forward"/>: layer <paramref name="i"/> alone, or the fused group starting there
    /// (<see cref="FusionAt"/>), on <paramref name="x"/>, which becomes the step's output. Returns how many layers ran.
    /// Profilers call this to time the steps a pass takes.
    /// </summary>
    internal int ForwardAt(int i, ref Tensor x, bool training)
    {
        // A layer trains unless frozen; a group runs as one backend call (the same values, fewer passes over memory),
        // never across the frozen boundary.
        bool trains = training && i >= _frozen;
        var fusion = FusionAt(_layers, i, trains);
        if (training && i < _frozen && i + Span(fusion) > _frozen) fusion = Fusion.None;
        var runs = fusion == Fusion.ReluMaxPool ? _layers[i + 1] : _layers[i];
        // Inference with reuse on: nothing is differentiated, so a layer's output is dead once the next layer has
        // read it, and the simple layers share two buffers (InferenceBuffers) instead of keeping one output each.
        if (!training && _reuseBuffers) runs.SharedOutputs = runs.Children.Count == 0 ? _inferenceBuffers : null;
        try
        {
            x = fusion switch
            {
                Fusion.BatchNormRelu => ((BatchNorm)_layers[i]).ForwardTrainingRelu(x, (Activation)_layers[i + 1]),
                Fusion.ReluMaxPool => ((Pool)runs).ForwardRelu(x, (Activation)_layers[i], trains),
                _ => _layers[i].Forward(x, trains),
            };
        }
        finally { runs.SharedOutputs = null; }
        return Span(fusion);
    }

    /// <summary>Adjacent layers that a forward pass runs as one backend call.</summary>
    internal enum Fusion
    {
        /// <summary>Layer i alone.</summary>
        None,
        /// <summary>A training BatchNorm and the ReLU after it (<see cref="BatchNorm.ForwardTrainingRelu"/>).</summary>
        BatchNormRelu,
        /// <summary>A ReLU and the max Pool after it, in any pass (<see cref="Pool.ForwardRelu"/>).</summary>
        ReluMaxPool,
    }

    /// <summary>How many layers a fused group covers.</summary>
    internal static int Span(Fusion fusion) => fusion == Fusion.None ? 1 : 2;

    /// <summary>
    /// How a pass runs layer <paramref name="i"/> with the next ones, when layer i <paramref name="trains"/> or not: the
    /// rule <see cref="Forward"/> follows. A batch norm that trains takes the ReLU after it; otherwise a ReLU goes into
    /// the max pool after it (the ReLU commutes with a maximum).
    /// </summary>
    internal static Fusion FusionAt(IReadOnlyList<Layer> layers, int i, bool trains) =>
        i + 1 >= layers.Count ? Fusion.None
        : trains && layers[i] is BatchNorm && layers[i + 1] is Activation { Kind: ActivationKind.ReLU } ? Fusion.BatchNormRelu
        : layers[i] is Activation { Kind: ActivationKind.ReLU } && layers[i + 1] is Pool { Options.Mode: PoolingMode.Max } ? Fusion.ReluMaxPool
        : Fusion.None;

    /// <summary>
    /// One step of a backward pass: layer <paramref name="i"/>'s backward, or that of the fused group ending at layer i
    /// when its last training pass ran fused (<paramref name="i"/> then steps back to the group's first layer, the one
    /// that ran it). Profilers call this to time the steps.
    /// </summary>
    internal Tensor? BackwardAt(ref int i, Tensor dy, bool inputGradient)
    {
        if (i > 0 && _layers[i - 1] is BatchNorm { RanWithRelu: true } bn) { i--; return bn.BackwardRelu(dy); }
        if (_layers[i] is Pool { RanWithRelu: true } pool) { i--; return pool.BackwardRelu(dy); }
        return _layers[i].Backward(dy, inputGradient);
    }

    /// <summary>Back-propagates <paramref name="dy"/> (the gradient of the loss with respect to the last output); accumulates every parameter's gradient and returns dx.</summary>
    public Tensor Backward(Tensor dy)
    {
        RequireBuilt();
        ArgumentNullException.ThrowIfNull(dy);
        if (_frozen > 0) throw new InvalidOperationException($"Network: Backward (the input gradient) runs through every layer, but the first {_frozen} are frozen and ran in inference mode; use BackwardParameters.");
        for (int i = _layers.Length - 1; i >= 0; i--) dy = BackwardAt(ref i, dy, inputGradient: true)!;
        return dy;
    }

    /// <summary>
    /// Back-propagates <paramref name="dy"/> for the parameter gradients only: layers before the first one with
    /// parameters (the first unfrozen one, see <see cref="FrozenLayerCount"/>) are skipped and that layer does not compute
    /// its input gradient (what a training step needs).
    /// </summary>
    public void BackwardParameters(Tensor dy)
    {
        RequireBuilt();
        ArgumentNullException.ThrowIfNull(dy);
        int first = _frozen == 0 ? _firstWeighted : _firstTrained;
        if (first < 0) return;
        // A fused group's first layer is never the first with parameters (a ReLU has none; a fused batch norm computes
        // its input gradient anyway), so stepping over it stays at or above first.
        for (int i = _layers.Length - 1; i >= first; i--) dy = BackwardAt(ref i, dy, inputGradient: i > first)!;
    }

    /// <summary>SHA-256 (hex) over every parameter and buffer (names, shapes, float bits): equal hashes mean bit-identical models.</summary>
    public string ComputeHash()
    {
        RequireBuilt();
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var (name, t) in StateTensors())
        {
            sha.AppendData(Encoding.UTF8.GetBytes(name + t.Shape));
            sha.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(t.ToHost().AsSpan()));
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    /// <summary>Parameters then buffers, with their full names: everything a checkpoint stores as tensors.</summary>
    public IEnumerable<(string Name, Tensor Value)> StateTensors() =>
        _parameters.Select(p => (p.Name, p.Value)).Concat(_buffers.Select(b => (b.Name, b.Value)));

    /// <summary>One line per layer: name, type, output shape, parameter count; then the total.</summary>
    public string Summary()
    {
        RequireBuilt();
        var sb = new StringBuilder();
        var shape = new Shape([1, .. InputShape!.Value.AsSpan()]);
        sb.AppendLine($"input {InputShape}");
        foreach (var l in _layers)
        {
            shape = l.OutputShape(shape);
            long n = l.Parameters.Sum(p => (long)p.Value.Length);
            sb.AppendLine($"{l.Name,-10} {l.GetType().Name,-10} -> {Format(shape),-16} {n,10:N0}");
        }
        sb.Append($"parameters {ParameterCount:N0}");
        return sb.ToString();
    }

    private void RequireBuilt()
    {
        if (InputShape is null) throw new InvalidOperationException("The network is not built; call Build(sampleShape) first.");
    }

    private static string Format(Shape batchShape) => "[N, " + string.Join(", ", batchShape.AsSpan()[1..].ToArray()) + "]";

    private void NameLayers()
    {
        var counts = new Dictionary<string, int>();
        foreach (var l in _layers)
        {
            if (l.Name is not null) continue;
            string stem = l.NameStem;
            int k = counts.GetValueOrDefault(stem) + 1;
            while (_layers.Any(o => o.Name == stem + k)) k++;
            counts[stem] = k;
            l.Name = stem + k;
        }
        var dup = _layers.GroupBy(l => l.Name).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null) throw new ArgumentException($"Two layers are named '{dup.Key}'; layer names must be unique (they name the weights in checkpoints).", "layers");
    }

    private void CollectState()
    {
        var ps = new List<Parameter>();
        var bs = new List<Buffer>();
        void Walk(Layer l, string prefix)
        {
            string path = prefix + l.Name;
            if (l.Children.Count > 0) { foreach (var c in l.Children) Walk(c, path + "."); return; }
            foreach (var p in l.Parameters) { p.Name = path + "." + p.LocalName; ps.Add(p); }
            foreach (var b in l.Buffers) { b.Name = path + "." + b.LocalName; bs.Add(b); }
        }
        foreach (var l in _layers) Walk(l, "");
        _parameters = ps.ToArray();
        _buffers = bs.ToArray();
    }
}
