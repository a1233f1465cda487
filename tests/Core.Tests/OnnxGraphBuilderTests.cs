using Google.Protobuf;
using MLNet.ConvNet.Onnx;
using MLNet.ConvNet.Ops;
using MLNet.ConvNet.Tests.TestKit;
using Onnx;
using Xunit;

namespace MLNet.ConvNet.Tests;

/// <summary>
/// The exporter on its own: the seed's numbers run through ONNX Runtime (no kernel of ours involved, so these pin
/// the mapping: kernel flip, pads, strides, pooling modes, Gemm's transB), the model's structure read back with
/// OnnxSharp, shape tracking, and argument checks.
/// </summary>
public class OnnxGraphBuilderTests
{
    // ---- the seed's examples, computed by ONNX Runtime from the exported graph ----

    [Theory]
    // Knet's conv4(w = [1,2,3], x = [1..7]) with padding / stride (1-D, kernel flipped).
    [InlineData(0, 1, new float[] { 10, 16, 22, 28, 34 })]
    [InlineData(1, 1, new float[] { 4, 10, 16, 22, 28, 34, 32 })]
    [InlineData(1, 3, new float[] { 4, 22, 32 })]
    public void SeedConvolution1D(int padding, int stride, float[] expected)
    {
        var w = Tensor.FromHost([1f, 2, 3], 1, 1, 3);
        var y = RunOne([1, 1, 7], [1, 2, 3, 4, 5, 6, 7], (b, x) => b.Convolution(x, w, null, new ConvolutionOptions { Padding = padding, Stride = stride }));
        Assert.Equal(expected, y.Floats);
    }

    [Fact]
    public void SeedConvolution2D()
    {
        // Knet's w = reshape(1:4, 2, 2), x = reshape(1:9, 3, 3) (column-major) are our transposed row-major fills.
        var w = Tensor.FromHost([1f, 3, 2, 4], 1, 1, 2, 2);
        var y = RunOne([1, 1, 3, 3], [1, 4, 7, 2, 5, 8, 3, 6, 9], (b, x) => b.Convolution(x, w));
        Assert.Equal(new float[] { 23, 53, 33, 63 }, y.Floats);
        Assert.Equal([1, 1, 2, 2], y.Shape);
    }

    [Theory]
    // Cross-correlation leaves the kernel as is; its adjoint scatters it: see TransposedConvolution.Forward's example.
    [InlineData(ConvolutionMode.CrossCorrelation, new float[] { 1, 3, 5, 3 })]
    [InlineData(ConvolutionMode.Convolution, new float[] { 3, 5, 3, 1 })]
    public void TransposedConvolution1D(ConvolutionMode mode, float[] expected)
    {
        var w = Tensor.FromHost([1f, 2, 3], 1, 1, 3);
        var y = RunOne([1, 1, 2], [1, 1], (b, x) => b.TransposedConvolution(x, w, null, new ConvolutionOptions { Mode = mode }));
        Assert.Equal(expected, y.Floats);
    }

    [Theory]
    // Knet's pool on x = [1..6] (and [1..10] for the stride example).
    [InlineData(6, 2, 0, 0, PoolingMode.Max, new float[] { 2, 4, 6 })]
    [InlineData(6, 3, 0, 0, PoolingMode.Max, new float[] { 3, 6 })]
    [InlineData(6, 2, 1, 0, PoolingMode.Max, new float[] { 1, 3, 5, 6 })]
    [InlineData(6, 2, 1, 0, PoolingMode.AverageIncludingPadding, new float[] { 0.5f, 2.5f, 4.5f, 3 })]
    [InlineData(6, 2, 1, 0, PoolingMode.AverageExcludingPadding, new float[] { 1, 2.5f, 4.5f, 6 })]
    [InlineData(10, 2, 0, 4, PoolingMode.Max, new float[] { 2, 6, 10 })]
    public void SeedPooling1D(int length, int window, int padding, int stride, PoolingMode mode, float[] expected)
    {
        var options = new PoolingOptions { Window = window, Padding = padding, Mode = mode };
        if (stride > 0) options = options with { Stride = stride };
        var x = Enumerable.Range(1, length).Select(i => (float)i).ToArray();
        Assert.Equal(expected, RunOne([1, 1, length], x, (b, h) => b.Pooling(h, options)).Floats);
    }

    [Fact]
    public void SeedPooling2D()
    {
        // Knet's reshape(1:16, 4, 4): our x[h, w] = 1 + h + 4w; pool gives Knet's [6 14; 8 16].
        var x = new float[16];
        for (int h = 0; h < 4; h++) for (int w = 0; w < 4; w++) x[h * 4 + w] = 1 + h + 4 * w;
        Assert.Equal(new float[] { 6, 14, 8, 16 }, RunOne([1, 1, 4, 4], x, (b, v) => b.Pooling(v)).Floats);
    }

