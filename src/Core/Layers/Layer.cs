using MLNet.ConvNet.Backends;
using MLNet.ConvNet.Onnx;

namespace MLNet.ConvNet.Layers;

/// <summary>What a parameter is, which decides how it is initialised.</summary>
public enum ParameterRole
{
    /// <summary>A weight of a convolution or dense layer: He or Glorot from its fan-in and fan-out.</summary>
    Weight,
    /// <summary>An additive bias: zero.</summary>
    Bias,
    /// <summary>A multiplicative scale (batch norm's gamma): one.</summary>
    Scale,
    /// <summary>An additive shift (batch norm's beta): zero.</summary>
    Shift,
}

/// <summary>A trained tensor: its value, the gradient of the loss with respect to it, and a name.</summary>
/// <remarks>Backward passes accumulate into <see cref="Gradient"/>; an optimizer's ZeroGrad clears it.</remarks>
public sealed class Parameter
{
    internal Parameter(string name, Tensor value, ParameterRole role, int fanIn, int fanOut)
    {
        Name = LocalName = name; Value = value; Role = role; FanIn = fanIn; FanOut = fanOut;
        Gradient = value.Backend.Allocate(value.Shape);
    }

    /// <summary>The full name, "conv1.weight", once a network has named its layers; the <see cref="LocalName"/> before.</summary>
    public string Name { get; internal set; }
    /// <summary>The name within its layer: "weight", "bias", "gamma", "beta".</summary>
    public string LocalName { get; }
    /// <summary>The current value.</summary>
    public Tensor Value { get; }
    /// <summary>d(loss)/d(value): backward passes add to it, <see cref="Optimizers.Optimizer.ZeroGrad"/> clears it.</summary>
    /// <remarks>
    /// Just after ZeroGrad a backward pass writes its gradient here directly instead of adding it to zeros (the same
    /// values, one pass over memory fewer), so values written into it between ZeroGrad and Backward are replaced, not kept.
    /// </remarks>
    public Tensor Gradient { get; }

    /// <summary>True while <see cref="Gradient"/> holds zeros put there by ZeroGrad (or at creation): the next backward pass may overwrite it.</summary>
    internal bool GradientIsZero { get; set; } = true;
    /// <summary>How the parameter is initialised.</summary>
    public ParameterRole Role { get; }
    /// <summary>Inputs feeding one output unit (C/groups x kernel volume for a convolution, In for a dense layer).</summary>
    public int FanIn { get; }
    /// <summary>Outputs fed by one input unit (O/groups x kernel volume for a convolution, Out for a dense layer).</summary>
    public int FanOut { get; }

    public override string ToString() => $"{Name} {Value.Shape}";
}

/// <summary>A non-trained tensor that is part of a layer's state (batch norm's running statistics).</summary>
public sealed class Buffer(string localName, Tensor value)
{
    /// <summary>The full name ("bn1.running_mean") once a network has named its layers; the <see cref="LocalName"/> before.</summary>
    public string Name { get; internal set; } = localName;
    /// <summary>The name within its layer.</summary>
    public string LocalName { get; } = localName;
    /// <summary>The state tensor.</summary>
    public Tensor Value { get; } = value;
}

/// <summary>How weights are drawn at initialisation.</summary>
public enum WeightInit
{
    /// <summary>He when the network has a ReLU-family activation (or a residual block), Glorot otherwise.</summary>
    Auto,
    /// <summary>He (Kaiming) normal: N(0, 2 / fanIn), suited to ReLU (He et al. 2015).</summary>
    He,
    /// <summary>Glorot (Xavier) uniform: U(-a, a) with a = sqrt(6 / (fanIn + fanOut)) (Glorot and Bengio 2010).</summary>
    Glorot,
}

/// <summary>
/// A layer: holds its parameters, calls one op family (src/Core/Ops) forward and backward, and caches in
/// <see cref="Forward"/> what <see cref="Backward(Tensor)"/> needs.
/// </summary>
/// <remarks>
/// Life cycle: construct with the layer's own options (output channels, kernel size); <see cref="Build"/>
/// with the input shape allocates the parameters (input channels are inferred); initialise; then
/// Forward and Backward alternately. Layers never touch tensor memory: data moves through ops and the
/// backend's explicit copies.
/// </remarks>
public abstract class Layer
{
    /// <summary>The layer's name ("conv1"); the network assigns one when none is given.</summary>
    public string? Name { get; set; }

