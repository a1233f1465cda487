using MLNet.ConvNet.Training;

namespace MLNet.ConvNet.Trainers;

// The checks Fit runs before reading any data (those Options.Validate cannot make: the file system, the checkpoint to
// resume), and the divergence check wrapped around OnBatch. Each error names the option at fault.
public sealed partial class ConvNetTrainer
{
    /// <summary>
    /// Makes sure option CheckpointDirectory (when set) is a directory a file can be written in, creating it when missing,
    /// so a bad path fails now and not after the first epoch. Returns the paths of the last and the best checkpoint.
    /// </summary>
    private (string? Last, string? Best) PrepareCheckpointDirectory()
    {
        if (_options.CheckpointDirectory is not { } dir) return (null, null);
        string where = $"ConvNetTrainer option CheckpointDirectory = '{dir}'";
        if (File.Exists(dir))
            throw new ArgumentException($"{where} is a file, not a directory; give a directory (it is created when missing).", "CheckpointDirectory");
        try
        {
            Directory.CreateDirectory(dir);
            // A directory can exist yet refuse files (a read-only mount, /proc, permissions): write and delete a probe file.
            using (File.Create(Path.Combine(dir, $".convnet-write-check-{Guid.NewGuid():N}"), 1, FileOptions.DeleteOnClose)) { }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException)
        {
            throw new ArgumentException($"{where} cannot hold checkpoints: creating or writing a file there failed ({e.Message}). Give a writable directory.", "CheckpointDirectory", e);
        }
        return (Path.Combine(dir, Defaults.CheckpointFileName), Path.Combine(dir, Defaults.BestCheckpointFileName));
    }

    /// <summary>
    /// With option Resume, the checkpoint to continue from (null when there is none yet), read now so a damaged file or an
    /// epoch beyond option Epochs fails before any work.
    /// </summary>
    private Checkpoint? LoadResumeCheckpoint(string? checkpointPath)
    {
        if (!_options.Resume || checkpointPath is null || !File.Exists(checkpointPath)) return null;
        var checkpoint = ResumeError(() => Checkpoint.Load(checkpointPath));
        if (checkpoint.Epoch > _options.Epochs)
            throw new ArgumentException($"ConvNetTrainer option Epochs = {_options.Epochs} is below the {checkpoint.Epoch} epochs that the checkpoint " +
                $"'{checkpointPath}' (option CheckpointDirectory, Resume = true) has already trained. Set Epochs >= {checkpoint.Epoch} to continue it, " +
                "or Resume = false (or another CheckpointDirectory) to train afresh.", "Epochs");
        return checkpoint;
    }

    /// <summary>
    /// Option OnBatch behind the divergence check: a loss read back above DivergenceFactor x the reference loss stops
    /// training (DivergingLossException) or logs a warning, as option Divergence says. The reference is the larger of
    /// ln(classes) (at least 1) and the first loss read back in this Fit, so data that starts far from chance level (raw
    /// 0..255 pixels give losses near 100) is not taken for divergence. The check sees every loss the trainer reads back
    /// (every ProgressInterval steps and each epoch's last); with Ignore, OnBatch is passed as it is.
    /// </summary>
    private Action<BatchProgress>? WithDivergenceCheck(int classes, string? checkpointPath, Action<BatchProgress>? onBatch, Action<string>? log)
    {
        var o = _options;
        if (o.Divergence == DivergenceAction.Ignore) return onBatch;
        // ln(K) is the loss of a uniform guess over K classes; a loss many times that, and many times where this run
        // started, is no longer learning.
        double chance = Math.Max(Math.Log(classes), 1), reference = double.NaN;
        int warnedEpoch = 0;
        return p =>
        {
            if (double.IsNaN(reference)) reference = double.IsFinite(p.Loss) ? Math.Max(chance, p.Loss) : chance;
            double bound = o.DivergenceFactor * reference;
            if (p.Loss > bound) // false for NaN: a non-finite loss is the trainer's NonFiniteLossException
            {
                string of = reference == chance ? $"ln({classes} classes)" : $"the first loss read back, {reference:G4}";
                string what = $"the training loss is diverging: {p.Loss:G4} at epoch {p.Epoch}, batch {p.Batch}, above the bound {bound:G4} " +
                    $"(option DivergenceFactor = {o.DivergenceFactor} x {of}); the learning rate (option LearningRate = {o.LearningRate}" +
                    (o.Schedule is null ? "" : ", scaled by option Schedule") + ") is likely too high";
                if (o.Divergence == DivergenceAction.Stop)
                {
                    string? kept = checkpointPath is not null && File.Exists(checkpointPath) ? checkpointPath : null;
                    throw new DivergingLossException(p.Epoch, p.Batch, p.Loss, bound, $"ConvNetTrainer stopped: {what}. Lower it; or set option " +
                        "Divergence = Warn to train on, or raise DivergenceFactor." + (kept is null ? "" : $" The last good checkpoint is '{kept}'."));
                }
                if (warnedEpoch != p.Epoch)
                {
                    warnedEpoch = p.Epoch;
                    log?.Invoke($"ConvNetTrainer warning: {what}; training goes on (option Divergence = Warn).");
                }
            }
            onBatch?.Invoke(p);
        };
    }
}
