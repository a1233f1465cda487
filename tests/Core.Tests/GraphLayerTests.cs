using MLNet.ConvNet.Backends;
using MLNet.ConvNet.Layers;
using MLNet.ConvNet.Onnx;
using MLNet.ConvNet.Ops;
using MLNet.ConvNet.Tests.TestKit;
using Xunit;
using Activation = MLNet.ConvNet.Layers.Activation;
using Dense = MLNet.ConvNet.Layers.Dense;

namespace MLNet.ConvNet.Tests;

/// <summary>
/// The layers the ONNX importer added (Graph, TransposedConv, Normalize): forward against float64 loops written here,
/// backward against finite differences of those loops, export against ONNX Runtime, and rebuilding from the spec.
/// </summary>
public class GraphLayerTests
{
    // ---- Graph: out = concat(x + tanh(conv1x1(x)), sigmoid(x)) on [N, C, L] ----

    private const int N = 2, C = 3, L = 5;

    private static Graph MakeGraph() => new(
    [
        GraphNode.Of(new Conv(C, 1) { Name = "conv" }, Graph.InputName),
        GraphNode.Of(new Activation(ActivationKind.Tanh) { Name = "tanh" }, "conv"),
        GraphNode.Add("sum", Graph.InputName, "tanh"),
        GraphNode.Of(new Activation(ActivationKind.Sigmoid) { Name = "sig" }, Graph.InputName),
        GraphNode.Concat("cat", "sum", "sig"),
    ]) { Name = "g" };

    /// <summary>The block in float64: x [N, C, L], w [C, C, 1], b [C] -> [N, 2C, L].</summary>
    private static double[] Reference(double[] x, double[] w, double[] b)
    {
        var y = new double[N * 2 * C * L];
        for (int n = 0; n < N; n++)
            for (int o = 0; o < C; o++)
                for (int l = 0; l < L; l++)
                {
                    double a = b[o];
                    for (int c = 0; c < C; c++) a += w[o * C + c] * x[(n * C + c) * L + l];
                    double xi = x[(n * C + o) * L + l];
                    y[(n * 2 * C + o) * L + l] = xi + Math.Tanh(a);
                    y[(n * 2 * C + C + o) * L + l] = 1 / (1 + Math.Exp(-xi));
                }
        return y;
    }

    [Fact]
    public void GraphForwardAndBackwardMatchFiniteDifferences()
    {
        var g = MakeGraph();
        var shape = new Shape(N, C, L);
        Assert.Equal(new Shape(N, 2 * C, L), g.Build(shape, DefaultBackend.Instance));
        g.Initialize(new Rng(3), WeightInit.Glorot);
        var conv = (Conv)g.Children[0];
        conv.Bias!.Value.CopyFromHost(TestData.Uniform(new Random(5), C, 0.5f));
        var rng = new Random(4);
        var x = TestData.Uniform(rng, shape.Length, 1.5f);
        var dy = TestData.Uniform(rng, N * 2 * C * L, 1f);
        double[] w = TestData.ToDouble(conv.Weight!.Value), b = TestData.ToDouble(conv.Bias.Value);

        var y = g.Forward(Tensor.FromHost(x, shape), training: true);
        GradCheck.AssertClose(y.ToHost(), Reference(TestData.ToDouble(x), w, b), "Graph forward");
        var dx = g.Backward(Tensor.FromHost(dy, y.Shape));
        GradCheck.AssertClose(dx.ToHost(), GradCheck.Numeric(v => Reference(v, w, b), TestData.ToDouble(x), TestData.ToDouble(dy)), "Graph dx");
        GradCheck.AssertClose(conv.Weight.Gradient.ToHost(), GradCheck.Numeric(v => Reference(TestData.ToDouble(x), v, b), w, TestData.ToDouble(dy)), "Graph dw");
        GradCheck.AssertClose(conv.Bias.Gradient.ToHost(), GradCheck.Numeric(v => Reference(TestData.ToDouble(x), w, v), b, TestData.ToDouble(dy)), "Graph db");
    }

    [Fact]
    public void GraphExportsToOnnxAndRebuildsFromItsSpec()
    {
        var net = new Network([new Conv(C, 3, Conv.DefaultOptions with { Padding = 1 }), MakeGraph(), new Flatten(), new Dense(4)]).Build(new Shape(2, 6, 6), seed: 2);
        var x = Tensor.FromHost(TestData.Uniform(new Random(6), 3 * 72, 1f), new Shape(3, 2, 6, 6));
        var ours = net.Forward(x, training: false);
        var ort = Ort.Run(net.ExportOnnx(), "input", x.ToHost(), x.Shape.ToArray(), "output")[0];
        GradCheck.AssertClose(ours.ToHost(), TestData.ToDouble(ort.Floats), "network with a Graph vs ORT", 1e-4, 0);

        // The spec alone rebuilds the same wiring: a copy given the same weights computes the same values.
        var rebuilt = Layer.FromSpec(net.Layers[1].Spec!);
        rebuilt.Name = "g";
        var copy = new Network([new Conv(C, 3, Conv.DefaultOptions with { Padding = 1 }), rebuilt, new Flatten(), new Dense(4)]).Build(new Shape(2, 6, 6), seed: 9);
        foreach (var (p, q) in net.Parameters.Zip(copy.Parameters)) { Assert.Equal(p.Name, q.Name); q.Value.CopyFromHost(p.Value.ToHost()); }
        Assert.Equal(ours.ToHost(), copy.Forward(x, training: false).ToHost());
    }

