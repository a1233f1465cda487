namespace MLNet.ConvNet.Trainers;

/// <summary>What <see cref="ConvNetTrainer"/> does when the training loss diverges (option <see cref="ConvNetTrainer.Options.Divergence"/>).</summary>
public enum DivergenceAction
{
    /// <summary>Throw <see cref="DivergingLossException"/> (the default): the weights are not usable, the last checkpoint is.</summary>
    Stop,
    /// <summary>Write a warning to option Log (at most once per epoch) and train on.</summary>
    Warn,
    /// <summary>No check (a NaN or infinite loss still stops training).</summary>
    Ignore,
}

/// <summary>
/// Thrown by <see cref="ConvNetTrainer"/> when a training loss read back is finite but above the divergence bound
/// (option <see cref="ConvNetTrainer.Options.DivergenceFactor"/> x the larger of ln(classes) and the first loss read back):
/// the run is diverging, usually because the
/// learning rate is too high. The message names the epoch and batch (from 1), the loss, the bound, the options to change
/// and the last checkpoint written.
/// </summary>
public sealed class DivergingLossException(int epoch, int batch, double loss, double bound, string message) : Exception(message)
{
    /// <summary>The epoch (from 1).</summary>
    public int Epoch { get; } = epoch;
    /// <summary>The batch within the epoch (from 1).</summary>
    public int Batch { get; } = batch;
    /// <summary>The batch's mean training loss.</summary>
    public double Loss { get; } = loss;
    /// <summary>The bound it crossed: DivergenceFactor x max(ln(classes), the first loss read back).</summary>
    public double Bound { get; } = bound;
}
