using MLNet.ConvNet.Layers;

namespace MLNet.ConvNet.Optimizers;

/// <summary>
/// Stochastic gradient descent with optional momentum (heavy ball or Nesterov) and L2 weight decay
/// (PyTorch's SGD without dampening); the update is <see cref="Backends.IBackend.SgdStep"/>.
/// </summary>
public sealed class Sgd : Optimizer
{
    private readonly Tensor?[] _velocity;
    private readonly Dictionary<Parameter, int> _index = [];

    /// <summary>
    /// SGD with <paramref name="learningRate"/>; <paramref name="momentum"/> = 0 in [0, 1); <paramref name="nesterov"/> = false
    /// (needs momentum &gt; 0); <paramref name="weightDecay"/> = 0: L2 penalty added to the gradient.
    /// </summary>
    public Sgd(IEnumerable<Parameter> parameters, double learningRate, double momentum = 0, bool nesterov = false, double weightDecay = 0)
        : base(parameters, learningRate)
    {
        Momentum = CheckFinite(momentum, nameof(momentum), 0, 1);
        WeightDecay = CheckFinite(weightDecay, nameof(weightDecay), 0, double.MaxValue);
        if (nesterov && momentum == 0) throw new ArgumentException("Nesterov momentum needs momentum > 0.", nameof(nesterov));
        Nesterov = nesterov;
        _velocity = new Tensor?[Parameters.Count];
        for (int i = 0; i < Parameters.Count; i++)
        {
            _index[Parameters[i]] = i;
            if (Momentum > 0) _velocity[i] = AddSlot(Parameters[i], "velocity");
        }
    }

    public float Momentum { get; }
    public bool Nesterov { get; }
    public float WeightDecay { get; }
    public override string Kind => "Sgd";

    protected override void Update(Parameter p, float learningRate, long step) =>
        p.Value.Backend.SgdStep(p.Value, p.Gradient, _velocity[_index[p]], learningRate, Momentum, Nesterov, WeightDecay);
}
