using Google.Protobuf;
using MLNet.ConvNet.Layers;
using MLNet.ConvNet.Onnx;
using MLNet.ConvNet.Ops;
using Activation = MLNet.ConvNet.Layers.Activation;
using BatchNorm = MLNet.ConvNet.Layers.BatchNorm;
using Dense = MLNet.ConvNet.Layers.Dense;
using Dropout = MLNet.ConvNet.Layers.Dropout;
using Lrn = MLNet.ConvNet.Layers.Lrn;
using MLNet.ConvNet.Tests.TestKit;
using Onnx;
using Xunit;

namespace MLNet.ConvNet.Tests;

/// <summary>
/// The ONNX importer against ONNX Runtime: models exported by PyTorch (scripts/export-onnx-test-models.py; OnnxModels/)
/// are imported and run by our engine and by ORT on the same random inputs. The torchvision models are stored without
/// their weights (46 MB for ResNet-18); <see cref="FillWeights"/> gives every float initializer seeded random values
/// of its shape first, and both sides run that filled model. Then the imported network is exported again with our
/// ExportOnnx, and ORT on that export must give what ORT gives on the original.
/// </summary>
/// <remarks>
/// Tolerance: 1e-4 of the largest output magnitude, per element (float32 on both sides; a ResNet's sums run over
/// up to 4,608 products per output and 20 layers deep, which stays near 1e-6 of the scale).
/// </remarks>
public class OnnxImporterTests
{
    private const double Tolerance = 1e-4;

    private static string ModelPath(string name) => Path.Combine(AppContext.BaseDirectory, "OnnxModels", name);

    [Theory]
    [InlineData("resnet18.onnx", 32, 11)]
    [InlineData("mobilenet_v2.onnx", 32, 13)]
    public void TorchvisionModelMatchesOrtAndRoundTrips(string file, int size, long opset)
    {
        var model = FillWeights(File.ReadAllBytes(ModelPath(file)), seed: 7);
        var sample = new Shape(3, size, size);
        var imported = OnnxImporter.Import(model, sampleShape: sample);
        Assert.Equal(opset, imported.Opset);
        Assert.False(imported.SoftmaxRemoved);
        Assert.Equal(new Shape(1000), imported.Network.OutputShape);

        var x = TestData.Uniform(new Random(11), 2 * sample.Length, 1f);
        int[] dims = [2, .. sample.AsSpan()];
        var ort = Ort.Run(model, imported.InputName, x, dims, imported.OutputName)[0];
        var ours = imported.Network.Forward(Tensor.FromHost(x, new Shape(dims)), training: false);
        Assert.Equal(ort.Shape, ours.Shape.ToArray());
        GradCheck.AssertClose(ours.ToHost(), TestData.ToDouble(ort.Floats), $"{file}: ours vs ORT", Tolerance, 0);

        // Our export of the imported network, in ORT, against ORT on the original.
        var again = Ort.Run(imported.Network.ExportOnnx(), "input", x, dims, "output")[0];
        GradCheck.AssertClose(again.Floats, TestData.ToDouble(ort.Floats), $"{file}: ORT on our re-export vs ORT on the original", Tolerance, 0);
    }

    [Fact]
    public void ResNetBecomesASequenceWithResidualBlocks()
    {
        var imported = OnnxImporter.Import(FillWeights(File.ReadAllBytes(ModelPath("resnet18.onnx")), 1), sampleShape: new Shape(3, 32, 32));
        var layers = imported.Network.Layers;
        // conv1, bn1, relu, maxpool; then per basic block a Graph (two convs, their batch norms, the shortcut, the Add)
        // and the ReLU after it; then the global pool, flatten and the classifier.
        var graphs = layers.OfType<Graph>().ToArray();
        Assert.Equal(8, graphs.Length);
        Assert.Equal(3, graphs.Count(g => g.Nodes.Any(n => n.Layer is Conv c && c.Kernel.Expand(2, "k").SequenceEqual([1, 1]))));
        Assert.IsType<Dense>(layers[^1]);
        Assert.Equal(11_689_512, imported.Network.ParameterCount);
    }