    /// <summary>The input shape given to <see cref="Build"/> (with a batch dimension of 1); null before.</summary>
    public Shape? BuiltInput { get; private set; }

    /// <summary>The backend the parameters live on; null before <see cref="Build"/>.</summary>
    public IBackend? Backend { get; private set; }

    private bool _reuseBuffers;

    /// <summary>
    /// False (default): Forward and Backward return new tensors the caller may keep. True: they write into tensors the
    /// layer keeps and reuses while the batch shape stays the same, so a warm training step allocates nothing; a returned
    /// tensor then belongs to the layer and is overwritten by its next call. The <see cref="Training.Trainer"/> turns this
    /// on (through <see cref="Network.ReuseBuffers"/>) for the length of Fit and Evaluate. Setting it sets every child.
    /// </summary>
    public bool ReuseBuffers
    {
        get => _reuseBuffers;
        set { _reuseBuffers = value; foreach (var c in Children) c.ReuseBuffers = value; }
    }

    /// <summary>The trained tensors (empty for layers without weights).</summary>
    public virtual IReadOnlyList<Parameter> Parameters => [];

    /// <summary>The non-trained state tensors (batch norm's running statistics).</summary>
    public virtual IReadOnlyList<Buffer> Buffers => [];

    /// <summary>Layers inside this one (a residual block's convolutions); empty for simple layers.</summary>
    public virtual IReadOnlyList<Layer> Children => [];

    /// <summary>
    /// The random-number state that must survive a checkpoint for training to resume bit for bit
    /// (dropout's seed and step counter); empty for deterministic layers.
    /// </summary>
    public virtual ulong[] RandomState { get => []; set { if (value.Length != 0) throw new ArgumentException($"{Describe()} has no random state.", nameof(value)); } }

    /// <summary>True for layers whose weights feed a ReLU-family activation (chooses He initialisation under <see cref="WeightInit.Auto"/>).</summary>
    internal virtual bool UsesRelu => false;

    // ---- What a layer says about itself. A new layer type overrides these in its own file (and calls Register once);
    // ---- Network, the ONNX export, checkpoints and the ML.NET scorer only call them. See docs/architecture.md.

    /// <summary>
    /// The layer's kind and hyper-parameters (no weights): enough for <see cref="FromSpec"/> to make a new unbuilt layer
    /// like this one. Null for a layer that does not describe itself; such a layer cannot be cloned, and checkpoints of
    /// a network holding it store no architecture.
    /// </summary>
    public virtual LayerSpec? Spec => null;

    /// <summary>A new, unbuilt layer with the same <see cref="Spec"/> and <see cref="Name"/> (no weights): what the scorer's network copies are made of.</summary>
    public virtual Layer Clone()
    {
        var spec = Spec ?? throw new NotSupportedException($"{Describe()} cannot be cloned: it does not describe itself (override Layer.Spec and register its kind with Layer.Register).");
        var copy = FromSpec(spec);
        copy.Name = Name;
        return copy;
    }

    /// <summary>
    /// Appends this built layer's inference-mode computation to <paramref name="builder"/>, reading value <paramref name="x"/>;
    /// returns the output value's name. The default throws <see cref="NotSupportedException"/> naming the layer.
    /// </summary>
    public virtual string ExportOnnx(OnnxGraphBuilder builder, string x) =>
        throw new NotSupportedException($"ExportOnnx: {Describe()} has no ONNX mapping (override Layer.ExportOnnx).");

    /// <summary>
    /// For a layer whose output channel o is its "weight" [O, ...] applied to the input plus "bias"[o] (Conv, Dense): an
    /// unbuilt copy that has a bias, so that an inference-mode batch norm following it can be folded into its weights.
    /// Null (the default) for a layer that cannot absorb a batch norm.
    /// </summary>
    public virtual Layer? CloneWithBias() => null;

