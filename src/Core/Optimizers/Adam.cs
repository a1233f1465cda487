using MLNet.ConvNet.Layers;

namespace MLNet.ConvNet.Optimizers;

/// <summary>
/// Adam (Kingma and Ba 2015) with bias-corrected moments; weight decay, when given, is an L2 penalty added to the
/// gradient (as PyTorch's Adam). For decoupled decay use <see cref="AdamW"/>. The update is <see cref="Backends.IBackend.AdamStep"/>.
/// </summary>
public class Adam : Optimizer
{
    private readonly Dictionary<Parameter, (Tensor M, Tensor V)> _moments = [];
    private readonly bool _decoupled;

    /// <summary>
    /// Adam with <paramref name="learningRate"/> = 1e-3, <paramref name="beta1"/> = 0.9, <paramref name="beta2"/> = 0.999,
    /// <paramref name="epsilon"/> = 1e-8, <paramref name="weightDecay"/> = 0 (L2 penalty in the gradient).
    /// </summary>
    public Adam(IEnumerable<Parameter> parameters, double learningRate = 1e-3, double beta1 = 0.9, double beta2 = 0.999,
        double epsilon = 1e-8, double weightDecay = 0) : this(parameters, learningRate, beta1, beta2, epsilon, weightDecay, decoupled: false) { }

    private protected Adam(IEnumerable<Parameter> parameters, double learningRate, double beta1, double beta2, double epsilon,
        double weightDecay, bool decoupled) : base(parameters, learningRate)
    {
        Beta1 = CheckFinite(beta1, nameof(beta1), 0, 1);
        Beta2 = CheckFinite(beta2, nameof(beta2), 0, 1);
        Epsilon = CheckFinite(epsilon, nameof(epsilon), 0, 1, minInclusive: false);
        WeightDecay = CheckFinite(weightDecay, nameof(weightDecay), 0, double.MaxValue);
        _decoupled = decoupled;
        foreach (var p in Parameters) _moments[p] = (AddSlot(p, "m"), AddSlot(p, "v"));
    }

    public float Beta1 { get; }
    public float Beta2 { get; }
    public float Epsilon { get; }
    public float WeightDecay { get; }
    public override string Kind => "Adam";

    protected sealed override void Update(Parameter p, float learningRate, long step)
    {
        var (m, v) = _moments[p];
        p.Value.Backend.AdamStep(p.Value, p.Gradient, m, v, learningRate, Beta1, Beta2, Epsilon, WeightDecay, _decoupled, step);
    }
}

/// <summary>
/// AdamW (Loshchilov and Hutter 2019): Adam with weight decay decoupled from the gradient,
/// <c>param -= learningRate * weightDecay * param</c> before the Adam update.
/// </summary>
public sealed class AdamW : Adam
{
    /// <summary>AdamW with <paramref name="learningRate"/> = 1e-3, betas 0.9 / 0.999, <paramref name="epsilon"/> = 1e-8, <paramref name="weightDecay"/> = 0.01 (PyTorch's defaults).</summary>
    public AdamW(IEnumerable<Parameter> parameters, double learningRate = 1e-3, double beta1 = 0.9, double beta2 = 0.999,
        double epsilon = 1e-8, double weightDecay = 0.01) : base(parameters, learningRate, beta1, beta2, epsilon, weightDecay, decoupled: true) { }

    public override string Kind => "AdamW";
}
