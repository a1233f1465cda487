using MLNet.ConvNet.Trainers;

namespace Microsoft.ML;

/// <summary>The ConvNet trainer on ML.NET's catalog: <c>mlContext.MulticlassClassification.Trainers.ConvNet(...)</c>.</summary>
public static class ConvNetCatalog
{
    /// <summary>
    /// Trains a convolutional network from scratch (see <see cref="ConvNetTrainer"/>) with every option of
    /// <paramref name="options"/>; the fitted transformer adds Score and PredictedLabel.
    /// </summary>
    /// <example>
    /// <code>
    /// var pipeline = mlContext.Transforms.Conversion.MapValueToKey("Label")
    ///     .Append(mlContext.MulticlassClassification.Trainers.ConvNet(new ConvNetTrainer.Options
    ///     {
    ///         Network = "lenet5", Epochs = 3, BatchSize = 64, LearningRate = 1e-3, ValidationFraction = 0.1,
    ///         OnEpoch = m => Console.WriteLine($"epoch {m.Epoch}: loss {m.TrainLoss:F4}"),
    ///     }));
    /// var model = pipeline.Fit(train);
    /// var metrics = mlContext.MulticlassClassification.Evaluate(model.Transform(test));
    /// </code>
    /// The runnable sample is samples/FashionMnist.MLNet.
    /// </example>
    public static ConvNetTrainer ConvNet(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog, ConvNetTrainer.Options options)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        return new ConvNetTrainer(options);
    }

    /// <summary>
    /// Trains a convolutional network from scratch with the common options; the rest keep
    /// <see cref="ConvNetTrainer.Options"/>' defaults (Adam, constant rate, no augmentation, no validation).
    /// </summary>
    /// <param name="catalog">The multiclass trainers catalog.</param>
    /// <param name="labelColumnName">The label: a key or a number holding class indices ("Label").</param>
    /// <param name="featureColumnName">A known-size vector of Single, <c>[C, H, W]</c> from ExtractPixels ("Features").</param>
    /// <param name="network">A preset: lenet5, cnn2bn, vgg or resnet ("lenet5").</param>
    /// <param name="epochs">Passes over the training data (10).</param>
    /// <param name="batchSize">Images per step (64).</param>
    /// <param name="learningRate">Adam's learning rate (1e-3).</param>
    /// <param name="inputShape">The sample shape for a flat feature vector, e.g. <c>[1, 28, 28]</c> (null: the column's dimensions).</param>
    /// <param name="seed">Seeds weights, shuffling and augmentation (0).</param>
    public static ConvNetTrainer ConvNet(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        string labelColumnName = ConvNetTrainer.Defaults.LabelColumnName,
        string featureColumnName = ConvNetTrainer.Defaults.FeatureColumnName,
        string network = ConvNetTrainer.Defaults.Network,
        int epochs = ConvNetTrainer.Defaults.Epochs,
        int batchSize = ConvNetTrainer.Defaults.BatchSize,
        double learningRate = ConvNetTrainer.Defaults.LearningRate,
        int[]? inputShape = null,
        int seed = ConvNetTrainer.Defaults.Seed)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        return new ConvNetTrainer(new ConvNetTrainer.Options
        {
            LabelColumnName = labelColumnName, FeatureColumnName = featureColumnName, Network = network,
            Epochs = epochs, BatchSize = batchSize, LearningRate = learningRate, InputShape = inputShape, Seed = seed,
        });
    }

    /// <summary>
    /// An AutoML-style experiment over convolutional networks (see <see cref="ConvNetExperiment"/>): seeded random search
    /// with successive halving under a time and/or trial budget; <c>Execute(trainData)</c> returns the leaderboard and the best model.
    /// </summary>
    /// <example>
    /// <code>
    /// var result = mlContext.MulticlassClassification.ConvNetExperiment(new ConvNetExperiment.Options
    ///     { TimeBudget = TimeSpan.FromMinutes(10), Seed = 1 }).Execute(train);
    /// Console.WriteLine(result.ToTable());
    /// var metrics = mlContext.MulticlassClassification.Evaluate(result.Model!.Transform(test));
    /// </code>
    /// The runnable sample is samples/Experiment.
    /// </example>
    public static ConvNetExperiment ConvNetExperiment(this MulticlassClassificationCatalog catalog, ConvNetExperiment.Options options)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        return new ConvNetExperiment(options);
    }

    /// <summary>
    /// The penultimate layer of a trained ConvNet as a vector column <paramref name="outputColumnName"/>
    /// (<see cref="ConvNetFeaturizerEstimator"/>), read from the model's feature column; for ML.NET's other trainers.
    /// </summary>
    /// <example>
    /// <code>
    /// var pipeline = mlContext.Transforms.ConvNetFeaturizer(cnnModel)
    ///     .Append(mlContext.MulticlassClassification.Trainers.SdcaMaximumEntropy(featureColumnName: "CnnFeatures"));
    /// </code>
    /// </example>
    public static ConvNetFeaturizerEstimator ConvNetFeaturizer(this TransformsCatalog catalog, ConvNetTransformer model,
        string outputColumnName = ConvNetFeaturizerEstimator.DefaultOutputColumnName)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        return new ConvNetFeaturizerEstimator(model, outputColumnName);
    }

    /// <summary>The penultimate layer of the trained <paramref name="network"/> as a vector column, reading images from <paramref name="inputColumnName"/>.</summary>
    public static ConvNetFeaturizerEstimator ConvNetFeaturizer(this TransformsCatalog catalog, MLNet.ConvNet.Layers.Network network, string inputColumnName,
        string outputColumnName = ConvNetFeaturizerEstimator.DefaultOutputColumnName)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        return new ConvNetFeaturizerEstimator(network, inputColumnName, outputColumnName);
    }
}