    /// <summary>Multiply-adds per sample of this built layer's forward pass (0 when negligible or for a composite layer, whose children count).</summary>
    public virtual long MultiplyAddsPerSample => 0;

    /// <summary>The stem of the names a network gives unnamed layers ("conv" gives "conv1", "conv2").</summary>
    protected internal virtual string NameStem => GetType().Name.ToLowerInvariant();

    // ---- The registry: kind name -> factory, for rebuilding layers from specs (checkpoints, clones).

    private static readonly Dictionary<string, Func<LayerSpec, Layer>> BuiltIn = new(StringComparer.Ordinal)
    {
        ["Conv"] = Conv.Parse, ["Pool"] = Pool.Parse, ["BatchNorm"] = BatchNorm.Parse, ["Lrn"] = Lrn.Parse,
        ["Activation"] = Activation.Parse, ["Flatten"] = Flatten.Parse, ["Dense"] = Dense.Parse,
        ["Dropout"] = Dropout.Parse, ["Residual"] = Residual.Parse, ["TransposedConv"] = TransposedConv.Parse, ["Graph"] = Graph.Parse,
        ["Normalize"] = Normalize.Parse,
    };
    private static readonly Dictionary<string, Func<LayerSpec, Layer>> Registered = new(StringComparer.Ordinal);
    private static readonly Lock RegistryLock = new();

    /// <summary>
    /// Makes layers of kind <paramref name="kind"/> known to <see cref="FromSpec"/> (and so to checkpoint loading).
    /// The built-in kinds cannot be replaced; registering a custom kind again replaces its factory.
    /// </summary>
    public static void Register(string kind, Func<LayerSpec, Layer> factory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(kind);
        ArgumentNullException.ThrowIfNull(factory);
        if (BuiltIn.ContainsKey(kind)) throw new ArgumentException($"Layer kind '{kind}' is built in and cannot be replaced; give the new layer another kind name.", nameof(kind));
        lock (RegistryLock) Registered[kind] = factory;
    }

    /// <summary>A new, unbuilt layer from <paramref name="spec"/>; throws <see cref="InvalidDataException"/> when its kind is not registered.</summary>
    public static Layer FromSpec(LayerSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        Func<LayerSpec, Layer>? factory;
        lock (RegistryLock)
            if (!BuiltIn.TryGetValue(spec.Kind, out factory) && !Registered.TryGetValue(spec.Kind, out factory))
                throw new InvalidDataException($"Unknown layer kind '{spec.Kind}' ({spec}); call Layer.Register(\"{spec.Kind}\", factory) before loading.");
        return factory(spec);
    }

    /// <summary>The output shape for an input of shape <paramref name="input"/> (<c>[N, ...]</c>); throws <see cref="ArgumentException"/> when the input does not fit.</summary>
    public abstract Shape OutputShape(Shape input);

    /// <summary>Checks the input shape and allocates the parameters on <paramref name="backend"/>; returns the output shape.</summary>
    public Shape Build(Shape input, IBackend backend)
    {
        ArgumentNullException.ThrowIfNull(backend);
        var output = OutputShape(input);
        if (BuiltInput is { } done)
        {
            if (!done.AsSpan()[1..].SequenceEqual(input.AsSpan()[1..]) || !ReferenceEquals(Backend, backend))
                throw new InvalidOperationException($"{Describe()} was built for input {done} on '{Backend!.Name}'; it cannot be rebuilt for {input} on '{backend.Name}'.");
            return output;
        }
        OnBuild(input, backend);
        BuiltInput = input;
        Backend = backend;
        return output;
    }

    /// <summary>Allocates parameters and buffers for <paramref name="input"/> (already checked by <see cref="OutputShape"/>).</summary>
    protected virtual void OnBuild(Shape input, IBackend backend) { }

