using MLNet.ConvNet.Layers;

namespace MLNet.ConvNet.Optimizers;

/// <summary>A named host copy of a tensor: how optimizer and network state leave the backend for saving.</summary>
public sealed record NamedArray(string Name, Shape Shape, float[] Data);

/// <summary>An optimizer's saved state: its kind, the number of steps taken and its per-parameter tensors.</summary>
public sealed record OptimizerState(string Kind, long StepCount, IReadOnlyList<NamedArray> Tensors);

/// <summary>
/// Updates parameters from their gradients: <see cref="Step"/> runs one per-element update kernel per parameter,
/// <see cref="ZeroGrad"/> clears the gradients. Subclasses add only their per-parameter update and state slots.
/// </summary>
/// <remarks>
/// Hyper-parameters are fixed at construction and are not part of <see cref="GetState"/>; the state holds what
/// changes while training (the step count and slots such as momentum or Adam's moments), so a resumed run
/// continues exactly when it is built with the same hyper-parameters.
/// </remarks>
public abstract class Optimizer
{
    private readonly List<(Parameter Owner, string Name, Tensor Value)> _slots = [];
    private readonly double[] _scales;                     // per parameter: its learning rate is LearningRate times this
    private double _learningRate;

    /// <summary>An optimizer over <paramref name="parameters"/> with base rate <paramref name="learningRate"/> (&gt; 0).</summary>
    protected Optimizer(IEnumerable<Parameter> parameters, double learningRate)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (!(learningRate > 0) || !double.IsFinite(learningRate))
            throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate, "The learning rate must be finite and > 0.");
        Parameters = parameters.ToArray();
        if (Parameters.Count == 0) throw new ArgumentException("The optimizer has no parameters; build the network first.", nameof(parameters));
        if (Parameters.Select(p => p.Name).Distinct().Count() != Parameters.Count)
            throw new ArgumentException("Parameter names must be unique (they name the optimizer state); build the network first.", nameof(parameters));
        BaseLearningRate = _learningRate = learningRate;
        _scales = new double[Parameters.Count];
        Array.Fill(_scales, 1.0);
    }

    /// <summary>
    /// Gives <paramref name="parameters"/> (some of <see cref="Parameters"/>) the learning rate <see cref="LearningRate"/>
    /// times <paramref name="scale"/> (&gt; 0; 1 by default): discriminative learning rates, e.g. a pretrained body at a
    /// tenth of the new head's rate. Decoupled weight decay (AdamW) scales with it, as the rate multiplies it.
    /// </summary>
    public void SetLearningRateScale(IEnumerable<Parameter> parameters, double scale)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (!(scale > 0) || !double.IsFinite(scale)) throw new ArgumentOutOfRangeException(nameof(scale), scale, "The learning-rate scale must be finite and > 0.");
        var index = Parameters.Select((p, i) => (p, i)).ToDictionary(t => t.p, t => t.i);
        foreach (var p in parameters)
            _scales[index.TryGetValue(p, out int i) ? i : throw new ArgumentException($"Parameter '{p.Name}' is not updated by this optimizer.", nameof(parameters))] = scale;
    }

    /// <summary>The parameters this optimizer updates.</summary>
    public IReadOnlyList<Parameter> Parameters { get; }

    /// <summary>The learning rate given at construction; a schedule scales it.</summary>
    public double BaseLearningRate { get; }

    /// <summary>The rate the next <see cref="Step"/> uses (a trainer sets it from its schedule).</summary>
    public double LearningRate
    {
        get => _learningRate;
        set
        {
            if (!(value >= 0) || !double.IsFinite(value)) throw new ArgumentOutOfRangeException(nameof(value), value, "The learning rate must be finite and >= 0.");
            _learningRate = value;
        }
    }

    /// <summary>Steps taken so far.</summary>
    public long StepCount { get; private set; }

    /// <summary>The optimizer's name in saved state ("Sgd", "Adam", "AdamW").</summary>
    public abstract string Kind { get; }

    /// <summary>Applies one update to every parameter from its current gradient.</summary>
    public void Step()
    {
        StepCount++;
        for (int i = 0; i < Parameters.Count; i++) Update(Parameters[i], (float)(LearningRate * _scales[i]), StepCount);
    }

    /// <summary>Sets every gradient to zero (backward passes accumulate).</summary>
    public void ZeroGrad()
    {
        for (int i = 0; i < Parameters.Count; i++)
        {
            var p = Parameters[i];
            p.Gradient.Backend.Fill(p.Gradient, 0f);
            p.GradientIsZero = true;
        }
    }

    /// <summary>Updates one parameter; <paramref name="step"/> is 1-based.</summary>
    protected abstract void Update(Parameter p, float learningRate, long step);

    /// <summary>Allocates a zero state tensor shaped like <paramref name="p"/> named "<c>p.Name.slot</c>".</summary>
    protected Tensor AddSlot(Parameter p, string slot)
    {
        var t = p.Value.Backend.Allocate(p.Value.Shape);
        _slots.Add((p, slot, t));
        return t;
    }

    /// <summary>A host copy of the state: kind, step count and every slot tensor.</summary>
    public OptimizerState GetState() =>
        new(Kind, StepCount, _slots.Select(s => new NamedArray($"{s.Owner.Name}.{s.Name}", s.Value.Shape, s.Value.ToHost())).ToArray());

    /// <summary>Restores a state from <see cref="GetState"/>; throws <see cref="InvalidDataException"/> naming the first mismatch.</summary>
    public void SetState(OptimizerState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (state.Kind != Kind) throw new InvalidDataException($"The saved optimizer state is for {state.Kind}, not {Kind}.");
        if (state.StepCount < 0) throw new InvalidDataException($"The saved optimizer step count {state.StepCount} is negative.");
        if (state.Tensors.Count != _slots.Count)
            throw new InvalidDataException($"The saved {Kind} state has {state.Tensors.Count} tensors; this optimizer has {_slots.Count}.");
        for (int i = 0; i < _slots.Count; i++)
        {
            var (owner, slot, t) = _slots[i];
            var s = state.Tensors[i];
            string name = $"{owner.Name}.{slot}";
            if (s.Name != name || s.Shape != t.Shape)
                throw new InvalidDataException($"Saved optimizer tensor {i} is '{s.Name}' {s.Shape}; expected '{name}' {t.Shape}.");
        }
        for (int i = 0; i < _slots.Count; i++) _slots[i].Value.CopyFromHost(state.Tensors[i].Data);
        StepCount = state.StepCount;
    }

    internal static float CheckFinite(double value, string name, double min, double max, bool minInclusive = true)
    {
        bool ok = double.IsFinite(value) && (minInclusive ? value >= min : value > min) && value < max;
        if (!ok) throw new ArgumentOutOfRangeException(name, value, $"{name} must be in {(minInclusive ? "[" : "(")}{min}, {max}).");
        return (float)value;
    }
}
