using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms.Image;
using MLNet.ConvNet.Trainers;

namespace MLNet.ConvNet.Vision;

/// <summary>The colour channels the classifier feeds the network.</summary>
public enum ImageColorMode
{
    /// <summary>Gray when every training image is grey (the data's IsGray column, from <see cref="ImageFolder.Load"/>), else Rgb.</summary>
    Auto,
    /// <summary>One channel: each image converted to grey (ML.NET's ConvertToGrayscale), then its red plane.</summary>
    Gray,
    /// <summary>Three channels, red, green and blue planes (alpha dropped).</summary>
    Rgb,
}

/// <summary>
/// Options of <see cref="ImageClassifierEstimator"/>; each summary states the default. The network, epochs, learning
/// rate and the rest are <see cref="Trainer"/>'s (<see cref="ConvNetTrainer.Options"/>).
/// </summary>
public sealed class ImageClassifierOptions
{
    /// <summary>ImagePathColumnName = "ImagePath": text, the image file's path (full, or relative to the working directory).</summary>
    public string ImagePathColumnName { get; set; } = ImageFolder.Columns.ImagePath;

    /// <summary>LabelColumnName = "Label": the class, as text (e.g. the sub-folder's name) or any type MapValueToKey takes.</summary>
    public string LabelColumnName { get; set; } = ImageFolder.Columns.Label;

    /// <summary>
    /// ImageWidth = 0: images are resized to this width. 0 takes the most common size among the training images (the
    /// data's Width and Height columns, which <see cref="ImageFolder.Load"/> gives).
    /// </summary>
    public int ImageWidth { get; set; }

    /// <summary>ImageHeight = 0: as <see cref="ImageWidth"/>, for the height.</summary>
    public int ImageHeight { get; set; }

    /// <summary>Resizing = Fill: how ML.NET's ResizeImages fits an image of another aspect ratio (Fill stretches; IsoCrop and IsoPad keep the ratio).</summary>
    public ImageResizingEstimator.ResizingKind Resizing { get; set; } = ImageResizingEstimator.ResizingKind.Fill;

    /// <summary>ColorMode = Auto (see <see cref="ImageColorMode"/>).</summary>
    public ImageColorMode ColorMode { get; set; } = ImageColorMode.Auto;

    /// <summary>
    /// HoldoutFraction = 0.2: the fraction in [0, 1) of the images held out (seeded by <see cref="ConvNetTrainer.Options.Seed"/>):
    /// validation after every epoch and the <see cref="ImageClassifierTransformer.HoldoutMetrics"/>; 0 trains on every image.
    /// </summary>
    public double HoldoutFraction { get; set; } = 0.2;

    /// <summary>NormalizationImages = 2000: at most this many training images (evenly spaced over the rows) are read to measure each channel's mean and standard deviation.</summary>
    public int NormalizationImages { get; set; } = 2000;

    /// <summary>
    /// Trainer = defaults of <see cref="ConvNetTrainer.Options"/>: the network and training options. Its
    /// FeatureColumnName, LabelColumnName, InputShape and ValidationSet are set by the classifier (leave them at their defaults).
    /// </summary>
    public ConvNetTrainer.Options Trainer { get; set; } = new();

    /// <summary>Log = null: receives the chosen size, colour mode and normalisation, then the trainer's lines.</summary>
    public Action<string>? Log { get; set; }
}

/// <summary>
/// Image classification in one call: from a table of image paths and classes (what <see cref="ImageFolder.Load"/> gives)
/// to a fitted pipeline <c>LoadImages -> ResizeImages -> [ConvertToGrayscale] -> ExtractPixels per channel, normalised
/// (pixel - mean) / std -> ConvNet -> PredictedClass</c>, with a holdout split and its metrics. Made by
/// <c>mlContext.MulticlassClassification.Trainers.ConvNetImageClassifier(options)</c>.
/// </summary>
/// <remarks>
/// <para>Fit: holds out <see cref="ImageClassifierOptions.HoldoutFraction"/> of the rows; picks the size and colour mode
/// (options, or the data's Width/Height/IsGray columns); measures each channel's mean and standard deviation on up to
/// <see cref="ImageClassifierOptions.NormalizationImages"/> training images (pixels 0..255 after resizing); trains the
/// ConvNet (validating on the holdout after every epoch); evaluates the holdout.</para>
/// <para>The fitted model needs only the image path column: the label's text-to-key mapping is done for training
/// outside it, and its PredictedClass column gives the class as text. It is made of ML.NET's own transformers and a
/// <see cref="ConvNetTransformer"/>, so <c>mlContext.Model.Save</c> and <c>Load</c> work as for any ConvNet pipeline;
/// <see cref="ImageClassifierTransformer.ExportOnnx(Stream)"/> writes raw pixels -> normalisation -> network as one ONNX
/// model with the class names and preprocessing facts in its metadata.</para>
/// </remarks>
public sealed class ImageClassifierEstimator : IEstimator<ImageClassifierTransformer>
{
    /// <summary>The feature column the classifier makes: the normalised pixels, <c>[C, H, W]</c> flat.</summary>
    public const string FeatureColumnName = "Features";
    /// <summary>The output column of predicted classes as text.</summary>
    public const string PredictedClassColumnName = "PredictedClass";
    private const string LabelKey = "ConvNet.LabelKey", Image = "ConvNet.Image", Raw = "ConvNet.RawPixels";

