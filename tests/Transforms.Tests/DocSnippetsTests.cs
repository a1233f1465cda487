using System.Runtime.CompilerServices;
using System.Text.RegularExpressions;
using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ConvNet.Ops;
using Xunit;

namespace MLNet.ConvNet.Transforms.Tests;

/// <summary>
/// The snippets of docs/transforms/*.md, compiled and run here, each followed by asserts on the values its comments
/// state; <see cref="EveryDocSnippetIsInThisFile"/> fails when a page's code no longer matches this file.
/// </summary>
public class DocSnippetsTests
{
    [Fact]
    public void Convolution()
    {
        var ml = new MLContext();
        var data = ml.Data.LoadFromEnumerable(new[]
        {
            new GreyImage { Pixels = [0, 0, 0, 0, 0, 9, 9, 0, 0, 9, 9, 0, 0, 0, 0, 0] },
        });
        var laplacian = Tensor.FromHost([0f, 1, 0, 1, -4, 1, 0, 1, 0], 1, 1, 3, 3);
        var model = ml.Transforms.ApplyConvolution("Edges", laplacian, inputColumnName: "Pixels",
                options: new ConvolutionOptions { Padding = 1 })
            .Fit(data);
        var edges = model.Transform(data).GetColumn<float[]>("Edges").First();
        Console.WriteLine(string.Join(" ", edges));   // 0 9 9 0 9 -18 -18 9 9 -18 -18 9 0 9 9 0

        // Save as ML.NET's own types (an OnnxTransformer), load with a new context: no MLNet.ConvNet needed to run it.
        var stream = new MemoryStream();
        ml.Model.Save(model, data.Schema, stream);
        stream.Position = 0;
        var loaded = new MLContext().Model.Load(stream, out _);
        var reloaded = loaded.Transform(data).GetColumn<float[]>("Edges").First();

        // Or export the ONNX graph itself: input "Pixels" [1, 4, 4], output "Edges" [1, 4, 4].
        var onnx = new MemoryStream();
        model.ExportOnnx(onnx);

        float[] want = [0, 9, 9, 0, 9, -18, -18, 9, 9, -18, -18, 9, 0, 9, 9, 0];
        Assert.Equal(want, edges);
        Assert.Equal(want, reloaded);
        Assert.IsNotType<ConvolutionTransformer>(loaded);
        Assert.True(onnx.Length > 0);
    }

    public sealed class GreyImage
    {
        [VectorType(1, 4, 4)]
        public float[] Pixels { get; set; } = [];
    }

    [Fact]
    public void Pooling()
    {
        var ml = new MLContext();
        var data = ml.Data.LoadFromEnumerable(new[] { new Signal { Values = [1, 2, 3, 4, 5, 6] } });
        float[] Pool(PoolingOptions options) =>
            ml.Transforms.ApplyPooling("Pooled", "Values", options).Fit(data).Transform(data).GetColumn<float[]>("Pooled").First();

        var max = Pool(new PoolingOptions());                                                       // [2, 4, 6]
        var padded = Pool(new PoolingOptions { Padding = 1 });                                      // [1, 3, 5, 6]
        var withPadding = Pool(new PoolingOptions { Padding = 1, Mode = PoolingMode.AverageIncludingPadding });   // [0.5, 2.5, 4.5, 3]
        var withoutPadding = Pool(new PoolingOptions { Padding = 1, Mode = PoolingMode.AverageExcludingPadding }); // [1, 2.5, 4.5, 6]
        Console.WriteLine(string.Join(" | ", new[] { max, padded, withPadding, withoutPadding }.Select(v => string.Join(", ", v))));

        Assert.Equal([2f, 4, 6], max);
        Assert.Equal([1f, 3, 5, 6], padded);
        Assert.Equal([0.5f, 2.5f, 4.5f, 3], withPadding);
        Assert.Equal([1f, 2.5f, 4.5f, 6], withoutPadding);
    }

    public sealed class Signal
    {
        [VectorType(1, 6)]
        public float[] Values { get; set; } = [];
    }

