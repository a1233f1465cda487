namespace MLNet.ConvNet.Training;

/// <summary>What one epoch achieved. Epochs are numbered from 1; validation figures are NaN without a validation set.</summary>
public sealed record EpochMetrics(int Epoch, double TrainLoss, double TrainAccuracy, double ValidationLoss, double ValidationAccuracy,
    double LearningRate, double Seconds)
{
    /// <summary>True when a validation set was evaluated.</summary>
    public bool HasValidation => !double.IsNaN(ValidationLoss);
}

/// <summary>Progress after one mini-batch: epoch and batch numbered from 1, the batch's loss and accuracy, the rate used.</summary>
public readonly record struct BatchProgress(int Epoch, int Batch, int BatchCount, int BatchSize, double Loss, double Accuracy,
    double LearningRate, int SamplesDone, int SampleCount, TimeSpan EpochElapsed);

/// <summary>Loss, accuracy and confusion matrix of a network on a labelled dataset.</summary>
/// <param name="Loss">Mean cross-entropy.</param>
/// <param name="Accuracy">Fraction of samples whose most probable class is the label.</param>
/// <param name="Count">Number of samples evaluated.</param>
/// <param name="Confusion">Confusion[label][predicted] counts.</param>
public sealed record Evaluation(double Loss, double Accuracy, int Count, int[][] Confusion);

/// <summary>
/// Thrown when the training loss becomes NaN or infinite; names the first such epoch and batch (from 1). The trainer
/// finds it where it reads the step statistics back (every TrainerOptions.ProgressInterval steps when reporting progress,
/// and at the epoch's end), so that step and those after it up to the read point have been applied; the last checkpoint
/// written (the end of the previous epoch) is kept.
/// </summary>
public sealed class NonFiniteLossException : Exception
{
    public NonFiniteLossException(int epoch, int batch, double loss, string? checkpoint)
        : base($"Training stopped: the loss became {loss} at epoch {epoch}, batch {batch} (the learning rate may be too high, or the data holds NaN/Inf)." +
               (checkpoint is null ? "" : $" The last good checkpoint is '{checkpoint}'."))
    {
        Epoch = epoch; Batch = batch; Loss = loss;
    }

    /// <summary>The epoch (from 1).</summary>
    public int Epoch { get; }
    /// <summary>The batch within the epoch (from 1).</summary>
    public int Batch { get; }
    /// <summary>The non-finite loss.</summary>
    public double Loss { get; }
}
