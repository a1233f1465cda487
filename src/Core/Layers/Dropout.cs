using MLNet.ConvNet.Onnx;

namespace MLNet.ConvNet.Layers;

/// <summary>
/// Inverted dropout (<see cref="Ops.Dropout"/>): in training each value is zeroed with probability p and the rest
/// scaled by 1/(1-p); in inference the input passes through unchanged.
/// </summary>
/// <remarks>
/// Each training forward pass draws a new mask from the seed <c>Mix(Seed, Step)</c> and then advances
/// <see cref="Step"/>: the masks are a function of the network's seed and the number of training steps
/// taken, independent of threads, and (Seed, Step) is saved in checkpoints so a resumed run draws the same masks.
/// </remarks>
public sealed class Dropout : Layer
{
    private Tensor? _mask;
    private readonly TensorSlot _masks = new(), _out = new(), _dx = new();

    /// <summary>Dropout with drop probability <paramref name="p"/> in [0, 1).</summary>
    public Dropout(float p)
    {
        if (!(p >= 0f && p < 1f)) throw new ArgumentOutOfRangeException(nameof(p), p, "Dropout: p must be in [0, 1).");
        P = p;
    }

    public float P { get; }

    /// <summary>The layer's seed, set by <see cref="Initialize"/> from the network's generator.</summary>
    public ulong Seed { get; set; }

    /// <summary>Training forward passes so far; the next mask uses seed <c>Rng.Mix(Seed, Step)</c>.</summary>
    public ulong Step { get; set; }

    /// <summary>
    /// MaskStream = 0: 0 draws the masks described above; k &gt; 0 draws them from <c>Rng.Mix(Rng.Mix(Seed, Step), k)</c>.
    /// Data-parallel training sets it to the rank, so ranks that hold different rows do not share masks (rank 0 keeps the
    /// single-process masks). Not random state: checkpoints do not store it.
    /// </summary>
    public ulong MaskStream { get; set; }

    public override ulong[] RandomState
    {
        get => [Seed, Step];
        set
        {
            if (value.Length != 2) throw new ArgumentException($"{Describe()}: random state has 2 words (seed, step); got {value.Length}.", nameof(value));
            (Seed, Step) = (value[0], value[1]);
        }
    }

    public override void Initialize(Rng rng, WeightInit init)
    {
        ArgumentNullException.ThrowIfNull(rng);
        Seed = rng.NextUInt64();
        Step = 0;
    }

    /// <summary>The drop probability only: the seed and step are random state, which checkpoints store separately.</summary>
    public override LayerSpec Spec => LayerSpec.Of("Dropout", ("p", P));

    internal static Dropout Parse(LayerSpec s) => new(s.GetFloat("p"));

    /// <summary>Nothing: dropout is the identity in inference.</summary>
    public override string ExportOnnx(OnnxGraphBuilder builder, string x) => x;

    public override Shape OutputShape(Shape input) => input;

    public override Tensor Forward(Tensor x, bool training)
    {
        CheckInput(x);
        if (!training || P == 0f) { _mask = null; return x; }
        var mask = Output(_masks, x.Shape);
        var y = Output(_out, x.Shape);
        ulong seed = Rng.Mix(Seed, Step);
        if (MaskStream != 0) seed = Rng.Mix(seed, MaskStream);
        Ops.Dropout.Forward(x, P, seed, mask, y);
        Step++;
        _mask = mask;
        return y;
    }

    public override Tensor Backward(Tensor dy)
    {
        if (_mask is null) return dy;
        var dx = Output(_dx, dy.Shape);
        Ops.Dropout.Backward(dy, _mask, dx);
        return dx;
    }
}
