using MLNet.ConvNet.Backends;
using MLNet.ConvNet.Onnx;
using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Layers;

/// <summary>
/// Batch normalization over dimension 1: per channel after a convolution (<c>[N, C, X...]</c>), per feature
/// after a dense layer (<c>[N, F]</c>). Trained scale gamma and shift beta; running mean and variance are
/// buffers, updated in training mode and used in inference mode. Calls <see cref="Ops.BatchNorm"/>.
/// </summary>
public sealed class BatchNorm : Layer
{
    private Parameter? _gamma, _beta;
    private Buffer? _mean, _variance;
    private Tensor? _x, _reluY;                           // _reluY: the output of a fused training pass (ForwardTrainingRelu)
    private BatchNormCache? _cache, _saved;                // _saved: made at build time, filled by every training pass
    private readonly TensorSlot _y = new(), _dx = new(), _dgamma = new(), _dbeta = new();

    /// <summary>Batch norm with <paramref name="epsilon"/> = 1e-5 and <paramref name="momentum"/> = 0.1 (weight of each batch in the running statistics).</summary>
    public BatchNorm(float epsilon = Ops.BatchNorm.DefaultEpsilon, float momentum = Ops.BatchNorm.DefaultMomentum)
    {
        if (!(epsilon > 0)) throw new ArgumentOutOfRangeException(nameof(epsilon), epsilon, "BatchNorm: epsilon must be > 0.");
        if (!(momentum >= 0 && momentum <= 1)) throw new ArgumentOutOfRangeException(nameof(momentum), momentum, "BatchNorm: momentum must be in [0, 1].");
        Epsilon = epsilon; Momentum = momentum;
    }

    public float Epsilon { get; }
    public float Momentum { get; }

    public override IReadOnlyList<Parameter> Parameters => _gamma is null ? [] : [_gamma, _beta!];
    public override IReadOnlyList<Buffer> Buffers => _mean is null ? [] : [_mean, _variance!];

    /// <summary>Running mean per channel (a buffer); null before build.</summary>
    public Tensor? RunningMean => _mean?.Value;
    /// <summary>Running variance per channel (a buffer); null before build.</summary>
    public Tensor? RunningVariance => _variance?.Value;

    public override LayerSpec Spec => LayerSpec.Of("BatchNorm", ("epsilon", Epsilon), ("momentum", Momentum));

    internal static BatchNorm Parse(LayerSpec s) => new(s.GetFloat("epsilon"), s.GetFloat("momentum"));

    /// <summary>BatchNormalization with the running statistics (inference mode).</summary>
    public override string ExportOnnx(OnnxGraphBuilder builder, string x) =>
        builder.BatchNormInference(x, _gamma!.Value, _beta!.Value, _mean!.Value, _variance!.Value, Epsilon);

    protected internal override string NameStem => "bn";

    public override Shape OutputShape(Shape input)
    {
        if (input.Rank < 2 || input.Rank > 5)
            throw new ArgumentException($"BatchNorm: input {input} must be [N, F], [N, C, X], [N, C, H, W] or [N, C, D, H, W].", "x");
        return input;
    }

    protected override void OnBuild(Shape input, IBackend backend)
    {
        var c = new Shape(input[1]);
        _gamma = NewParameter(backend, "gamma", c, ParameterRole.Scale);
        _beta = NewParameter(backend, "beta", c, ParameterRole.Shift);
        _mean = new Buffer("running_mean", backend.Allocate(c));
        _variance = new Buffer("running_var", backend.Allocate(c));
        backend.Fill(_variance.Value, 1f);
        _saved = BatchNormCache.Allocate(backend, input[1]);
    }

    public override void Initialize(Rng rng, WeightInit init)
    {
        base.Initialize(rng, init);
        _mean!.Value.Backend.Fill(_mean.Value, 0f);
        _variance!.Value.Backend.Fill(_variance.Value, 1f);
    }

    public override Tensor Forward(Tensor x, bool training)
    {
        CheckInput(x);
        _reluY = null;
        var y = ForwardOutput(_y, x.Shape, x);
        if (!training)
        {
            (_x, _cache) = (null, null);
            Ops.BatchNorm.ForwardInference(x, _gamma!.Value, _beta!.Value, _mean!.Value, _variance!.Value, y, Epsilon);
            return y;
        }
        Ops.BatchNorm.ForwardTraining(x, _gamma!.Value, _beta!.Value, _mean!.Value, _variance!.Value, _saved!, y, Epsilon, Momentum);
        (_x, _cache) = (x, _saved);
        return y;
    }

    public override Tensor Backward(Tensor dy)
    {
        if (_reluY is not null)
            throw new InvalidOperationException($"{Describe()}: the last forward pass ran with the ReLU after it fused in; call BackwardRelu (Network does).");
        var x = Cached(_x);
        var dx = Output(_dx, x.Shape);
        var dgamma = GradientTarget(_gamma!, _dgamma);
        var dbeta = GradientTarget(_beta!, _dbeta);
        Ops.BatchNorm.Backward(x, dy, _gamma!.Value, Cached(_cache), dx, dgamma, dbeta);
        CommitGradient(_gamma!, dgamma);
        CommitGradient(_beta!, dbeta);
        return dx;
    }

    /// <summary>
    /// A training pass of this layer and the ReLU <paramref name="relu"/> after it in one backend call
    /// (<see cref="Ops.BatchNorm.ForwardTrainingRelu"/>): what <see cref="Network"/> runs for the pair, saving the ReLU's
    /// own pass over the activations. Returns relu(batchnorm(x)); <see cref="BackwardRelu"/> is then the pair's backward.
    /// </summary>
    internal Tensor ForwardTrainingRelu(Tensor x, Activation relu)
    {
        CheckInput(x);
        var y = Output(_y, x.Shape);
        Ops.BatchNorm.ForwardTrainingRelu(x, _gamma!.Value, _beta!.Value, _mean!.Value, _variance!.Value, _saved!, y, Epsilon, Momentum);
        (_x, _cache, _reluY) = (x, _saved, y);
        relu.SkippedByFusion();
        return y;
    }

    /// <summary>Whether the last forward pass was <see cref="ForwardTrainingRelu"/> (its backward is then <see cref="BackwardRelu"/>).</summary>
    internal bool RanWithRelu => _reluY is not null;

    /// <summary>The backward of <see cref="ForwardTrainingRelu"/>: dy is the gradient of the ReLU's output; returns dx of this layer's input.</summary>
    internal Tensor BackwardRelu(Tensor dy)
    {
        var x = Cached(_x);
        var y = Cached(_reluY);
        var dx = Output(_dx, x.Shape);
        var dgamma = GradientTarget(_gamma!, _dgamma);
        var dbeta = GradientTarget(_beta!, _dbeta);
        Ops.BatchNorm.BackwardRelu(x, y, dy, _gamma!.Value, Cached(_cache), dx, dgamma, dbeta);
        CommitGradient(_gamma!, dgamma);
        CommitGradient(_beta!, dbeta);
        return dx;
    }
}