    /// <summary>Draws the parameters' initial values from <paramref name="rng"/> (weights by <paramref name="init"/>, biases 0, scales 1) and resets buffers.</summary>
    public virtual void Initialize(Rng rng, WeightInit init)
    {
        ArgumentNullException.ThrowIfNull(rng);
        // A composite layer's Parameters are its children's: initialise each exactly once, through the child.
        if (Children.Count > 0) foreach (var c in Children) c.Initialize(rng, init);
        else foreach (var p in Parameters) InitializeParameter(p, rng, init);
    }

    /// <summary>y = layer(x). In training mode batch norm uses batch statistics and dropout draws a new mask.</summary>
    public abstract Tensor Forward(Tensor x, bool training);

    /// <summary>dx from dy, using what the last <see cref="Forward"/> cached; accumulates parameter gradients.</summary>
    public abstract Tensor Backward(Tensor dy);

    /// <summary>
    /// Like <see cref="Backward(Tensor)"/>, but may skip dx (returning null) when <paramref name="inputGradient"/> is false:
    /// the first weighted layer of a network needs only its parameter gradients. Layers whose dx is costly override it.
    /// </summary>
    public virtual Tensor? Backward(Tensor dy, bool inputGradient) => Backward(dy);

    /// <summary>"layer 'conv1' (Conv)" for messages.</summary>
    public string Describe() => $"layer '{Name ?? "?"}' ({GetType().Name})";

    /// <summary>Creates a parameter on the build backend.</summary>
    protected static Parameter NewParameter(IBackend backend, string name, Shape shape, ParameterRole role, int fanIn = 0, int fanOut = 0) =>
        new(name, backend.Allocate(shape), role, fanIn, fanOut);

    /// <summary>Throws unless <see cref="Build"/> ran and <paramref name="x"/> matches the built input (any batch size).</summary>
    protected void CheckInput(Tensor x)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (BuiltInput is not { } built)
            throw new InvalidOperationException($"{Describe()} is not built; call Network.Build (or Layer.Build) with the input shape first.");
        if (x.Rank != built.Rank || !x.Shape.AsSpan()[1..].SequenceEqual(built.AsSpan()[1..]))
            throw new ArgumentException($"{Describe()} was built for inputs [N, {string.Join(", ", built.AsSpan()[1..].ToArray())}] but got {x.Shape}.", nameof(x));
    }

    /// <summary>Throws when <see cref="Backward(Tensor)"/> runs without a cached forward pass.</summary>
    protected T Cached<T>(T? value) where T : class =>
        value ?? throw new InvalidOperationException($"{Describe()}: Backward needs a training-mode Forward first.");

    /// <summary>A tensor of <paramref name="shape"/> for this call's output or input gradient, from <paramref name="slot"/> when <see cref="ReuseBuffers"/> is on.</summary>
    protected Tensor Output(TensorSlot slot, Shape shape) => slot.Get(Backend!, shape, _reuseBuffers);

    /// <summary>
    /// Set by <see cref="Network.Forward"/> around this layer's call in an inference pass with reuse on (null otherwise):
    /// the two buffers the network's simple layers take turns writing their outputs into.
    /// </summary>
    internal InferenceBuffers? SharedOutputs { get; set; }

    /// <summary>
    /// The forward output for input <paramref name="x"/>: in a network's inference pass with reuse on, a view of the shared
    /// buffer <paramref name="x"/> is not in (see <see cref="InferenceBuffers"/>); otherwise as <see cref="Output"/>.
    /// </summary>
    protected Tensor ForwardOutput(TensorSlot slot, Shape shape, Tensor x) =>
        SharedOutputs is { } shared ? shared.Other(x, Backend!, shape) : Output(slot, shape);

    /// <summary>
    /// Where this backward pass writes <paramref name="p"/>'s gradient: <see cref="Parameter.Gradient"/> itself while it
    /// holds ZeroGrad's zeros (the usual case: no extra pass), else a scratch tensor that <see cref="CommitGradient"/> adds in.
    /// </summary>
    protected Tensor GradientTarget(Parameter p, TensorSlot scratch) =>
        p.GradientIsZero ? p.Gradient : scratch.Get(Backend!, p.Value.Shape, _reuseBuffers);

    /// <summary>Completes a gradient written into <paramref name="target"/> (from <see cref="GradientTarget"/>): adds it to the parameter's gradient unless it was written there.</summary>
    protected static void CommitGradient(Parameter p, Tensor target)
    {
        if (ReferenceEquals(target, p.Gradient)) p.GradientIsZero = false;
        else p.Gradient.Backend.AddScaled(target, 1f, p.Gradient);
    }

    internal static void InitializeParameter(Parameter p, Rng rng, WeightInit init)
    {
        var values = new float[p.Value.Length];
        switch (p.Role)
        {
            case ParameterRole.Weight when init == WeightInit.Glorot:
                double a = Math.Sqrt(6.0 / (p.FanIn + p.FanOut));
                for (int i = 0; i < values.Length; i++) values[i] = (float)((2 * rng.NextDouble() - 1) * a);
                break;
            case ParameterRole.Weight:
                double std = Math.Sqrt(2.0 / p.FanIn);
                for (int i = 0; i < values.Length; i++) values[i] = (float)(rng.NextNormal() * std);
                break;
            case ParameterRole.Scale:
                Array.Fill(values, 1f);
                break;
        }
        p.Value.CopyFromHost(values);
    }
}

