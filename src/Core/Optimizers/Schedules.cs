namespace MLNet.ConvNet.Optimizers;

/// <summary>
/// A learning-rate schedule: the factor that multiplies the base rate as a function of training progress in epochs.
/// The trainer evaluates it before every step at <c>epoch + batch / batchesPerEpoch</c> (0 at the very first step),
/// so step-wise schedules change at epoch boundaries and smooth ones change every batch.
/// </summary>
public abstract class LearningRateSchedule
{
    /// <summary>The factor at <paramref name="epoch"/> (fractional epochs completed, &gt;= 0).</summary>
    public abstract double Factor(double epoch);

    /// <summary>The base rate times <see cref="Factor"/>.</summary>
    public double Rate(double baseRate, double epoch) => baseRate * Factor(epoch);

    private protected static void CheckPositive(double value, string name)
    {
        if (!(value > 0) || !double.IsFinite(value)) throw new ArgumentOutOfRangeException(name, value, $"{name} must be finite and > 0.");
    }

    private protected static void CheckUnit(double value, string name)
    {
        if (!(value >= 0 && value <= 1)) throw new ArgumentOutOfRangeException(name, value, $"{name} must be in [0, 1].");
    }
}

/// <summary>Factor 1 throughout.</summary>
public sealed class ConstantSchedule : LearningRateSchedule
{
    public override double Factor(double epoch) => 1.0;
}

/// <summary>Step decay: <c>gamma ^ floor(epoch / stepEpochs)</c> (the rate drops by gamma every stepEpochs epochs).</summary>
public sealed class StepSchedule : LearningRateSchedule
{
    /// <summary>Multiply by <paramref name="gamma"/> (0.1) every <paramref name="stepEpochs"/> epochs.</summary>
    public StepSchedule(int stepEpochs, double gamma = 0.1)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(stepEpochs, 1);
        CheckPositive(gamma, nameof(gamma));
        StepEpochs = stepEpochs; Gamma = gamma;
    }

    public int StepEpochs { get; }
    public double Gamma { get; }
    public override double Factor(double epoch) => Math.Pow(Gamma, Math.Floor(epoch / StepEpochs));
}

/// <summary>
/// Cosine annealing (Loshchilov and Hutter 2017) from 1 down to <c>minFactor</c> over <c>totalEpochs</c>, then flat:
/// <code>factor = min + (1 - min) (1 + cos(pi * min(epoch / total, 1))) / 2</code>
/// </summary>
public sealed class CosineSchedule : LearningRateSchedule
{
    /// <summary>Anneal over <paramref name="totalEpochs"/> to <paramref name="minFactor"/> (0).</summary>
    public CosineSchedule(double totalEpochs, double minFactor = 0)
    {
        CheckPositive(totalEpochs, nameof(totalEpochs));
        CheckUnit(minFactor, nameof(minFactor));
        TotalEpochs = totalEpochs; MinFactor = minFactor;
    }

    public double TotalEpochs { get; }
    public double MinFactor { get; }

    public override double Factor(double epoch) =>
        MinFactor + (1 - MinFactor) * 0.5 * (1 + Math.Cos(Math.PI * Math.Min(epoch / TotalEpochs, 1.0)));
}

/// <summary>
/// Linear warm-up: during the first <c>warmupEpochs</c> the inner schedule's factor is multiplied by a ramp from
/// <c>startFactor</c> to 1; afterwards the inner schedule alone applies.
/// <code>factor = inner(epoch) * (epoch &lt; W ? start + (1 - start) epoch / W : 1)</code>
/// </summary>
public sealed class WarmupSchedule : LearningRateSchedule
{
    /// <summary>Warm up over <paramref name="warmupEpochs"/> (may be fractional) from <paramref name="startFactor"/> (0.1), then follow <paramref name="inner"/> (constant when null).</summary>
    public WarmupSchedule(double warmupEpochs, LearningRateSchedule? inner = null, double startFactor = 0.1)
    {
        CheckPositive(warmupEpochs, nameof(warmupEpochs));
        CheckUnit(startFactor, nameof(startFactor));
        WarmupEpochs = warmupEpochs; Inner = inner ?? new ConstantSchedule(); StartFactor = startFactor;
    }

    public double WarmupEpochs { get; }
    public LearningRateSchedule Inner { get; }
    public double StartFactor { get; }

    public override double Factor(double epoch)
    {
        double ramp = epoch < WarmupEpochs ? StartFactor + (1 - StartFactor) * epoch / WarmupEpochs : 1.0;
        return ramp * Inner.Factor(epoch);
    }
}
