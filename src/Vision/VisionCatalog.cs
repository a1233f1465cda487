using MLNet.ConvNet.Vision;

namespace Microsoft.ML;

/// <summary>
/// The image-folder loader and the one-call image classifier on ML.NET's catalogs:
/// <c>mlContext.Data.LoadFromImageFolder(folder)</c> and <c>mlContext.MulticlassClassification.Trainers.ConvNetImageClassifier(options)</c>.
/// </summary>
public static class VisionCatalog
{
    /// <summary>
    /// Loads a folder with one sub-folder per class, checking every file (see <see cref="ImageFolder.Load"/>): rows of
    /// ImagePath, Label, Width, Height, IsGray, and the report of the files left out and why.
    /// </summary>
    /// <example>
    /// <code>
    /// var images = mlContext.Data.LoadFromImageFolder("photos", new ImageFolderOptions { Log = Console.WriteLine });
    /// var model = mlContext.MulticlassClassification.Trainers.ConvNetImageClassifier(new ImageClassifierOptions
    /// {
    ///     Trainer = new ConvNetTrainer.Options { Network = "lenet5", Epochs = 5 },
    /// }).Fit(images.Data);
    /// Console.WriteLine($"holdout accuracy {model.HoldoutMetrics!.MicroAccuracy:F4}");
    /// </code>
    /// The runnable sample is samples/ImageFolder.
    /// </example>
    public static ImageFolderData LoadFromImageFolder(this DataOperationsCatalog catalog, string folder, ImageFolderOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        return ImageFolder.Load(new MLContext(), folder, options);
    }

    /// <summary>
    /// Image classification in one call (see <see cref="ImageClassifierEstimator"/>): resizing, colour, per-channel
    /// normalisation, the ConvNet and a holdout split, from a table of image paths and classes.
    /// </summary>
    public static ImageClassifierEstimator ConvNetImageClassifier(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        ImageClassifierOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        return new ImageClassifierEstimator(options);
    }
}