    private readonly ImageClassifierOptions _options;

    /// <summary>A classifier with <paramref name="options"/>, checked here (an out-of-range option is named).</summary>
    public ImageClassifierEstimator(ImageClassifierOptions? options = null)
    {
        options ??= new ImageClassifierOptions();
        static void Require(bool ok, string option, object? value, string rule)
        {
            if (!ok) throw new ArgumentOutOfRangeException($"options.{option}", value, $"ImageClassifier option {option} = {value ?? "null"}: {rule}");
        }
        Require(!string.IsNullOrEmpty(options.ImagePathColumnName), nameof(options.ImagePathColumnName), options.ImagePathColumnName, "give the image path column's name.");
        Require(!string.IsNullOrEmpty(options.LabelColumnName), nameof(options.LabelColumnName), options.LabelColumnName, "give the label column's name.");
        Require(options.ImageWidth >= 0, nameof(options.ImageWidth), options.ImageWidth, "must be >= 0 (0: the most common width).");
        Require(options.ImageHeight >= 0, nameof(options.ImageHeight), options.ImageHeight, "must be >= 0 (0: the most common height).");
        Require(Enum.IsDefined(options.ColorMode), nameof(options.ColorMode), options.ColorMode, "unknown colour mode.");
        Require(options.HoldoutFraction >= 0 && options.HoldoutFraction < 1, nameof(options.HoldoutFraction), options.HoldoutFraction, "must be in [0, 1).");
        Require(options.NormalizationImages >= 1, nameof(options.NormalizationImages), options.NormalizationImages, "must be >= 1.");
        Require(options.Trainer is not null, nameof(options.Trainer), null, "give the ConvNet options (new ConvNetTrainer.Options()).");
        options.Trainer!.Validate();
        _options = options;
    }

