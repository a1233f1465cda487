using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms.Image;
using MLNet.ConvNet.Trainers;

namespace MLNet.ConvNet.Vision;

/// <summary>
/// A fitted <see cref="ImageClassifierEstimator"/>: image path in; Features, Score, PredictedLabel (key) and
/// PredictedClass (text) out. Saves with <c>mlContext.Model.Save</c> (the ML.NET pipeline, <see cref="Model"/>) and
/// exports to ONNX as one model from raw pixels (<see cref="ExportOnnx(Stream)"/>).
/// </summary>
public sealed class ImageClassifierTransformer : ITransformer
{
    internal ImageClassifierTransformer(TransformerChain<ITransformer> model, ConvNetTransformer convNet, int width, int height,
        ImageColorMode colorMode, ImageResizingEstimator.ResizingKind resizing, float[] mean, float[] std, MulticlassClassificationMetrics? holdoutMetrics)
    {
        Model = model; ConvNet = convNet; ImageWidth = width; ImageHeight = height; ColorMode = colorMode; Resizing = resizing;
        ChannelMean = mean; ChannelStd = std; HoldoutMetrics = holdoutMetrics;
    }

    /// <summary>The fitted ML.NET pipeline: LoadImages, ResizeImages, [ConvertToGrayscale], ExtractPixels per channel, Concatenate, the ConvNet, MapKeyToValue.</summary>
    public TransformerChain<ITransformer> Model { get; }

    /// <summary>The trained network's transformer (history, <see cref="ConvNetTransformer.Network"/>, network-only ONNX export).</summary>
    public ConvNetTransformer ConvNet { get; }

    /// <summary>The class names, in Score's slot order.</summary>
    public IReadOnlyList<string> ClassNames => ConvNet.ClassNames;

    /// <summary>The width images are resized to.</summary>
    public int ImageWidth { get; }

    /// <summary>The height images are resized to.</summary>
    public int ImageHeight { get; }

    /// <summary>Gray (one channel) or Rgb (three), as chosen at training.</summary>
    public ImageColorMode ColorMode { get; }

    /// <summary>How images of another aspect ratio are resized.</summary>
    public ImageResizingEstimator.ResizingKind Resizing { get; }

    /// <summary>Each channel's mean of the training pixels (0..255), subtracted before the network.</summary>
    public IReadOnlyList<float> ChannelMean { get; }

    /// <summary>Each channel's standard deviation of the training pixels (0..255); the pixels are multiplied by its inverse (<c>1f / std</c>).</summary>
    public IReadOnlyList<float> ChannelStd { get; }

    /// <summary>Metrics on the held-out images (null when HoldoutFraction was 0).</summary>
    public MulticlassClassificationMetrics? HoldoutMetrics { get; }

    /// <summary>True: PredictionEngine works.</summary>
    public bool IsRowToRowMapper => true;

    /// <inheritdoc/>
    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema) => Model.GetOutputSchema(inputSchema);

    /// <inheritdoc/>
    public IDataView Transform(IDataView input) => Model.Transform(input);

    /// <inheritdoc/>
    public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema) => ((ITransformer)Model).GetRowToRowMapper(inputSchema);

    /// <summary>Saves <see cref="Model"/> (after <c>Model.Load</c> the model is that pipeline, with the ConvNet as its ONNX twin).</summary>
    void ICanSaveModel.Save(ModelSaveContext ctx) => ((ICanSaveModel)Model).Save(ctx);

    /// <summary>
    /// The normalisation as <see cref="PipelineOnnx"/> writes it: per channel, (pixel - mean) * (1f / std), with the
    /// resizing and colour facts as metadata.
    /// </summary>
    public InputNormalization Normalization => new()
    {
        InputName = "image",
        Offset = ChannelMean.ToArray(),
        Scale = ChannelStd.Select(s => 1f / s).ToArray(),
        ConstantShape = [ChannelMean.Count, 1, 1],
        Metadata = new Dictionary<string, string>
        {
            ["image_width"] = ImageWidth.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["image_height"] = ImageHeight.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["color_mode"] = ColorMode == ImageColorMode.Gray ? "gray" : "rgb",
            ["channels"] = ColorMode == ImageColorMode.Gray ? "[\"gray\"]" : "[\"red\", \"green\", \"blue\"]",
            ["pixel_range"] = "0..255 (float)",
            ["resizing"] = Resizing.ToString(),
            ["preprocessing"] = $"decode; resize to {ImageWidth} x {ImageHeight} ({Resizing}); " +
                (ColorMode == ImageColorMode.Gray ? "convert to grey, one plane" : "red, green and blue planes") +
                " of 0..255 floats, [N, C, H, W]; the graph normalises",
            ["mean"] = JsonSerializer.Serialize(ChannelMean),
            ["std"] = JsonSerializer.Serialize(ChannelStd),
        },
    };

    /// <summary>
    /// Writes the whole classifier after image decoding and resizing as one ONNX model: input <c>image</c>
    /// <c>[N, C, H, W]</c> float pixels 0..255 (red, green, blue planes, or one grey plane); the per-channel
    /// normalisation as its first nodes; the network; outputs Score <c>[N, K]</c> and PredictedClassIndex <c>[N]</c>; class
    /// names and preprocessing facts in metadata_props (see <see cref="PipelineOnnx"/> and docs/onnx-export.md).
    /// </summary>
    public void ExportOnnx(Stream stream) => PipelineOnnx.Export(ConvNet, Normalization, stream);

    /// <summary>Writes <see cref="ExportOnnx(Stream)"/>'s model to the file <paramref name="path"/>.</summary>
    public void ExportOnnx(string path) => PipelineOnnx.Export(ConvNet, Normalization, path);
}
