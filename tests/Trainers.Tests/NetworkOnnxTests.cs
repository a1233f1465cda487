using Microsoft.ML.OnnxRuntime;
using MLNet.ConvNet.Layers;
using ActivationKind = MLNet.ConvNet.Ops.ActivationKind;
using PoolingMode = MLNet.ConvNet.Ops.PoolingMode;
using PoolingOptions = MLNet.ConvNet.Ops.PoolingOptions;
using Xunit;

namespace MLNet.ConvNet.Trainers.Tests;

/// <summary>Network.ExportOnnx (src/Core/Layers/NetworkOnnx.cs) for every preset and layer kind, run in ONNX Runtime.</summary>
public sealed class NetworkOnnxTests
{
    public static TheoryData<string, int[]> Networks => new()
    {
        { "lenet5", [1, 28, 28] },
        { "cnn2bn", [1, 28, 28] },
        { "vgg", [3, 12, 12] },
        { "resnet", [2, 9, 9] },
        { "lrn-elu-avg", [3, 10, 10] },
    };

    private static Network Make(string name) => name switch
    {
        "lrn-elu-avg" => new Network(
            new Conv(6, 3, Conv.DefaultOptions with { Padding = 1, Stride = 2 }), new Lrn(), new Activation(ActivationKind.ELU),
            new Pool(new PoolingOptions { Mode = PoolingMode.AverageExcludingPadding, Window = 3, Padding = 1, Stride = 2 }),
            new Dropout(0.5f), new Flatten(), new Dense(7), new Activation(ActivationKind.Tanh), new Dense(4)),
        _ => Presets.ByName(name, classes: 4),
    };

    [Theory]
    [MemberData(nameof(Networks))]
    public void Exported_network_matches_the_engine_in_OnnxRuntime(string name, int[] sample)
    {
        var network = Make(name).Build(new Shape(sample), seed: 11);
        // Random running statistics, so batch norm's export is really checked (fresh ones are 0 and 1).
        var rng = new Rng(5);
        foreach (var b in network.Buffers)
            b.Value.CopyFromHost(Enumerable.Range(0, b.Value.Length).Select(_ => (float)(b.Name.EndsWith("var") ? 0.5 + rng.NextDouble() : rng.NextNormal() * 0.1)).ToArray());
        const int n = 3;
        var shape = new Shape([n, .. sample]);
        var x = Enumerable.Range(0, shape.Length).Select(_ => (float)rng.NextNormal()).ToArray();
        var engine = network.Forward(Tensor.FromHost(x, shape), training: false).ToHost();

        using var session = new InferenceSession(network.ExportOnnx("x", "y"));
        using var input = OrtValue.CreateTensorValueFromMemory(x, shape.ToArray().Select(d => (long)d).ToArray());
        using var outputs = session.Run(new RunOptions(), ["x"], [input], ["y"]);
        var ort = outputs[0].GetTensorDataAsSpan<float>().ToArray();
        Assert.Equal([n, 4], outputs[0].GetTensorTypeAndShape().Shape);
        // Logits of O(1) through a few float32 layers: both sides round differently (summation order); 1e-4 absolute
        // plus 1e-4 relative covers that with a wide margin while any wrong layer mapping is off by far more.
        for (int i = 0; i < engine.Length; i++)
            Assert.True(Math.Abs(engine[i] - ort[i]) <= 1e-4 + 1e-4 * Math.Abs(engine[i]), $"{name} output {i}: engine {engine[i]} vs ORT {ort[i]}");
    }

    [Fact]
    public void Export_needs_a_built_network_and_a_matching_input()
    {
        Assert.Throws<InvalidOperationException>(() => Presets.LeNet5().ExportOnnx());
        var net = Presets.LeNet5().Build(new Shape(1, 28, 28));
        var b = new Onnx.OnnxGraphBuilder();
        string x = b.Input("x", [-1, 1, 32, 32]);
        Assert.Contains("takes samples [1, 28, 28]", Assert.Throws<ArgumentException>(() => net.ExportOnnx(b, x)).Message);
    }
}