    /// <summary>The input's columns plus Features, Score, PredictedLabel and PredictedClass; throws naming a missing or mistyped column.</summary>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        CheckColumns(inputSchema.Select(c => (c.Name, c.ItemType, c.Kind == SchemaShape.Column.VectorKind.Scalar)));
        // SchemaShape's column constructor is internal: let the same estimators describe the columns (the size is a placeholder).
        var ml = new MLContext(seed: 0);
        return Pipeline(ml, 8, 8, ImageColorMode.Gray, [0f], [1f])
            .Append(ml.Transforms.Conversion.MapValueToKey(LabelKey, _options.LabelColumnName))
            .Append(Trainer(ml, [1, 8, 8], null))
            .Append(ml.Transforms.Conversion.MapKeyToValue(PredictedClassColumnName, "PredictedLabel"))
            .Append(ml.Transforms.DropColumns(LabelKey))
            .GetOutputSchema(inputSchema);
    }

    /// <summary>Trains (see the class remarks) and returns the fitted pipeline with its holdout metrics.</summary>
    public ImageClassifierTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var o = _options;
        CheckColumns(input.Schema.Select(c => (c.Name, c.Type is VectorDataViewType v ? v.ItemType : c.Type, c.Type is not VectorDataViewType)));
        var ml = new MLContext(o.Trainer.Seed);

        IDataView train = input;
        IDataView? holdout = null;
        if (o.HoldoutFraction > 0)
        {
            var split = ml.Data.TrainTestSplit(input, o.HoldoutFraction, seed: o.Trainer.Seed);
            (train, holdout) = (split.TrainSet, split.TestSet);
        }
        var (width, height) = Size(train);
        var mode = Mode(train);
        var (mean, std) = ChannelStatistics(ml, train, width, height, mode);
        o.Log?.Invoke($"ImageClassifier: images resized to {width} x {height} ({o.Resizing}), colour mode {mode}, per-channel mean [{string.Join(", ", mean)}] and std [{string.Join(", ", std)}] of pixels 0..255.");

        // The label becomes a key only for training and evaluation; the model itself needs just the image path.
        var keys = ml.Transforms.Conversion.MapValueToKey(LabelKey, o.LabelColumnName, keyOrdinality: Microsoft.ML.Transforms.ValueToKeyMappingEstimator.KeyOrdinality.ByValue).Fit(input);
        var preprocessing = Pipeline(ml, width, height, mode, mean, std).Fit(keys.Transform(train));
        int channels = mode == ImageColorMode.Gray ? 1 : 3;
        IDataView? validation = holdout is null ? null : preprocessing.Transform(keys.Transform(holdout));
        var convNet = Trainer(ml, [channels, height, width], validation).Fit(preprocessing.Transform(keys.Transform(train)));
        var scored = convNet.Transform(preprocessing.Transform(keys.Transform(train)));
        var toText = ml.Transforms.Conversion.MapKeyToValue(PredictedClassColumnName, "PredictedLabel").Fit(scored);
        var chain = new TransformerChain<ITransformer>(preprocessing, convNet, toText);

        MulticlassClassificationMetrics? metrics = holdout is null ? null
            : ml.MulticlassClassification.Evaluate(chain.Transform(keys.Transform(holdout)), labelColumnName: LabelKey);
        if (metrics is not null) o.Log?.Invoke($"ImageClassifier: holdout accuracy {metrics.MicroAccuracy:F4} (macro {metrics.MacroAccuracy:F4}, log-loss {metrics.LogLoss:F4}).");
        return new ImageClassifierTransformer(chain, convNet, width, height, mode, o.Resizing, mean, std, metrics);
    }

    /// <summary>Image path -> resized (grey) image -> one normalised pixel plane per channel -> Features (flat [C, H, W]).</summary>
    private IEstimator<ITransformer> Pipeline(MLContext ml, int width, int height, ImageColorMode mode, float[] mean, float[] std)
    {
        IEstimator<ITransformer> p = ml.Transforms.LoadImages(Image, imageFolder: "", _options.ImagePathColumnName)
            .Append(ml.Transforms.ResizeImages(Image, width, height, resizing: _options.Resizing));
        if (mode == ImageColorMode.Gray) p = p.Append(ml.Transforms.ConvertToGrayscale(Image));
        // ExtractPixels has one offset and scale per call: one call per channel, then the planes side by side (R, G, B).
        var bits = mode == ImageColorMode.Gray
            ? new[] { ImagePixelExtractingEstimator.ColorBits.Red }
            : [ImagePixelExtractingEstimator.ColorBits.Red, ImagePixelExtractingEstimator.ColorBits.Green, ImagePixelExtractingEstimator.ColorBits.Blue];
        var planes = new string[bits.Length];
        for (int c = 0; c < bits.Length; c++)
        {
            planes[c] = $"ConvNet.Plane{c}";
            p = p.Append(ml.Transforms.ExtractPixels(planes[c], Image, bits[c], offsetImage: mean[c], scaleImage: 1f / std[c]));
        }
        return p.Append(ml.Transforms.Concatenate(FeatureColumnName, planes))
            .Append(ml.Transforms.DropColumns([Image, .. planes]));
    }

    private ConvNetTrainer Trainer(MLContext ml, int[] inputShape, IDataView? validation)
    {
        // A copy of every option the user set (all of them, so an option added to the trainer later is not lost),
        // then the four the classifier owns.
        var copy = new ConvNetTrainer.Options();
        foreach (var property in typeof(ConvNetTrainer.Options).GetProperties().Where(p => p.CanRead && p.CanWrite))
            property.SetValue(copy, property.GetValue(_options.Trainer));
        copy.LabelColumnName = LabelKey;
        copy.FeatureColumnName = FeatureColumnName;
        copy.InputShape = inputShape;
        copy.ValidationSet = validation;
        if (validation is not null) copy.ValidationFraction = 0;
        copy.Log ??= _options.Log;
        return ml.MulticlassClassification.Trainers.ConvNet(copy);
    }

    private void CheckColumns(IEnumerable<(string Name, DataViewType ItemType, bool Scalar)> columns)
    {
        var all = columns.ToArray();
        var path = all.LastOrDefault(c => c.Name == _options.ImagePathColumnName);
        if (path.Name is null || path.ItemType is not TextDataViewType || !path.Scalar)
            throw new ArgumentOutOfRangeException("ImagePathColumnName", _options.ImagePathColumnName,
                $"Image path column '{_options.ImagePathColumnName}' " + (path.Name is null ? "is not in the data" : $"has type {path.ItemType}; expected text") +
                $"; the columns are: {string.Join(", ", all.Select(c => c.Name))}. (mlContext.Data.LoadFromImageFolder gives ImagePath and Label.)");
        if (!all.Any(c => c.Name == _options.LabelColumnName))
            throw new ArgumentOutOfRangeException("LabelColumnName", _options.LabelColumnName,
                $"Label column '{_options.LabelColumnName}' is not in the data; the columns are: {string.Join(", ", all.Select(c => c.Name))}.");
    }

    /// <summary>The options' size, else the most common one among the training rows' Width and Height columns.</summary>
    private (int Width, int Height) Size(IDataView train)
    {
        var o = _options;
        if (o.ImageWidth > 0 && o.ImageHeight > 0) return (o.ImageWidth, o.ImageHeight);
        if (train.Schema.GetColumnOrNull(ImageFolder.Columns.Width) is not { Type: var wt } || wt != NumberDataViewType.Int32 ||
            train.Schema.GetColumnOrNull(ImageFolder.Columns.Height) is not { Type: var ht } || ht != NumberDataViewType.Int32)
            throw new ArgumentException("ImageClassifier options ImageWidth and ImageHeight are 0 (the most common size), which needs the data's Int32 columns " +
                $"'{ImageFolder.Columns.Width}' and '{ImageFolder.Columns.Height}' (mlContext.Data.LoadFromImageFolder gives them); set both options instead.", "options");
        var sizes = train.GetColumn<int>(ImageFolder.Columns.Width).Zip(train.GetColumn<int>(ImageFolder.Columns.Height));
        var common = sizes.GroupBy(s => s).OrderByDescending(g => g.Count()).ThenByDescending(g => g.Key.First * g.Key.Second).First().Key;
        return (o.ImageWidth > 0 ? o.ImageWidth : common.First, o.ImageHeight > 0 ? o.ImageHeight : common.Second);
    }

    /// <summary>The options' colour mode, else Gray when the IsGray column says every training image is grey.</summary>
    private ImageColorMode Mode(IDataView train)
    {
        if (_options.ColorMode != ImageColorMode.Auto) return _options.ColorMode;
        if (train.Schema.GetColumnOrNull(ImageFolder.Columns.IsGray) is not { Type: BooleanDataViewType })
            throw new ArgumentException($"ImageClassifier option ColorMode = Auto needs the data's Boolean column '{ImageFolder.Columns.IsGray}' (mlContext.Data.LoadFromImageFolder gives it); set ColorMode to Gray or Rgb instead.", "options");
        return train.GetColumn<bool>(ImageFolder.Columns.IsGray).All(g => g) ? ImageColorMode.Gray : ImageColorMode.Rgb;
    }

    /// <summary>
    /// Each channel's mean and standard deviation (population, in double; 1 where an image set has one value) of the
    /// pixels 0..255 of up to NormalizationImages training images, resized and colour-converted as the model will see them.
    /// </summary>
    private (float[] Mean, float[] Std) ChannelStatistics(MLContext ml, IDataView train, int width, int height, ImageColorMode mode)
    {
        IEstimator<ITransformer> p = ml.Transforms.LoadImages(Image, imageFolder: "", _options.ImagePathColumnName)
            .Append(ml.Transforms.ResizeImages(Image, width, height, resizing: _options.Resizing));
        if (mode == ImageColorMode.Gray) p = p.Append(ml.Transforms.ConvertToGrayscale(Image));
        p = p.Append(ml.Transforms.ExtractPixels(Raw, Image, mode == ImageColorMode.Gray ? ImagePixelExtractingEstimator.ColorBits.Red : ImagePixelExtractingEstimator.ColorBits.Rgb));
        // Evenly spaced rows, not the first ones: a folder's rows come class by class.
        var paths = train.GetColumn<string>(_options.ImagePathColumnName).ToArray();
        int step = Math.Max(1, (int)Math.Ceiling(paths.Length / (double)_options.NormalizationImages));
        var definition = SchemaDefinition.Create(typeof(PathRow));
        definition[0].ColumnName = _options.ImagePathColumnName;
        var sample = ml.Data.LoadFromEnumerable(paths.Where((_, i) => i % step == 0).Select(p => new PathRow { Path = p }), definition);
        int channels = mode == ImageColorMode.Gray ? 1 : 3, plane = width * height;
        var sum = new double[channels];
        var squares = new double[channels];
        long count = 0;
        foreach (var pixels in p.Fit(sample).Transform(sample).GetColumn<float[]>(Raw))
        {
            for (int c = 0; c < channels; c++)
                for (int i = c * plane; i < (c + 1) * plane; i++)
                {
                    sum[c] += pixels[i];
                    squares[c] += (double)pixels[i] * pixels[i];
                }
            count += plane;
        }
        var mean = new float[channels];
        var std = new float[channels];
        for (int c = 0; c < channels; c++)
        {
            double m = sum[c] / count;
            double variance = Math.Max(0, squares[c] / count - m * m);
            mean[c] = (float)m;
            std[c] = variance > 1e-6 ? (float)Math.Sqrt(variance) : 1f;
        }
        return (mean, std);
    }

    private sealed class PathRow
    {
        public string Path { get; set; } = "";
    }
}