    [Fact]
    public void SeedDense()
    {
        var w = Tensor.FromHost([1f, 3, 5, 2, 4, 6], 2, 3);
        var y = RunOne([1, 3], [1, 2, 3], (b, x) => b.Dense(x, w));
        Assert.Equal(new float[] { 22, 28 }, y.Floats);
    }

    // ---- the model's structure ----

    [Fact]
    public void ModelHasUniqueNamesOpsetsAndDynamicBatch()
    {
        var rng = new Random(7);
        var b = new OnnxGraphBuilder();
        string x = b.Input("features", [-1, 1, 6, 6]);
        var w = Tensor.FromHost(TestData.Uniform(rng, 2 * 1 * 3 * 3), 2, 1, 3, 3);
        // Two convolutions and two dense layers (7 float constants): the same roles (W, B) must still get distinct names.
        string h = b.Convolution(x, w, Tensor.FromHost([0.1f, 0.2f], 2), new ConvolutionOptions { Padding = 1 });
        h = b.Convolution(b.Activation(h, ActivationKind.ReLU), Tensor.FromHost(TestData.Uniform(rng, 2 * 2 * 3 * 3), 2, 2, 3, 3));
        h = b.Dense(h, Tensor.FromHost(TestData.Uniform(rng, 3 * 32), 3, 32), Tensor.FromHost([0f, 1, 2], 3));
        h = b.Dense(h, Tensor.FromHost(TestData.Uniform(rng, 3 * 3), 3, 3), Tensor.FromHost([0f, 1, 2], 3));
        b.Output(b.Softmax(h), "Score");
        b.SlotNames("Score", ["cat", "dog", "bird"]);

        var model = ModelProto.Parser.ParseFrom(b.ToBytes());
        Assert.Equal(OnnxGraphBuilder.IrVersion, model.IrVersion);
        Assert.Contains(model.OpsetImport, o => o.Domain == "" && o.Version == OnnxGraphBuilder.OpsetVersion);
        Assert.Contains(model.OpsetImport, o => o.Domain == OnnxGraphBuilder.MlDomain && o.Version == OnnxGraphBuilder.MlOpsetVersion);

        var g = model.Graph;
        var nodeNames = g.Node.Select(n => n.Name).ToList();
        Assert.Equal(nodeNames.Count, nodeNames.Distinct().Count());
        var valueNames = g.Node.SelectMany(n => n.Output).Concat(g.Initializer.Select(i => i.Name)).Concat(g.Input.Select(i => i.Name)).ToList();
        Assert.Equal(valueNames.Count, valueNames.Distinct().Count());
        Assert.Equal(7, g.Initializer.Count(i => i.DataType == (int)TensorProto.Types.DataType.Float));

        Assert.Equal("N", g.Input[0].Type.TensorType.Shape.Dim[0].DimParam);
        Assert.Equal(1, g.Input[0].Type.TensorType.Shape.Dim[1].DimValue);
        var score = Assert.Single(g.Output);
        Assert.Equal("Score", score.Name);
        Assert.Equal("N", score.Type.TensorType.Shape.Dim[0].DimParam);
        Assert.Equal(3, score.Type.TensorType.Shape.Dim[1].DimValue);

        // ML.NET's OnnxTransformer reads the node named mlnet.Score.SlotNames and its keys_strings attribute.
        var slots = Assert.Single(g.Node, n => n.Name == "mlnet.Score.SlotNames");
        Assert.Equal("LabelEncoder", slots.OpType);
        Assert.Equal(OnnxGraphBuilder.MlDomain, slots.Domain);
        var keys = Assert.Single(slots.Attribute, a => a.Name == "keys_strings");
        Assert.Equal(["cat", "dog", "bird"], keys.Strings.Select(s => s.ToStringUtf8()));
    }

    [Fact]
    public void ConvolutionModeExportsTheFlippedKernel()
    {
        var w = Tensor.FromHost([1f, 2, 3, 4, 5, 6, 7, 8], 2, 1, 2, 2);
        float[] Exported(ConvolutionMode mode)
        {
            var b = new OnnxGraphBuilder();
            b.Output(b.Convolution(b.Input("x", [1, 1, 3, 3]), w, null, new ConvolutionOptions { Mode = mode }), "y");
            var init = ModelProto.Parser.ParseFrom(b.ToBytes()).Graph.Initializer.Single();
            return System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(init.RawData.Span).ToArray();
        }
        Assert.Equal([1f, 2, 3, 4, 5, 6, 7, 8], Exported(ConvolutionMode.CrossCorrelation));
        // Each 2x2 kernel flipped in both spatial dimensions: [[1,2],[3,4]] -> [[4,3],[2,1]].
        Assert.Equal([4f, 3, 2, 1, 8, 7, 6, 5], Exported(ConvolutionMode.Convolution));
    }

    // ---- shape tracking ----

