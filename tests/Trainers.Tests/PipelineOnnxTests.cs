using System.Collections.Immutable;
using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.Transforms;
using Xunit;

namespace MLNet.ConvNet.Trainers.Tests;

/// <summary>
/// PipelineOnnx on a hand-built pipeline (raw values -> NormalizeMeanVariance -> ConvNet), the route docs/onnx-export.md
/// gives: the normaliser's fitted offset and scale into the graph, ONNX Runtime on the raw values against ML.NET's scores.
/// </summary>
public sealed class PipelineOnnxTests
{
    private sealed class RawRow
    {
        [VectorType(1, 8, 8)]
        public float[] Pixels { get; set; } = [];
        public string Label { get; set; } = "";
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]   // fixZero: ML.NET keeps no offset (an empty array)
    public void Raw_values_through_the_exported_normalisation_score_as_the_pipeline(bool fixZero)
    {
        var rng = new Rng(9);
        // Class "left" when the left half is brighter: a per-pixel pattern on 0..255 values.
        var rows = Enumerable.Range(0, 240).Select(i =>
        {
            var p = Enumerable.Range(0, 64).Select(_ => (float)Math.Round(rng.NextDouble() * 200)).ToArray();
            bool left = i % 2 == 0;
            for (int y = 0; y < 8; y++) for (int x = 0; x < 4; x++) p[y * 8 + (left ? x : x + 4)] += 55;
            return new RawRow { Pixels = p, Label = left ? "left" : "right" };
        }).ToArray();
        var ml = new MLContext(seed: 1);
        var data = ml.Transforms.Conversion.MapValueToKey("Label").Fit(ml.Data.LoadFromEnumerable(rows)).Transform(ml.Data.LoadFromEnumerable(rows));
        var options = Tiny.Options(epochs: 3);
        var model = ml.Transforms.NormalizeMeanVariance("Features", "Pixels", fixZero: fixZero)
            .Append(ml.MulticlassClassification.Trainers.ConvNet(options)).Fit(data);

        // The docs' recipe: the fitted normaliser's parameters (y = (x - offset) * scale, per slot).
        var normalizer = (NormalizingTransformer)model.First();
        var affine = (NormalizingTransformer.AffineNormalizerModelParameters<ImmutableArray<float>>)normalizer.GetNormalizerModelParameters(0);
        Assert.Equal(fixZero, affine.Offset.IsDefaultOrEmpty);
        var normalization = new InputNormalization
        {
            InputName = "Pixels",
            Offset = affine.Offset.IsDefaultOrEmpty ? new float[64] : affine.Offset.ToArray(),
            Scale = affine.Scale.ToArray(),
            ConstantShape = [1, 8, 8],
            Metadata = new Dictionary<string, string> { ["source"] = "test" },
        };
        var bytes = PipelineOnnx.ToBytes(model.LastTransformer, normalization);

        var scores = model.Transform(data).GetColumn<float[]>("Score").Select(s => s.ToArray()).ToArray();
        using var session = new InferenceSession(bytes);
        var raw = rows.SelectMany(r => r.Pixels).ToArray();
        using var input = OrtValue.CreateTensorValueFromMemory(raw, [rows.Length, 1, 8, 8]);
        using var outputs = session.Run(new RunOptions(), ["Pixels"], [input], ["Score"]);
        var ort = outputs[0].GetTensorDataAsSpan<float>().ToArray();
        double worst = 0;
        for (int r = 0; r < rows.Length; r++)
            for (int k = 0; k < 2; k++) worst = Math.Max(worst, Math.Abs(scores[r][k] - ort[r * 2 + k]));
        Assert.True(worst <= 1e-5, $"largest |ML.NET - ONNX Runtime| score difference {worst}");
        // Not a trivial agreement: the network learnt something from the normalised values.
        Assert.True(scores.Count(s => Math.Abs(s[0] - s[1]) > 0.2) > rows.Length / 2, "the scores barely depend on the input");

        var meta = session.ModelMetadata.CustomMetadataMap;
        Assert.Equal(model.LastTransformer.ClassNames, JsonSerializer.Deserialize<string[]>(meta[PipelineOnnx.ClassNamesKey])!);
        Assert.Equal([1, 8, 8], JsonSerializer.Deserialize<int[]>(meta["input_shape"])!);
        Assert.Equal(normalization.Scale, JsonSerializer.Deserialize<float[]>(meta["normalization_scale"])!);
        Assert.Equal("test", meta["source"]);
    }

    [Fact]
    public void A_normalisation_that_does_not_fit_the_network_is_named()
    {
        var ml = new MLContext(seed: 1);
        var model = ml.MulticlassClassification.Trainers.ConvNet(Tiny.Options()).Fit(Tiny.Data(ml, 100));
        var e = Assert.Throws<ArgumentException>(() => PipelineOnnx.ToBytes(model, InputNormalization.PerChannel([0f, 0, 0], [1f, 1, 1])));
        Assert.Contains("[1, 28, 28]", e.Message);
        Assert.Contains("[3, 1, 1]", e.Message);
    }
}