    [Fact]
    public void OpsZooMatchesOrtAndRoundTrips()
    {
        // ConvTranspose, Concat, grouped and dilated Conv, BatchNormalization, LeakyRelu, Elu, Tanh, Sigmoid, MaxPool and
        // AveragePool with padding, Reshape, MatMul + Add, Gemm, Relu and a final Softmax (opset 17; weights kept).
        var bytes = File.ReadAllBytes(ModelPath("opszoo.onnx"));
        var imported = OnnxImporter.Import(bytes);
        Assert.True(imported.SoftmaxRemoved);
        Assert.Contains(imported.Network.AllLayers(), l => l is TransposedConv);
        Assert.Contains(imported.Network.Layers, l => l is Graph g && g.Nodes.Any(n => n.Kind == GraphNodeKind.Concat));
        var sample = imported.Network.InputShape!.Value;
        var x = TestData.Uniform(new Random(3), 3 * sample.Length, 2f);
        int[] dims = [3, .. sample.AsSpan()];
        var ort = Ort.Run(bytes, "input", x, dims, "output")[0];
        var logits = imported.Network.Forward(Tensor.FromHost(x, new Shape(dims)), training: false);
        var probabilities = Softmax.Forward(logits);
        GradCheck.AssertClose(probabilities.ToHost(), TestData.ToDouble(ort.Floats), "opszoo: softmax(ours) vs ORT", Tolerance, 0);
        var again = Ort.Run(imported.Network.ExportOnnx(softmax: true), "input", x, dims, "output")[0];
        GradCheck.AssertClose(again.Floats, TestData.ToDouble(ort.Floats), "opszoo: ORT on our re-export vs ORT on the original", Tolerance, 0);
    }

    [Fact]
    public void OurOwnExportImportsBack()
    {
        // LRN (PyTorch exports it as other ops), 1-D-free 2-D layers of every other kind, and Dropout (no node: identity).
        var net = new Network(
        [
            new Conv(6, 3, Conv.DefaultOptions with { Padding = 1, Stride = 2 }), new Lrn(new LrnOptions { Size = 3, Alpha = 1e-3f, Beta = 0.7f, K = 1.5f }),
            new Activation(ActivationKind.ELU, 0.7f), new Pool(new PoolingOptions { Window = 3, Padding = 1, Stride = 1, Mode = PoolingMode.AverageExcludingPadding }),
            new BatchNorm(), new Dropout(0.3f), new Flatten(), new Dense(7), new Activation(ActivationKind.Sigmoid), new Dense(4),
        ]).Build(new Shape(2, 9, 9), seed: 5);
        var bytes = net.ExportOnnx();
        var imported = OnnxImporter.Import(bytes);
        var x = TestData.Uniform(new Random(4), 3 * 2 * 9 * 9, 1f);
        var ort = Ort.Run(bytes, "input", x, [3, 2, 9, 9], "output")[0];
        var ours = imported.Network.Forward(Tensor.FromHost(x, new Shape(3, 2, 9, 9)), training: false);
        GradCheck.AssertClose(ours.ToHost(), TestData.ToDouble(ort.Floats), "own export imported vs ORT", Tolerance, 0);
        Assert.Contains(imported.Network.Layers, l => l is Lrn);
    }

    [Fact]
    public void GemmWithoutTransposeAlphaBetaAndDropoutWithARatioInputMatchOrt()
    {
        // Conv -> Flatten (our export), then by hand: Gemm(B [F, 3], transB 0, alpha 0.5, beta 2, C [3]) -> Dropout(ratio 0.25).
        var rng = new Random(12);
        var b = new OnnxGraphBuilder();
        var w = Tensor.FromHost(TestData.Uniform(rng, 4 * 2 * 9, 1f), new Shape(4, 2, 3, 3));
        string h = b.Flatten(b.Convolution(b.Input("x", [-1, 2, 5, 5]), w, null, Conv.DefaultOptions));
        b.Output(h, "y");
        var model = ModelProto.Parser.ParseFrom(b.ToBytes());
        var g = model.Graph;
        g.Node.RemoveAt(g.Node.Count - 1);   // the Identity that named the output
        const int features = 4 * 3 * 3;
        g.Initializer.Add(OnnxProto.FloatTensor("B", TestData.Uniform(rng, features * 3, 0.3f), [features, 3]));
        g.Initializer.Add(OnnxProto.FloatTensor("C", TestData.Uniform(rng, 3, 1f), [3]));
        g.Initializer.Add(OnnxProto.FloatTensor("ratio", [0.25f], []));
        var gemm = new NodeProto { Name = "gemm", OpType = "Gemm", Input = { h, "B", "C" }, Output = { "g" } };
        gemm.Attribute.Add(OnnxProto.Float("alpha", 0.5f));
        gemm.Attribute.Add(OnnxProto.Float("beta", 2f));
        g.Node.Add(gemm);
        g.Node.Add(new NodeProto { Name = "drop", OpType = "Dropout", Input = { "g", "ratio" }, Output = { "y" } });
        g.Output[0].Type.TensorType.Shape.Dim[1].DimValue = 3;
        var bytes = model.ToByteArray();

        var imported = OnnxImporter.Import(bytes);
        Assert.Equal(0.25f, Assert.IsType<Dropout>(imported.Network.Layers[^1]).P);
        var x = TestData.Uniform(rng, 3 * 50, 1f);
        var ort = Ort.Run(bytes, "x", x, [3, 2, 5, 5], "y")[0];
        var ours = imported.Network.Forward(Tensor.FromHost(x, new Shape(3, 2, 5, 5)), training: false);
        GradCheck.AssertClose(ours.ToHost(), TestData.ToDouble(ort.Floats), "Gemm (transB 0, alpha, beta) + Dropout vs ORT", Tolerance, 0);
    }

