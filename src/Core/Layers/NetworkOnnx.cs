using MLNet.ConvNet.Onnx;

namespace MLNet.ConvNet.Layers;

/// <summary>
/// ONNX export of a built <see cref="Network"/> in inference mode: each layer becomes the <see cref="OnnxGraphBuilder"/>
/// node(s) of its op, with the current weights as initializers.
/// </summary>
/// <remarks>
/// Each layer exports itself (<see cref="Layer.ExportOnnx"/>): Conv to Conv; Pool to MaxPool/AveragePool (a global
/// pool's window is its built input's spatial size); BatchNorm to BatchNormalization with the running statistics; Lrn to
/// LRN; Activation to its op; Flatten to Flatten; Dense to Gemm; Dropout to nothing (it is the identity in inference);
/// Residual to its convolutions, batch norms, an Add and a Relu. A layer without a mapping throws
/// <see cref="NotSupportedException"/> naming it.
/// </remarks>
public static class NetworkOnnx
{
    /// <summary>
    /// Appends the inference graph of <paramref name="network"/> to <paramref name="builder"/>, reading value
    /// <paramref name="input"/> (<c>[N, sample...]</c>, the network's sample shape); returns the name of the last
    /// layer's output (the logits of a classifier). Call it to embed the network in a larger graph.
    /// </summary>
    public static string ExportOnnx(this Network network, OnnxGraphBuilder builder, string input)
    {
        ArgumentNullException.ThrowIfNull(network);
        ArgumentNullException.ThrowIfNull(builder);
        if (network.InputShape is not { } sample) throw new InvalidOperationException("The network is not built; call Build(sampleShape) first.");
        var dims = builder.ShapeOf(input);
        if (!dims.AsSpan(1).SequenceEqual(sample.AsSpan()))
            throw new ArgumentException($"ExportOnnx: value '{input}' has shape {Shape.Format(dims)} but the network takes samples {sample} (expected [N, {string.Join(", ", sample.ToArray())}]).", nameof(input));
        string x = input;
        foreach (var layer in network.Layers) x = layer.ExportOnnx(builder, x);
        return x;
    }

    /// <summary>
    /// The network as a whole ONNX model: float input <paramref name="inputName"/> <c>[N, sample...]</c> (dynamic batch)
    /// and one output <paramref name="outputName"/> <c>[N, outputs...]</c>: the logits, or the class probabilities when
    /// <paramref name="softmax"/> is true (a Softmax over dimension 1 is appended).
    /// </summary>
    public static byte[] ExportOnnx(this Network network, string inputName = "input", string outputName = "output", bool softmax = false)
    {
        ArgumentNullException.ThrowIfNull(network);
        if (network.InputShape is not { } sample) throw new InvalidOperationException("The network is not built; call Build(sampleShape) first.");
        var b = new OnnxGraphBuilder();
        string x = b.Input(inputName, [-1, .. sample.AsSpan()]);
        string y = network.ExportOnnx(b, x);
        if (softmax) y = b.Softmax(y, axis: 1);
        b.Output(y, outputName);
        return b.ToBytes();
    }

    /// <summary>Writes <see cref="ExportOnnx(Network, string, string, bool)"/>'s model to <paramref name="stream"/>.</summary>
    public static void ExportOnnx(this Network network, Stream stream, string inputName = "input", string outputName = "output", bool softmax = false)
    {
        ArgumentNullException.ThrowIfNull(stream);
        stream.Write(network.ExportOnnx(inputName, outputName, softmax));
    }
}