    [Fact]
    public void GraphRefusesAnUnreadNodeAndAnUnknownInput()
    {
        var e = Assert.Throws<ArgumentException>(() => new Graph([GraphNode.Of(new Flatten { Name = "a" }, Graph.InputName), GraphNode.Of(new Flatten { Name = "b" }, Graph.InputName)]));
        Assert.Contains("'a' is read by no later node", e.Message);
        e = Assert.Throws<ArgumentException>(() => new Graph([GraphNode.Of(new Flatten { Name = "a" }, "nothing")]));
        Assert.Contains("reads 'nothing'", e.Message);
    }

    // ---- TransposedConv: y[n, o, i S - P + k D] += w[c, o', k] x[n, c, i], o = group(c) Cy/G + o' ----

    [Theory]
    [InlineData(1, 2, 4, 1, 2, 1, 1)]
    [InlineData(2, 2, 4, 2, 1, 2, 2)]
    public void TransposedConvMatchesFiniteDifferences(int seed, int cx, int cy, int groups, int stride, int padding, int dilation)
    {
        const int n = 2, xl = 4, k = 3;
        var layer = new TransposedConv(cy, k, Conv.DefaultOptions with { Stride = stride, Padding = padding, Dilation = dilation, Groups = groups }) { Name = "t" };
        var xShape = new Shape(n, cx, xl);
        var yShape = layer.Build(xShape, DefaultBackend.Instance);
        int yl = (xl - 1) * stride + (k - 1) * dilation + 1 - 2 * padding;
        Assert.Equal(new Shape(n, cy, yl), yShape);
        var rng = new Random(seed);
        var w = TestData.Uniform(rng, cx * (cy / groups) * k, 1f);
        var b = TestData.Uniform(rng, cy, 1f);
        layer.Weight!.Value.CopyFromHost(w);
        layer.Bias!.Value.CopyFromHost(b);
        var x = TestData.Uniform(rng, xShape.Length, 1f);
        var dy = TestData.Uniform(rng, yShape.Length, 1f);

        double[] Reference(double[] xv, double[] wv, double[] bv)
        {
            var y = new double[yShape.Length];
            int cyg = cy / groups, cxg = cx / groups;
            for (int ni = 0; ni < n; ni++)
            {
                for (int o = 0; o < cy; o++) for (int j = 0; j < yl; j++) y[(ni * cy + o) * yl + j] = bv[o];
                for (int c = 0; c < cx; c++)
                    for (int ol = 0; ol < cyg; ol++)
                        for (int i = 0; i < xl; i++)
                            for (int kk = 0; kk < k; kk++)
                            {
                                int j = i * stride - padding + kk * dilation, o = c / cxg * cyg + ol;
                                if (j >= 0 && j < yl) y[(ni * cy + o) * yl + j] += wv[(c * cyg + ol) * k + kk] * xv[(ni * cx + c) * xl + i];
                            }
            }
            return y;
        }
        double[] xd = TestData.ToDouble(x), wd = TestData.ToDouble(w), bd = TestData.ToDouble(b), dyd = TestData.ToDouble(dy);
        var yt = layer.Forward(Tensor.FromHost(x, xShape), training: true);
        GradCheck.AssertClose(yt.ToHost(), Reference(xd, wd, bd), "TransposedConv forward");
        var dx = layer.Backward(Tensor.FromHost(dy, yShape));
        GradCheck.AssertClose(dx.ToHost(), GradCheck.Numeric(v => Reference(v, wd, bd), xd, dyd), "TransposedConv dx");
        GradCheck.AssertClose(layer.Weight.Gradient.ToHost(), GradCheck.Numeric(v => Reference(xd, v, bd), wd, dyd), "TransposedConv dw");
        GradCheck.AssertClose(layer.Bias.Gradient.ToHost(), GradCheck.Numeric(v => Reference(xd, wd, v), bd, dyd), "TransposedConv db");
    }

    // ---- Normalize: (x - mean[c]) / std[c] ----

    [Fact]
    public void NormalizeMatchesItsFormulaFiniteDifferencesAndOrt()
    {
        float[] mean = [0.485f, 0.456f, 0.406f], std = [0.229f, 0.224f, 0.225f];
        var net = new Network([new Normalize(mean, std), new Flatten(), new Dense(2)]).Build(new Shape(3, 4, 4), seed: 1);
        var layer = (Normalize)net.Layers[0];
        var shape = new Shape(2, 3, 4, 4);
        var rng = new Random(8);
        var x = TestData.Uniform(rng, shape.Length, 1f);
        var dy = TestData.Uniform(rng, shape.Length, 1f);
        double[] Reference(double[] v) => v.Select((e, i) => (e - mean[i / 16 % 3]) / std[i / 16 % 3]).ToArray();
        var y = layer.Forward(Tensor.FromHost(x, shape), training: true);
        GradCheck.AssertClose(y.ToHost(), Reference(TestData.ToDouble(x)), "Normalize forward");
        var dx = layer.Backward(Tensor.FromHost(dy, shape));
        GradCheck.AssertClose(dx.ToHost(), GradCheck.Numeric(Reference, TestData.ToDouble(x), TestData.ToDouble(dy)), "Normalize dx");

        var ours = net.Forward(Tensor.FromHost(x, shape), training: false);
        var ort = Ort.Run(net.ExportOnnx(), "input", x, shape.ToArray(), "output")[0];
        GradCheck.AssertClose(ours.ToHost(), TestData.ToDouble(ort.Floats), "Normalize network vs ORT", 1e-4, 0);
        var again = (Normalize)Layer.FromSpec(layer.Spec);
        Assert.Equal(mean, again.Mean);
        Assert.Equal(std, again.Std);
    }
}
