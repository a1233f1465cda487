using Microsoft.ML.OnnxRuntime;
using MLNet.ConvNet.Onnx;
using MLNet.ConvNet.Tests.TestKit;
using Xunit;

namespace MLNet.ConvNet.Tests;

/// <summary>OnnxGraphBuilder.Normalize (per channel and per pixel) run in ONNX Runtime against a float loop, and Metadata read back.</summary>
public class OnnxNormalizeTests
{
    [Theory]
    [InlineData(new[] { 3, 1, 1 })]   // per channel
    [InlineData(new[] { 3, 4, 5 })]   // per pixel (NormalizeMeanVariance's per-slot form)
    [InlineData(new[] { 1, 4, 1 })]   // per row, broadcast over channels and columns
    public void Normalize_subtracts_then_multiplies_with_broadcast_constants(int[] constantDims)
    {
        var rng = new Rng(3);
        int[] dims = [2, 3, 4, 5];
        var x = Enumerable.Range(0, 2 * 3 * 4 * 5).Select(_ => (float)(rng.NextDouble() * 255)).ToArray();
        int count = constantDims.Aggregate(1, (a, d) => a * d);
        var offset = Enumerable.Range(0, count).Select(_ => (float)(rng.NextDouble() * 128)).ToArray();
        var scale = Enumerable.Range(0, count).Select(_ => (float)(0.01 + rng.NextDouble() / 20)).ToArray();

        var b = new OnnxGraphBuilder();
        string input = b.Input("x", [-1, 3, 4, 5]);
        b.Output(b.Normalize(input, offset, scale, constantDims), "y");
        var y = Ort.Run(b.ToBytes(), "x", x, dims, "y")[0];

        Assert.Equal(dims, y.Shape);
        for (int n = 0; n < 2; n++)
            for (int c = 0; c < 3; c++)
                for (int h = 0; h < 4; h++)
                    for (int w = 0; w < 5; w++)
                    {
                        // The constant's index: each of its dimensions of size 1 is broadcast (index 0).
                        int k = ((constantDims[0] == 1 ? 0 : c) * constantDims[1] + (constantDims[1] == 1 ? 0 : h)) * constantDims[2] + (constantDims[2] == 1 ? 0 : w);
                        int i = ((n * 3 + c) * 4 + h) * 5 + w;
                        float want = (x[i] - offset[k]) * scale[k]; // float, in the order ML.NET's ExtractPixels uses
                        Assert.Equal(want, y.Floats[i]);
                    }
    }

    [Fact]
    public void Normalize_rejects_constants_that_do_not_fit_naming_both_shapes()
    {
        var b = new OnnxGraphBuilder();
        string x = b.Input("x", [-1, 3, 4, 5]);
        Assert.Contains("[2, 1, 1]", Assert.Throws<ArgumentException>(() => b.Normalize(x, [0f, 0], [1f, 1], [2, 1, 1])).Message);
        Assert.Contains("need 3 values", Assert.Throws<ArgumentException>(() => b.Normalize(x, [0f], [1f], [3, 1, 1])).Message);
        Assert.Contains("rank", Assert.Throws<ArgumentException>(() => b.Normalize(x, [0f, 0, 0], [1f, 1, 1], [3, 1])).Message);
    }

    [Fact]
    public void Metadata_reaches_OnnxRuntime_and_a_key_is_set_once()
    {
        var b = new OnnxGraphBuilder();
        b.Output(b.Scale(b.Input("x", [-1, 2]), 2f), "y");
        b.Metadata("class_names", "[\"a\", \"b\"]");
        b.Metadata("color_mode", "gray");
        Assert.Contains("already set", Assert.Throws<ArgumentException>(() => b.Metadata("color_mode", "rgb")).Message);
        using var session = new InferenceSession(b.ToBytes());
        var map = session.ModelMetadata.CustomMetadataMap;
        Assert.Equal("[\"a\", \"b\"]", map["class_names"]);
        Assert.Equal("gray", map["color_mode"]);
    }
}
