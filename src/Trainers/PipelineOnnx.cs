using System.Globalization;
using System.Text.Json;
using MLNet.ConvNet.Layers;
using MLNet.ConvNet.Onnx;

namespace MLNet.ConvNet.Trainers;

/// <summary>
/// How the pipeline turns its raw input into the network's features, stated so that
/// <see cref="PipelineOnnx.Export(ConvNetTransformer, InputNormalization, Stream)"/> can put it into the ONNX graph:
/// <c>feature = (raw - Offset) * Scale</c>, element by element, with <see cref="Offset"/> and <see cref="Scale"/> shaped
/// <see cref="ConstantShape"/> and broadcast over one sample (e.g. <c>[C, 1, 1]</c>: one pair per channel).
/// </summary>
/// <remarks>
/// This is the form of ML.NET's <c>ExtractPixels(offsetImage, scaleImage)</c> (pixels 0..255 in, per image) and of its
/// affine normalizers (<c>NormalizeMeanVariance</c>, <c>NormalizeMinMax</c>: per slot, <see cref="ConstantShape"/> the
/// whole sample shape). ML.NET does not make a fitted normalizer's column mapping or ExtractPixels' options public, so
/// the pipeline's author states them here (the one-call image classifier of MLNet.ConvNet.Vision does it itself).
/// </remarks>
public sealed class InputNormalization
{
    /// <summary>The ONNX graph input's name ("image").</summary>
    public string InputName { get; init; } = "image";

    /// <summary>Subtracted first, one value per element of <see cref="ConstantShape"/> (e.g. the per-channel mean of 0..255 pixels).</summary>
    public required float[] Offset { get; init; }

    /// <summary>Multiplied next, one value per element of <see cref="ConstantShape"/> (e.g. 1 / the per-channel standard deviation).</summary>
    public required float[] Scale { get; init; }

    /// <summary>The constants' shape, broadcast over one sample <c>[C, H, W]</c>: <c>[C, 1, 1]</c> per channel, <c>[C, H, W]</c> per pixel.</summary>
    public required int[] ConstantShape { get; init; }

    /// <summary>Facts written into the model's metadata_props beside the library's own (colour mode, resizing, ...): key, value.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; init; } = new Dictionary<string, string>();

    /// <summary>
    /// Per-channel normalisation of raw pixels: <c>(pixel - mean[c]) / std[c]</c>, written as offset = mean and
    /// scale = 1 / std (in float, as ExtractPixels' <c>scaleImage = 1f / std</c> would be given).
    /// </summary>
    public static InputNormalization PerChannel(IReadOnlyList<float> mean, IReadOnlyList<float> std, string inputName = "image")
    {
        ArgumentNullException.ThrowIfNull(mean);
        ArgumentNullException.ThrowIfNull(std);
        if (mean.Count != std.Count || mean.Count == 0)
            throw new ArgumentException($"Give one mean and one standard deviation per channel; got {mean.Count} means and {std.Count} deviations.", nameof(std));
        return new InputNormalization
        {
            InputName = inputName,
            Offset = mean.ToArray(),
            Scale = std.Select(s => 1f / s).ToArray(),
            ConstantShape = [mean.Count, 1, 1],
        };
    }
}

/// <summary>
/// Whole-pipeline ONNX export of a trained ConvNet: raw pixels in, the pipeline's normalisation as the graph's first
/// nodes, then the network and softmax; class names and preprocessing facts in the model's metadata_props.
/// </summary>
/// <remarks>
/// <para>ML.NET's own <c>mlContext.Model.ConvertToOnnx</c> cannot see inside a third-party transformer: on a pipeline
/// holding a <see cref="ConvNetTransformer"/> it writes a small graph without the network and raises no error
/// (docs/onnx-export.md). Use this export instead.</para>
/// <para>The graph: input <see cref="InputNormalization.InputName"/> <c>[N, C, H, W]</c> float (raw values, e.g. pixels
/// 0..255 of the resized image); <c>Sub</c> and <c>Mul</c> by the normalisation constants; the network; outputs
/// <c>Score</c> <c>[N, K]</c> (softmax probabilities) and <c>PredictedClassIndex</c> <c>[N]</c> (int64, 0-based into
/// the class names). Metadata keys (all text): <c>class_names</c> (JSON array, Score's slot order), <c>input_name</c>,
/// <c>input_shape</c> (JSON <c>[C, H, W]</c>), <c>input_layout</c> ("NCHW"), <c>normalization</c> (the formula),
/// <c>normalization_offset</c>, <c>normalization_scale</c> (JSON arrays), <c>normalization_shape</c>, and the entries
/// of <see cref="InputNormalization.Metadata"/>.</para>
/// </remarks>
public static class PipelineOnnx
{
    /// <summary>The metadata key of the class names (a JSON array of strings in Score's slot order).</summary>
    public const string ClassNamesKey = "class_names";

    /// <summary>Writes <paramref name="model"/>'s network behind <paramref name="normalization"/> as one ONNX model (see the class remarks).</summary>
    public static void Export(ConvNetTransformer model, InputNormalization normalization, Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        stream.Write(ToBytes(model, normalization));
    }

    /// <summary>Writes <see cref="Export(ConvNetTransformer, InputNormalization, Stream)"/>'s model to the file <paramref name="path"/>.</summary>
    public static void Export(ConvNetTransformer model, InputNormalization normalization, string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        using var f = File.Create(path);
        Export(model, normalization, f);
    }

    /// <summary>The serialized model of <see cref="Export(ConvNetTransformer, InputNormalization, Stream)"/>.</summary>
    public static byte[] ToBytes(ConvNetTransformer model, InputNormalization normalization)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(normalization);
        var sample = model.InputShape.ToArray();
        var b = new OnnxGraphBuilder();
        string raw = b.Input(normalization.InputName, [-1, .. sample]);
        string features;
        try { features = b.Normalize(raw, normalization.Offset, normalization.Scale, normalization.ConstantShape); }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"The normalisation does not fit the network's samples {model.InputShape}: {e.Message}", nameof(normalization), e);
        }
        string probabilities = b.Softmax(model.Network.ExportOnnx(b, features), axis: 1);
        b.Output(probabilities, MLNetGraph.ScoreColumn);
        b.SlotNames(MLNetGraph.ScoreColumn, model.ClassNames);
        b.Output(b.ArgMax(probabilities, axis: 1, keepDims: false), "PredictedClassIndex");

        b.Metadata(ClassNamesKey, JsonSerializer.Serialize(model.ClassNames));
        b.Metadata("input_name", normalization.InputName);
        b.Metadata("input_shape", JsonSerializer.Serialize(sample));
        b.Metadata("input_layout", "NCHW");
        b.Metadata("normalization", "feature = (input - normalization_offset) * normalization_scale, constants of shape normalization_shape broadcast over [C, H, W]");
        b.Metadata("normalization_offset", Json(normalization.Offset));
        b.Metadata("normalization_scale", Json(normalization.Scale));
        b.Metadata("normalization_shape", JsonSerializer.Serialize(normalization.ConstantShape));
        foreach (var (key, value) in normalization.Metadata) b.Metadata(key, value);
        return b.ToBytes();
    }

    /// <summary>Floats as a JSON array in round-trip form ("R"), so a reader gets the exact constants.</summary>
    private static string Json(float[] values) =>
        "[" + string.Join(", ", values.Select(v => v.ToString("R", CultureInfo.InvariantCulture))) + "]";
}
