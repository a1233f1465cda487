using MLNet.ConvNet.Backends;
using MLNet.ConvNet.Layers;
using MLNet.ConvNet.Onnx;
using MLNet.ConvNet.Optimizers;
using MLNet.ConvNet.Tests.TestKit;
using MLNet.ConvNet.Training;
using Xunit;
using CrossEntropy = MLNet.ConvNet.Ops.CrossEntropy;

namespace MLNet.ConvNet.Tests;

/// <summary>
/// A layer type written outside the library, in one class: y = gain * x². It is the example of docs/architecture.md
/// ("Adding a layer type"): everything the network, the ONNX export, checkpoints and clones need, it says itself.
/// </summary>
public sealed class Square : Layer
{
    private Tensor? _x;
    private readonly TensorSlot _y = new(), _dx = new();

    public Square(float gain = 1f)
    {
        if (!float.IsFinite(gain)) throw new ArgumentOutOfRangeException(nameof(gain), gain, "Square: gain must be finite.");
        Gain = gain;
    }

    public float Gain { get; }

    /// <summary>Makes the kind known to <see cref="Layer.FromSpec"/> (checkpoint loading); call once before loading.</summary>
    public static void Register() => Layer.Register("Square", s => new Square(s.GetFloat("gain")));

    // What the layer is: a kind name and its hyper-parameters (Clone and checkpoints use it).
    public override LayerSpec Spec => LayerSpec.Of("Square", ("gain", Gain));

    public override Shape OutputShape(Shape input) => input;

    public override Tensor Forward(Tensor x, bool training)
    {
        CheckInput(x);
        var y = Output(_y, x.Shape);
        Backend!.Multiply(x, x, y);
        Backend.Scale(y, Gain, y);
        _x = training ? x : null;
        return y;
    }

    // dy/dx = 2 gain x.
    public override Tensor Backward(Tensor dy)
    {
        var x = Cached(_x);
        var dx = Output(_dx, x.Shape);
        Backend!.Multiply(x, dy, dx);
        Backend.Scale(dx, 2 * Gain, dx);
        return dx;
    }

    // The inference graph: Mul(x, x), then Mul by the gain.
    public override string ExportOnnx(OnnxGraphBuilder builder, string x) => builder.Scale(builder.Multiply(x, x), Gain);
}

public class CustomLayerTests
{
    private static readonly Shape Sample = new(2, 6, 6);

    static CustomLayerTests() => Square.Register();

    private static Network Net(ulong seed) => new Network(
    [
        new Conv(3, 3, Conv.DefaultOptions with { Padding = 1 }), new Square(0.5f), new Pool(), new Flatten(), new Dense(4),
    ]).Build(Sample, seed);

    private static Tensor Input(int seed, int n) =>
        Tensor.FromHost(TestData.Uniform(new Random(seed), n * Sample.Length, 1f), new Shape([n, .. Sample.AsSpan()]));

    [Fact]
    public void BackwardMatchesFiniteDifferences()
    {
        var layer = new Square(-1.5f) { Name = "sq" };
        var xShape = new Shape(2, 3, 4);
        layer.Build(xShape, DefaultBackend.Instance);
        var rng = new Random(3);
        var x = TestData.Uniform(rng, xShape.Length, 2f);
        var dy = TestData.Uniform(rng, xShape.Length, 1f);
        // Reference: y = gain * x² in float64.
        double[] Reference(double[] v) => Array.ConvertAll(v, e => -1.5 * e * e);

        var y = layer.Forward(Tensor.FromHost(x, xShape), training: true);
        GradCheck.AssertClose(y.ToHost(), Reference(TestData.ToDouble(x)), "Square forward");
        var dx = layer.Backward(Tensor.FromHost(dy, xShape));
        GradCheck.AssertClose(dx.ToHost(), GradCheck.Numeric(Reference, TestData.ToDouble(x), TestData.ToDouble(dy)), "Square dx");
    }

    [Fact]
    public void TrainsInANetwork()
    {
        var net = Net(1);
        Assert.Equal(["conv1", "square1", "pool1", "flatten1", "dense1"], net.Layers.Select(l => l.Name));
        var convBefore = net.Parameters[0].Value.ToHost();
        var opt = new Sgd(net.Parameters, 0.05);
        var x = Input(2, 8);
        int[] labels = [0, 1, 2, 3, 0, 1, 2, 3];
        double Loss() => CrossEntropy.Forward(net.Forward(x, training: false), labels).MeanLoss;
        double before = Loss();
        for (int step = 0; step < 5; step++)
        {
            opt.ZeroGrad();
            net.Backward(CrossEntropy.Backward(CrossEntropy.Forward(net.Forward(x, training: true), labels)));
            opt.Step();
        }
        // The gradient reaches the convolution through Square's backward pass, and a few small steps lower the loss.
        Assert.NotEqual(convBefore, net.Parameters[0].Value.ToHost());
        Assert.True(Loss() < before, $"loss {Loss()} did not fall below {before}");
    }

    [Fact]
    public void ExportsToOnnxAndMatchesOnnxRuntime()
    {
        var net = Net(4);
        var x = Input(5, 3);
        var ours = net.Forward(x, training: false);
        var ort = Ort.Run(net.ExportOnnx(), "input", x.ToHost(), x.Shape.ToArray(), "output")[0];
        Assert.Equal(ours.Shape.ToArray(), ort.Shape);
        GradCheck.AssertClose(ours.ToHost(), TestData.ToDouble(ort.Floats), "network with Square vs ORT", 1e-4, 0);
    }

    [Fact]
    public void CheckpointReloadsBySpecWithoutTheBuildingCode()
    {
        using var dir = new TempDir();
        var net = Net(6);
        string path = dir.File("square.ckpt");
        Checkpoint.Capture(net).Save(path);

        var loaded = Checkpoint.LoadNetwork(path);
        Assert.Equal(net.ComputeHash(), loaded.ComputeHash());
        var square = Assert.IsType<Square>(loaded.Layers[1]);
        Assert.Equal(0.5f, square.Gain);
        Assert.Equal("square1", square.Name);
        var x = Input(7, 2);
        Assert.Equal(net.Forward(x, training: false).ToHost(), loaded.Forward(x, training: false).ToHost());
    }

    [Fact]
    public void CloneIsAnUnbuiltLayerWithTheSameSpec()
    {
        var layer = new Square(2.25f) { Name = "s" };
        layer.Build(new Shape(1, 3), DefaultBackend.Instance);
        var copy = Assert.IsType<Square>(layer.Clone());
        Assert.Equal(2.25f, copy.Gain);
        Assert.Equal("s", copy.Name);
        Assert.Null(copy.BuiltInput);
        Assert.Equal("Square(gain=2.25)", copy.Spec.ToString());
    }

    [Fact]
    public void UnknownKindsAndBuiltInNamesAreRefused()
    {
        var e = Assert.Throws<InvalidDataException>(() => Layer.FromSpec(LayerSpec.Of("NeverRegistered", ("a", 1))));
        Assert.Contains("NeverRegistered", e.Message);
        Assert.Contains("Layer.Register", e.Message);
        Assert.Throws<ArgumentException>(() => Layer.Register("Conv", s => new Square()));
    }
}
