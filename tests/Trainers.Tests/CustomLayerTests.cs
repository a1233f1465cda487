using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.OnnxRuntime;
using MLNet.ConvNet.Layers;
using MLNet.ConvNet.Onnx;
using Softmax = MLNet.ConvNet.Ops.Softmax;
using Xunit;

namespace MLNet.ConvNet.Trainers.Tests;

/// <summary>y = factor * x: a layer written outside the library (see docs/architecture.md, "Adding a layer type").</summary>
public sealed class ScaleBy(float factor, string kind = "ScaleBy") : Layer
{
    private readonly TensorSlot _y = new(), _dx = new();
    public float Factor { get; } = factor;

    public override LayerSpec Spec => LayerSpec.Of(kind, ("factor", Factor));
    public override Shape OutputShape(Shape input) => input;

    public override Tensor Forward(Tensor x, bool training)
    {
        CheckInput(x);
        var y = Output(_y, x.Shape);
        Backend!.Scale(x, Factor, y);
        return y;
    }

    public override Tensor Backward(Tensor dy)
    {
        var dx = Output(_dx, dy.Shape);
        Backend!.Scale(dy, Factor, dx);
        return dx;
    }

    public override string ExportOnnx(OnnxGraphBuilder builder, string x) => builder.Scale(x, Factor);
}

/// <summary>
/// A custom layer through the ML.NET trainer: the scorer's network copies are made from the layer's spec (so its kind
/// must be registered), and the saved model is the layer's own ONNX export.
/// </summary>
public sealed class CustomLayerTests
{
    private readonly MLContext _ml = new(seed: 1);

    static CustomLayerTests() => Layer.Register("ScaleBy", s => new ScaleBy(s.GetFloat("factor")));

    private static ConvNetTrainer.Options Options(string kind)
    {
        var options = Tiny.Options(epochs: 1, seed: 5);
        options.NetworkFactory = (k, backend) => new Network([new Conv(4, 3), new ScaleBy(0.5f, kind), Activation.Relu(), new Pool(), new Flatten(), new Dense(k)], backend);
        return options;
    }

    [Fact]
    public void Trains_scores_exports_and_saves_with_a_registered_custom_layer()
    {
        var model = new ConvNetTrainer(Options("ScaleBy")).Fit(Tiny.Data(_ml, 300));
        Assert.IsType<ScaleBy>(model.Network.Layers[1]);
        var rows = FashionData.TestRows(20);
        var test = FashionData.Keyed(_ml, rows);
        var scores = model.Transform(test).GetColumn<float[]>("Score").SelectMany(p => p).ToArray();

        // The engine's scores (network copies made by Clone) are the trained network's softmax.
        var x = rows.SelectMany(r => r.Features).ToArray();
        var network = model.Network;
        var direct = Softmax.Forward(network.Forward(Tensor.FromHost(x, new Shape(rows.Length, 1, 28, 28), network.Backend), training: false)).ToHost();
        InferenceTests.AssertClose(direct, scores, InferenceTests.BatchTolerance, "engine vs network");

        // The exported graph (with the layer's Mul) in ONNX Runtime gives the same probabilities.
        var stream = new MemoryStream();
        model.ExportOnnx(stream);
        using var session = new InferenceSession(stream.ToArray());
        using var input = OrtValue.CreateTensorValueFromMemory(x, [rows.Length, 1, 28, 28]);
        using var outputs = session.Run(new RunOptions(), ["Features"], [input], ["Score"]);
        InferenceTests.AssertClose(outputs[0].GetTensorDataAsSpan<float>().ToArray(), scores, 1e-5, "ORT vs engine");
    }

    [Fact]
    public void An_unregistered_layer_kind_is_named_when_the_scorer_copies_the_network()
    {
        var e = Assert.ThrowsAny<Exception>(() => new ConvNetTrainer(Options("NotRegisteredAnywhere")).Fit(Tiny.Data(_ml, 50)));
        Assert.Contains("NotRegisteredAnywhere", e.Message);
        Assert.Contains("Layer.Register", e.Message);
    }
}
