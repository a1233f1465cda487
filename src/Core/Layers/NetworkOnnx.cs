using MLNet.ConvNet.Onnx;

namespace MLNet.ConvNet.Layers;

/// <summary>
/// ONNX export of a built <see cref="Network"/> in inference mode: each layer becomes the <see cref="OnnxGraphBuilder"/>
/// node(s) of its op, with the current weights as initializers.
/// </summary>
/// <remarks>
/// Layer mapping: Conv to Conv; Pool to MaxPool/AveragePool (a global pool's window is its built input's spatial size);
/// BatchNorm to BatchNormalization with the running statistics; Lrn to LRN; Activation to its op; Flatten to Flatten;
/// Dense to Gemm; Dropout to nothing (it is the identity in inference); Residual to its convolutions, batch norms, an
/// Add and a Relu. Any other layer type throws <see cref="NotSupportedException"/> naming it.
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
        foreach (var layer in network.Layers) x = Export(layer, builder, x);
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

    private static string Export(Layer layer, OnnxGraphBuilder b, string x)
    {
        switch (layer)
        {
            case Conv c:
                return b.Convolution(x, c.Weight!.Value, c.Bias?.Value, c.Options);
            case Pool p:
                var options = p.IsGlobal
                    ? p.Options with { Window = p.BuiltInput!.Value.Spatial, Stride = p.BuiltInput.Value.Spatial, Padding = 0 }
                    : p.Options;
                return b.Pooling(x, options);
            case BatchNorm bn:
                return b.BatchNormInference(x, bn.Parameters[0].Value, bn.Parameters[1].Value, bn.RunningMean!, bn.RunningVariance!, bn.Epsilon);
            case Lrn l:
                return b.Lrn(x, l.Options);
            case Activation a:
                return b.Activation(x, a.Kind, a.Alpha);
            case Flatten:
                return b.Flatten(x);
            case Dense d:
                return b.Dense(x, d.Weight!.Value, d.Bias?.Value);
            case Dropout:
                return x;
            case Residual r:
                // Children are [conv1, bn1, relu1, conv2, bn2, (proj, proj_bn,) relu_out]: see Residual.
                var children = r.Children;
                int mainCount = 5, shortcutCount = r.HasProjection ? 2 : 0;
                if (children.Count != mainCount + shortcutCount + 1)
                    throw new NotSupportedException($"ExportOnnx: {r.Describe()} has {children.Count} inner layers; expected {mainCount + shortcutCount + 1}.");
                string main = x, shortcut = x;
                for (int i = 0; i < mainCount; i++) main = Export(children[i], b, main);
                for (int i = 0; i < shortcutCount; i++) shortcut = Export(children[mainCount + i], b, shortcut);
                return Export(children[^1], b, b.Add(main, shortcut));
            default:
                throw new NotSupportedException($"ExportOnnx: {layer.Describe()} has no ONNX mapping.");
        }
    }
}