    [Fact]
    public void LocalResponseNormalization()
    {
        var ml = new MLContext();
        var data = ml.Data.LoadFromEnumerable(new[] { new Channels { Values = [1, 2, 2] } });
        var normalized = ml.Transforms.NormalizeLocalResponse("Normalized", "Values", new LrnOptions { Size = 3, Alpha = 1, Beta = 1, K = 1 })
            .Fit(data).Transform(data).GetColumn<float[]>("Normalized").First();
        // y0 = 1 / (1 + (1 + 4) / 3) = 0.375, y1 = 2 / (1 + (1 + 4 + 4) / 3) = 0.5, y2 = 2 / (1 + (4 + 4) / 3) = 0.5454...
        Console.WriteLine(string.Join(", ", normalized));

        Assert.Equal(0.375, normalized[0], 6);
        Assert.Equal(0.5, normalized[1], 6);
        Assert.Equal(6.0 / 11, normalized[2], 6);
    }

    public sealed class Channels
    {
        [VectorType(3, 1)]
        public float[] Values { get; set; } = [];
    }

    [Fact]
    public void BatchNormalization()
    {
        var ml = new MLContext();
        // Two channels of two positions per row: channel 0 holds 1, 3 / 5, 7; channel 1 holds 10, 10 / 20, 20.
        var data = ml.Data.LoadFromEnumerable(new[]
        {
            new TwoChannels { Values = [1, 3, 10, 10] },
            new TwoChannels { Values = [5, 7, 20, 20] },
        });
        var model = ml.Transforms.ApplyBatchNormalization("Normalized", "Values").Fit(data);
        Console.WriteLine($"mean {string.Join(", ", model.GetMean())}, variance {string.Join(", ", model.GetVariance())}");   // 4, 15 and 5, 25
        var normalized = model.Transform(data).GetColumn<float[]>("Normalized").ToArray();
        Console.WriteLine(string.Join(" / ", normalized.Select(r => string.Join(", ", r.Select(v => v.ToString("0.000"))))));

        Assert.Equal([4f, 15], model.GetMean());
        Assert.Equal([5f, 25], model.GetVariance());
        Assert.Equal(-3 / Math.Sqrt(5 + 1e-5), normalized[0][0], 5);
        Assert.Equal(-5 / Math.Sqrt(25 + 1e-5), normalized[0][2], 5);
    }

    public sealed class TwoChannels
    {
        [VectorType(2, 2)]
        public float[] Values { get; set; } = [];
    }

    [Fact]
    public void Activation()
    {
        var ml = new MLContext();
        var data = ml.Data.LoadFromEnumerable(new[] { new Values { X = [-2, -0.5f, 0, 0.5f, 3] } });
        var pipeline = ml.Transforms.ApplyActivation("Relu", ActivationKind.ReLU, "X")
            .Append(ml.Transforms.ApplyActivation("Leaky", ActivationKind.LeakyReLU, "X", alpha: 0.1f));
        var output = pipeline.Fit(data).Transform(data);
        var relu = output.GetColumn<float[]>("Relu").First();     // 0, 0, 0, 0.5, 3
        var leaky = output.GetColumn<float[]>("Leaky").First();   // -0.2, -0.05, 0, 0.5, 3
        Console.WriteLine($"{string.Join(", ", relu)} | {string.Join(", ", leaky)}");

        Assert.Equal([0f, 0, 0, 0.5f, 3], relu);
        Assert.Equal([-0.2f, -0.05f, 0, 0.5f, 3], leaky);
    }

    public sealed class Values
    {
        [VectorType(5)]
        public float[] X { get; set; } = [];
    }

    [Theory]
    [InlineData("Convolution.md")]
    [InlineData("Pooling.md")]
    [InlineData("LocalResponseNormalization.md")]
    [InlineData("BatchNormalization.md")]
    [InlineData("Activation.md")]
    public void EveryDocSnippetIsInThisFile(string page)
    {
        string source = ThisFile();
        string docs = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(source)!, "../../docs/transforms", page));
        Assert.SkipUnless(File.Exists(docs), $"{docs} is not beside the sources (tests run outside a checkout)");
        var blocks = Regex.Matches(File.ReadAllText(docs), "```csharp\n(.*?)```", RegexOptions.Singleline).Select(m => m.Groups[1].Value).ToArray();
        Assert.NotEmpty(blocks);
        string code = Normalize(File.ReadAllText(source));
        foreach (var block in blocks)
            Assert.True(code.Contains(Normalize(block)), $"{page}: this code block is not in {Path.GetFileName(source)}:\n{block}");
    }

    private static string Normalize(string text) => Regex.Replace(text, @"\s+", " ").Trim();

    private static string ThisFile([CallerFilePath] string path = "") => path;
}