/// <summary>
/// A layer's reusable tensor (an output or a gradient). With reuse on it keeps the last two shapes asked for (a full
/// batch and an epoch's shorter last batch), so neither is reallocated every epoch; with reuse off it hands out a new
/// tensor every time.
/// </summary>
public sealed class TensorSlot
{
    private Tensor? _recent, _older;

    /// <summary>A tensor of <paramref name="shape"/> on <paramref name="backend"/>: a kept one when <paramref name="reuse"/> is true and one fits, else a new (zero-filled) one.</summary>
    public Tensor Get(Backends.IBackend backend, Shape shape, bool reuse)
    {
        if (!reuse) return backend.Allocate(shape);
        if (_recent is not null && _recent.Shape == shape && ReferenceEquals(_recent.Backend, backend)) return _recent;
        if (_older is not null && _older.Shape == shape && ReferenceEquals(_older.Backend, backend))
        {
            (_recent, _older) = (_older, _recent);
            return _recent;
        }
        _older = _recent;
        _recent = backend.Allocate(shape);
        return _recent;
    }
}

/// <summary>
/// Two buffers that the simple layers of a network's inference pass write their outputs into in turn: each output goes
/// to the buffer its input is not in, so a pass keeps two activations alive instead of one per layer (at batch 1000 the
/// layer outputs of cnn2bn take 490 MB, its two largest 200 MB). A layer that hands back a view of its input (Flatten,
/// Dropout at inference) leaves its output in the input's buffer, and the next layer writes to the other one. Composite
/// layers (a residual block, a graph) keep their own buffers: their children need the block's input until the end.
/// A buffer grows to the largest output asked of it; views are kept per shape, so a warm pass makes no new tensor.
/// </summary>
internal sealed class InferenceBuffers
{
    private readonly TensorStorage?[] _storage = new TensorStorage?[2];
    private readonly Dictionary<Shape, Tensor>[] _views = [new(), new()];
    private Backends.IBackend? _backend;

    /// <summary>A tensor of <paramref name="shape"/> over the buffer that does not hold <paramref name="input"/>.</summary>
    public Tensor Other(Tensor input, Backends.IBackend backend, Shape shape)
    {
        if (!ReferenceEquals(backend, _backend))
        {
            _backend = backend;
            for (int i = 0; i < 2; i++) { _storage[i] = null; _views[i].Clear(); }
        }
        int b = ReferenceEquals(input.Storage, _storage[0]) ? 1 : 0;
        if (_storage[b] is not { } storage || storage.Length < shape.Length)
        {
            // Replaced, not disposed: like a TensorSlot's, a tensor handed out earlier may still be referenced.
            _storage[b] = storage = backend.Allocate(shape).Storage;
            _views[b].Clear();
        }
        if (!_views[b].TryGetValue(shape, out var view)) _views[b][shape] = view = Tensor.Create(backend, storage, shape);
        return view;
    }
}
