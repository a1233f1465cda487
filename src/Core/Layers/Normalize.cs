using System.Globalization;
using MLNet.ConvNet.Backends;
using MLNet.ConvNet.Onnx;
using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Layers;

/// <summary>
/// Fixed per-channel input normalization, <c>y[n, c, ...] = (x[n, c, ...] - mean[c]) / std[c]</c>: the preprocessing a
/// pretrained network expects (ImageNet's mean and std), kept inside the network so that scoring and the exported ONNX
/// model apply it too. No trained parameters.
/// </summary>
/// <remarks>
/// It runs as a depthwise 1x1 convolution (one group per channel) with weight <c>1/std</c> and bias <c>-mean/std</c>,
/// which every backend has, and exports as that ONNX Conv. The two constants are buffers ("scale", "shift"), so
/// checkpoints carry them.
/// </remarks>
public sealed class Normalize : Layer
{
    private readonly float[] _mean, _std;
    private Buffer? _scale, _shift;
    private ConvGeometry? _geometry;
    private readonly TensorSlot _y = new(), _dx = new();

    /// <summary>Normalization by <paramref name="mean"/> and <paramref name="std"/>, one value per channel (std &gt; 0).</summary>
    public Normalize(IReadOnlyList<float> mean, IReadOnlyList<float> std)
    {
        ArgumentNullException.ThrowIfNull(mean);
        ArgumentNullException.ThrowIfNull(std);
        if (mean.Count == 0 || mean.Count != std.Count)
            throw new ArgumentException($"Normalize: give one mean and one std per channel; got {mean.Count} means and {std.Count} stds.", nameof(std));
        if (mean.Any(m => !float.IsFinite(m))) throw new ArgumentOutOfRangeException(nameof(mean), "Normalize: every mean must be finite.");
        if (std.Any(s => !(s > 0) || !float.IsFinite(s))) throw new ArgumentOutOfRangeException(nameof(std), "Normalize: every std must be finite and > 0.");
        _mean = mean.ToArray(); _std = std.ToArray();
    }

    /// <summary>The mean per channel.</summary>
    public IReadOnlyList<float> Mean => _mean;
    /// <summary>The standard deviation per channel.</summary>
    public IReadOnlyList<float> Std => _std;

    public override IReadOnlyList<Buffer> Buffers => _scale is null ? [] : [_scale, _shift!];

    public override LayerSpec Spec => LayerSpec.Of("Normalize", ("mean", Join(_mean)), ("std", Join(_std)));

    internal static Normalize Parse(LayerSpec s) => new(Split(s, "mean"), Split(s, "std"));

    private static string Join(float[] v) => string.Join(" ", v.Select(f => f.ToString("R", CultureInfo.InvariantCulture)));

    private static float[] Split(LayerSpec s, string key)
    {
        try { return s.Get(key).Split(' ').Select(p => float.Parse(p, NumberStyles.Float, CultureInfo.InvariantCulture)).ToArray(); }
        catch (FormatException e) { throw new InvalidDataException($"LayerSpec 'Normalize': value '{key}' = \"{s.Get(key)}\" is not a list of floats.", e); }
    }

    public override string ExportOnnx(OnnxGraphBuilder builder, string x) => builder.Convolution(x, _scale!.Value, _shift!.Value, Options);

    protected internal override string NameStem => "normalize";

    private ConvolutionOptions Options => Conv.DefaultOptions with { Groups = _mean.Length };

    public override Shape OutputShape(Shape input)
    {
        ConvGeometry.CheckRank(input, "x", "Normalize");
        if (input[1] != _mean.Length)
            throw new ArgumentException($"Normalize: input {input} has {input[1]} channels but {_mean.Length} means and stds were given.", "x");
        return input;
    }

    protected override void OnBuild(Shape input, IBackend backend)
    {
        int c = _mean.Length;
        var scale = backend.Allocate(new Shape([c, 1, .. Enumerable.Repeat(1, input.Rank - 2)]));
        var shift = backend.Allocate(new Shape(c));
        // In double, then rounded once: 1/std and -mean/std.
        scale.CopyFromHost(_std.Select(s => (float)(1.0 / s)).ToArray());
        shift.CopyFromHost(_mean.Select((m, i) => (float)(-(double)m / _std[i])).ToArray());
        _scale = new Buffer("scale", scale);
        _shift = new Buffer("shift", shift);
    }

    public override Tensor Forward(Tensor x, bool training)
    {
        CheckInput(x);
        var g = Geometry(x.Shape);
        var y = ForwardOutput(_y, g.Output, x);
        Convolution.Forward(g, x, _scale!.Value, _shift!.Value, y);
        return y;
    }

    /// <summary>dx = dy / std per channel.</summary>
    public override Tensor Backward(Tensor dy)
    {
        ArgumentNullException.ThrowIfNull(dy);
        var g = Geometry(dy.Shape);
        var dx = Output(_dx, g.Input);
        Convolution.BackwardData(g, _scale!.Value, dy, dx);
        return dx;
    }

    private ConvGeometry Geometry(Shape input)
    {
        if (_geometry is null || _geometry.Input != input) _geometry = ConvGeometry.Create(input, _scale!.Value.Shape, Options, "Normalize");
        return _geometry;
    }
}