    [Fact]
    public void TracksShapesThroughOps()
    {
        var b = new OnnxGraphBuilder();
        string x = b.Input("x", [-1, 3, 10, 11]);
        var w = Tensor.Zeros(new Shape(6, 1, 3, 3));
        string c = b.Convolution(x, w, null, new ConvolutionOptions { Stride = 2, Padding = 1, Groups = 3 });
        Assert.Equal([-1, 6, 5, 6], b.ShapeOf(c));
        string t = b.TransposedConvolution(c, Tensor.Zeros(new Shape(6, 2, 2, 2)), null, new ConvolutionOptions { Stride = 2 });
        Assert.Equal([-1, 2, 10, 12], b.ShapeOf(t));
        string p = b.Pooling(t, new PoolingOptions { Window = 3, Padding = 1, Stride = 2 });
        Assert.Equal([-1, 2, 5, 6], b.ShapeOf(p));
        Assert.Equal([-1, 60], b.ShapeOf(b.Flatten(p)));
        Assert.Equal([-1, 6, 10], b.ShapeOf(b.Reshape(p, [-1, 6, 10])));
        Assert.Equal([-1, 2, 30], b.ShapeOf(b.Reshape(p, [0, 2, 30])));
        Assert.Equal([-1, 5, 6], b.ShapeOf(b.ArgMax(p)));
        Assert.Equal([-1, 1, 5, 6], b.ShapeOf(b.ArgMax(p, 1, keepDims: true)));
    }

    [Fact]
    public void ReshapeToOneRowRunsAtBatchOne()
    {
        // The ML.NET route: [N, K] scores reshaped to [K] give a Vector<Single, K> column (one row per call).
        var b = new OnnxGraphBuilder();
        string x = b.Input("x", [-1, 2, 3]);
        string r = b.Reshape(x, [6]);
        Assert.Equal([6], b.ShapeOf(r));
        b.Output(r, "y");
        var y = Ort.Run(b.ToBytes(), "x", [1, 2, 3, 4, 5, 6], [1, 2, 3], "y")[0];
        Assert.Equal([6], y.Shape);
        Assert.Equal([1f, 2, 3, 4, 5, 6], y.Floats);
    }

    // ---- bad arguments ----

    [Fact]
    public void RejectsBadArgumentsNamingShapes()
    {
        var b = new OnnxGraphBuilder();
        string x = b.Input("x", [-1, 3, 8, 8]);

        var e = Assert.Throws<ArgumentException>(() => b.Convolution(x, Tensor.Zeros(new Shape(4, 2, 3, 3))));
        Assert.Contains("[1, 3, 8, 8]", e.Message);
        Assert.Contains("[4, 2, 3, 3]", e.Message);
        e = Assert.Throws<ArgumentException>(() => b.Dense(x, Tensor.Zeros(new Shape(5, 100))));
        Assert.Equal("w", e.ParamName);
        Assert.Contains("192", e.Message);
        e = Assert.Throws<ArgumentException>(() => b.BatchNormInference(x, Tensor.Zeros(new Shape(4)), Tensor.Zeros(new Shape(3)), Tensor.Zeros(new Shape(3)), Tensor.Zeros(new Shape(3))));
        Assert.Contains("[4]", e.Message);
        Assert.Throws<ArgumentException>(() => b.Input("x", [1, 2]));                 // the name is taken
        Assert.Throws<ArgumentException>(() => b.Input("z", [2, -1]));                // only the batch may be dynamic
        Assert.Throws<ArgumentException>(() => b.Activation("nope", ActivationKind.ReLU));
        Assert.Throws<ArgumentException>(() => b.Reshape(x, [5, -1]));               // drops the dynamic batch
        Assert.Throws<ArgumentException>(() => b.Reshape(x, [0, 7, -1]));            // 192 values per row
        Assert.Throws<ArgumentOutOfRangeException>(() => b.Softmax(x, 4));
        Assert.ThrowsAny<ArgumentException>(() => b.Pooling(x, new PoolingOptions { Window = 2, Padding = 2 }));
        e = Assert.Throws<ArgumentException>(() => b.Output(x, "y", [-1, 3, 8, 9]));
        Assert.Equal("dims", e.ParamName);
        b.SlotNames("Score", ["a", "b"]);
        Assert.Throws<ArgumentException>(() => b.SlotNames("Score", ["a", "b"]));
        Assert.Throws<InvalidOperationException>(() => b.ToBytes());                 // no output yet
    }

    /// <summary>Exports one op on a fixed-shape input and runs it in ORT.</summary>
    private static OrtOutput RunOne(int[] dims, float[] x, Func<OnnxGraphBuilder, string, string> export)
    {
        var b = new OnnxGraphBuilder();
        b.Output(export(b, b.Input("x", dims)), "y");
        return Ort.Run(b.ToBytes(), "x", x, dims, "y")[0];
    }
}