    [Fact]
    public void UnsupportedOpIsNamed()
    {
        var b = new OnnxGraphBuilder();
        var w = Tensor.FromHost(TestData.Uniform(new Random(1), 4 * 2 * 9, 1f), new Shape(4, 2, 3, 3));
        string h = b.Convolution(b.Input("x", [-1, 2, 5, 5]), w, null, Conv.DefaultOptions);
        b.Output(b.Scale(h, 2f), "y");   // a Mul by a constant: not supported
        var e = Assert.Throws<NotSupportedException>(() => OnnxImporter.Import(b.ToBytes()));
        Assert.Contains("ONNX node 'Mul_1' (op Mul)", e.Message);
        Assert.Contains("Supported ops: Conv, ConvTranspose", e.Message);
    }

    [Fact]
    public void AsymmetricPadsAndStrangeReshapesAreRefusedByNode()
    {
        var model = ModelProto.Parser.ParseFrom(File.ReadAllBytes(ModelPath("opszoo.onnx")));
        var conv = model.Graph.Node.First(n => n.OpType == "Conv");
        var pads = conv.Attribute.First(a => a.Name == "pads");
        pads.Ints[0] = 0;   // begin 0, end 1 in H
        var e = Assert.Throws<NotSupportedException>(() => OnnxImporter.Import(model.ToByteArray()));
        Assert.Contains($"ONNX node '{conv.Name}' (op Conv)", e.Message);
        Assert.Contains("symmetric", e.Message);
    }

    [Fact]
    public void ImportedNetworkReloadsFromItsCheckpoint()
    {
        using var dir = new TempDir();
        var imported = OnnxImporter.Import(File.ReadAllBytes(ModelPath("opszoo.onnx"))).Network;
        string path = Path.Combine(dir.Path, "zoo.ckpt");
        Training.Checkpoint.Capture(imported).Save(path);
        var reloaded = Training.Checkpoint.LoadNetwork(path);
        Assert.Equal(imported.ComputeHash(), reloaded.ComputeHash());
        var x = Tensor.FromHost(TestData.Uniform(new Random(9), 2 * 3 * 16 * 16, 1f), new Shape(2, 3, 16, 16));
        Assert.Equal(imported.Forward(x, false).ToHost(), reloaded.Forward(x, false).ToHost());
    }

    /// <summary>
    /// <paramref name="model"/> with every float initializer given seeded random values of its shape: batch-norm scales
    /// and variances in [0.5, 1.5], other batch-norm inputs and biases in [-0.2, 0.2], weights He-scaled (normal-like
    /// uniform with variance 2 / fan-in) so that activations keep their size through a deep network.
    /// </summary>
    private static byte[] FillWeights(byte[] model, int seed)
    {
        var m = ModelProto.Parser.ParseFrom(model);
        var rng = new Random(seed);
        // The initializer's role, from the node input it feeds (through PyTorch's Identity copies of shared constants).
        var feeds = new Dictionary<string, List<(string Op, int Input)>>();
        var aliases = m.Graph.Node.Where(n => n.OpType == "Identity").ToDictionary(n => n.Output[0], n => n.Input[0]);
        foreach (var n in m.Graph.Node)
            for (int i = 0; i < n.Input.Count; i++)
            {
                string v = n.Input[i];
                while (aliases.TryGetValue(v, out var to)) v = to;
                if (!feeds.TryGetValue(v, out var list)) feeds[v] = list = [];
                list.Add((n.OpType, i));
            }
        foreach (var t in m.Graph.Initializer.Where(t => t.DataType == (int)TensorProto.Types.DataType.Float))
        {
            int count = (int)t.Dims.Aggregate(1L, (a, d) => a * d);
            var roles = feeds.GetValueOrDefault(t.Name) ?? [];
            var values = new float[count];
            if (roles.Any(r => r.Op == "BatchNormalization" && r.Input is 1 or 4))
                for (int i = 0; i < count; i++) values[i] = (float)(0.5 + rng.NextDouble());
            else if (t.Dims.Count >= 2)
            {
                double fanIn = t.Dims.Skip(1).Aggregate(1L, (a, d) => a * d);
                if (roles.Any(r => r.Op == "Gemm")) fanIn = t.Dims[1];
                double a = Math.Sqrt(6.0 / fanIn);   // uniform with variance 2 / fan-in
                for (int i = 0; i < count; i++) values[i] = (float)((2 * rng.NextDouble() - 1) * a);
            }
            else for (int i = 0; i < count; i++) values[i] = (float)(0.4 * rng.NextDouble() - 0.2);
            t.FloatData.Clear();
            t.RawData = ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
        }
        return m.ToByteArray();
    }
}
