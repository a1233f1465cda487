namespace MLNet.ConvNet.Ops;

/// <summary>What the training-mode forward pass keeps for the backward pass: per-channel batch mean and 1/sqrt(var + eps).</summary>
public sealed record BatchNormCache(Tensor SavedMean, Tensor SavedInvStd)
{
    /// <summary>A cache for <paramref name="channels"/> channels on <paramref name="backend"/>, for the "into" overload of <see cref="BatchNorm.ForwardTraining(Tensor, Tensor, Tensor, Tensor, Tensor, BatchNormCache, Tensor, float, float)"/>.</summary>
    public static BatchNormCache Allocate(Backends.IBackend backend, int channels)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentOutOfRangeException.ThrowIfLessThan(channels, 1);
        return new(backend.Allocate(new Shape(channels)), backend.Allocate(new Shape(channels)));
    }
}

/// <summary>
/// Batch normalization (Ioffe and Szegedy 2015) over dimension 1: per channel for <c>[N, C, X...]</c>
/// (cuDNN's "spatial" mode) and per feature for <c>[N, F]</c> (cuDNN's "per-activation" mode).
/// </summary>
public static class BatchNorm
{
    /// <summary>Epsilon = 1e-5 (Knet, PyTorch, cuDNN).</summary>
    public const float DefaultEpsilon = 1e-5f;
    /// <summary>Momentum = 0.1: weight of the new batch in the running statistics (Knet, PyTorch).</summary>
    public const float DefaultMomentum = 0.1f;

    /// <summary>
    /// Training mode: normalizes with the batch's own statistics and updates the running ones in place.
    /// <code>
    /// mean[c] = avg over (n, i) of x[n,c,i];  var[c] = avg of (x - mean[c])^2        (biased, for y)
    /// y = gamma[c] * (x - mean[c]) / sqrt(var[c] + eps) + beta[c]
    /// running_mean = (1 - momentum) running_mean + momentum mean
    /// running_var  = (1 - momentum) running_var  + momentum var * m/(m-1)         (unbiased, m = N * prod(X))
    /// </code>
    /// </summary>
    public static Tensor ForwardTraining(Tensor x, Tensor gamma, Tensor beta, Tensor runningMean, Tensor runningVariance,
        out BatchNormCache cache, float epsilon = DefaultEpsilon, float momentum = DefaultMomentum)
    {
        int c = CheckShapes(x, gamma, beta, runningMean, runningVariance, epsilon, "BatchNorm.ForwardTraining");
        var y = x.Backend.Allocate(x.Shape);
        cache = BatchNormCache.Allocate(x.Backend, c);
        ForwardTraining(x, gamma, beta, runningMean, runningVariance, cache, y, epsilon, momentum);
        return y;
    }

    /// <summary>
    /// <see cref="ForwardTraining(Tensor, Tensor, Tensor, Tensor, Tensor, out BatchNormCache, float, float)"/> into
    /// <paramref name="y"/> (x's shape) and a caller-owned <paramref name="cache"/> (<see cref="BatchNormCache.Allocate"/>):
    /// what a training loop calls to allocate nothing.
    /// </summary>
    public static void ForwardTraining(Tensor x, Tensor gamma, Tensor beta, Tensor runningMean, Tensor runningVariance,
        BatchNormCache cache, Tensor y, float epsilon = DefaultEpsilon, float momentum = DefaultMomentum)
    {
        CheckTraining(x, gamma, beta, runningMean, runningVariance, cache, y, epsilon, momentum, "BatchNorm.ForwardTraining");
        x.Backend.BatchNormForwardTraining(x, gamma, beta, epsilon, momentum, runningMean, runningVariance, y, cache.SavedMean, cache.SavedInvStd);
    }

    /// <summary>
    /// <see cref="ForwardTraining(Tensor, Tensor, Tensor, Tensor, Tensor, BatchNormCache, Tensor, float, float)"/> followed by
    /// a ReLU in one backend call: <c>y = max(0, gamma (x - mean) / sqrt(var[c] + eps) + beta)</c>, the same values as the
    /// two ops one after the other (a network runs a BatchNorm and the ReLU after it this way when training).
    /// </summary>
    public static void ForwardTrainingRelu(Tensor x, Tensor gamma, Tensor beta, Tensor runningMean, Tensor runningVariance,
        BatchNormCache cache, Tensor y, float epsilon = DefaultEpsilon, float momentum = DefaultMomentum)
    {
        CheckTraining(x, gamma, beta, runningMean, runningVariance, cache, y, epsilon, momentum, "BatchNorm.ForwardTrainingRelu");
        x.Backend.BatchNormReluForwardTraining(x, gamma, beta, epsilon, momentum, runningMean, runningVariance, y, cache.SavedMean, cache.SavedInvStd);
    }

    /// <summary>Inference mode: <c>y = gamma (x - mean) / sqrt(variance + eps) + beta</c> with given statistics.</summary>
    public static Tensor ForwardInference(Tensor x, Tensor gamma, Tensor beta, Tensor mean, Tensor variance, float epsilon = DefaultEpsilon)
    {
        CheckShapes(x, gamma, beta, mean, variance, epsilon, "BatchNorm.ForwardInference");
        var y = x.Backend.Allocate(x.Shape);
        ForwardInference(x, gamma, beta, mean, variance, y, epsilon);
        return y;
    }

    /// <summary><see cref="ForwardInference(Tensor, Tensor, Tensor, Tensor, Tensor, float)"/> into <paramref name="y"/> (x's shape).</summary>
    public static void ForwardInference(Tensor x, Tensor gamma, Tensor beta, Tensor mean, Tensor variance, Tensor y, float epsilon = DefaultEpsilon)
    {
        CheckShapes(x, gamma, beta, mean, variance, epsilon, "BatchNorm.ForwardInference");
        Outputs.Check(y, x.Shape, x.Backend, "BatchNorm.ForwardInference", nameof(y), x, gamma, beta);
        x.Backend.BatchNormForwardInference(x, gamma, beta, mean, variance, epsilon, y);
    }

    /// <summary>Gradients of <see cref="ForwardTraining(Tensor, Tensor, Tensor, Tensor, Tensor, out BatchNormCache, float, float)"/> with respect to x, gamma and beta.</summary>
    public static (Tensor Dx, Tensor Dgamma, Tensor Dbeta) Backward(Tensor x, Tensor dy, Tensor gamma, BatchNormCache cache)
    {
        ArgumentNullException.ThrowIfNull(cache);
        Convolution.CheckGradient(dy, x.Shape, "BatchNorm.Backward");
        int c = x.Rank >= 2 ? x.Shape[1] : 0;
        CheckVector(gamma, c, "gamma", x.Shape, "BatchNorm.Backward");
        // A cache from a forward pass on another shape would be read out of step with x.
        CheckVector(cache.SavedMean, c, "cache", x.Shape, "BatchNorm.Backward");
        CheckVector(cache.SavedInvStd, c, "cache", x.Shape, "BatchNorm.Backward");
        var b = x.Backend;
        var dx = b.Allocate(x.Shape);
        var dgamma = b.Allocate(gamma.Shape);
        var dbeta = b.Allocate(gamma.Shape);
        Backward(x, dy, gamma, cache, dx, dgamma, dbeta);
        return (dx, dgamma, dbeta);
    }

    /// <summary><see cref="Backward(Tensor, Tensor, Tensor, BatchNormCache)"/> into <paramref name="dx"/>, <paramref name="dgamma"/> and <paramref name="dbeta"/> (overwritten, not accumulated).</summary>
    public static void Backward(Tensor x, Tensor dy, Tensor gamma, BatchNormCache cache, Tensor dx, Tensor dgamma, Tensor dbeta)
    {
        CheckBackward("BatchNorm.Backward", x, dy, gamma, cache, dx, dgamma, dbeta, y: null);
        x.Backend.BatchNormBackward(x, dy, gamma, cache.SavedMean, cache.SavedInvStd, dx, dgamma, dbeta);
    }

    /// <summary>
    /// Gradients of <see cref="ForwardTrainingRelu"/> given its output <paramref name="y"/>: the ReLU's backward (dy where
    /// y &gt; 0, else 0), then <see cref="Backward(Tensor, Tensor, Tensor, BatchNormCache, Tensor, Tensor, Tensor)"/>; the
    /// same values as the two ops one after the other. Into <paramref name="dx"/>, <paramref name="dgamma"/> and
    /// <paramref name="dbeta"/> (overwritten).
    /// </summary>
    public static void BackwardRelu(Tensor x, Tensor y, Tensor dy, Tensor gamma, BatchNormCache cache, Tensor dx, Tensor dgamma, Tensor dbeta)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(y);
        if (y.Shape != x.Shape)
            throw new ArgumentException($"BatchNorm.BackwardRelu: y has shape {y.Shape} but x {x.Shape}; pass the output of ForwardTrainingRelu.", nameof(y));
        CheckBackward("BatchNorm.BackwardRelu", x, dy, gamma, cache, dx, dgamma, dbeta, y);
        x.Backend.BatchNormReluBackward(x, y, dy, gamma, cache.SavedMean, cache.SavedInvStd, dx, dgamma, dbeta);
    }

    /// <summary>The checks of a backward pass's arguments; <paramref name="y"/>, the fused pass's output, must not share dx's memory either.</summary>
    private static void CheckBackward(string op, Tensor x, Tensor dy, Tensor gamma, BatchNormCache cache, Tensor dx, Tensor dgamma, Tensor dbeta, Tensor? y)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(cache);
        Convolution.CheckGradient(dy, x.Shape, op);
        int c = x.Rank >= 2 ? x.Shape[1] : 0;
        CheckVector(gamma, c, "gamma", x.Shape, op);
        // A cache from a forward pass on another shape would be read out of step with x.
        CheckVector(cache.SavedMean, c, "cache", x.Shape, op);
        CheckVector(cache.SavedInvStd, c, "cache", x.Shape, op);
        var b = x.Backend;
        Outputs.Check(dx, x.Shape, b, op, nameof(dx), x, dy, y ?? gamma);
        Outputs.Check(dgamma, gamma.Shape, b, op, nameof(dgamma), x, dy, gamma);
        Outputs.Check(dbeta, gamma.Shape, b, op, nameof(dbeta), x, dy, dgamma);
    }

    private static void CheckTraining(Tensor x, Tensor gamma, Tensor beta, Tensor runningMean, Tensor runningVariance,
        BatchNormCache cache, Tensor y, float epsilon, float momentum, string op)
    {
        int c = CheckShapes(x, gamma, beta, runningMean, runningVariance, epsilon, op);
        if (!(momentum >= 0 && momentum <= 1))
            throw new ArgumentOutOfRangeException(nameof(momentum), momentum, "BatchNorm: momentum must be in [0, 1].");
        if (x.Length / c < 2)
            throw new ArgumentException($"{op}: x {x.Shape} has one value per channel; training-mode statistics need at least 2 (batch size x spatial size).", nameof(x));
        ArgumentNullException.ThrowIfNull(cache);
        CheckVector(cache.SavedMean, c, "cache", x.Shape, op);
        CheckVector(cache.SavedInvStd, c, "cache", x.Shape, op);
        Outputs.Check(y, x.Shape, x.Backend, op, nameof(y), x, gamma, beta);
    }

    private static int CheckShapes(Tensor x, Tensor gamma, Tensor beta, Tensor mean, Tensor variance, float epsilon, string op)
    {
        if (x.Rank < 2 || x.Rank > 5)
            throw new ArgumentException($"{op}: x has shape {x.Shape}; expected [N, F], [N, C, X], [N, C, H, W] or [N, C, D, H, W].", nameof(x));
        if (!(epsilon > 0)) throw new ArgumentOutOfRangeException(nameof(epsilon), epsilon, $"{op}: epsilon must be > 0.");
        int c = x.Shape[1];
        CheckVector(gamma, c, "gamma", x.Shape, op);
        CheckVector(beta, c, "beta", x.Shape, op);
        CheckVector(mean, c, "mean", x.Shape, op);
        CheckVector(variance, c, "variance", x.Shape, op);
        return c;
    }

    private static void CheckVector(Tensor t, int c, string name, Shape x, string op)
    {
        if (t.Rank != 1 || t.Shape[0] != c)
            throw new ArgumentException($"{op}: {name} has shape {t.Shape} but x {x} has {c} channels; expected [{c}].", name);
    }
}

/// <summary>
/// Fits inference batch-norm statistics from data that arrives a row at a time (a row is one sample, <c>[C, X...]</c>
/// or <c>[F]</c>): the mean and the biased (population) variance of each channel over every row and position,
/// accumulated in double on the host, so normalizing the same data with them gives mean 0 and variance 1 per channel.
/// </summary>
/// <remarks>
/// Sums are of <c>x - shift</c>, where shift is the channel's first value: no cancellation when the mean is large
/// against the spread. Each row's sums are formed on their own and then added to the totals.
/// </remarks>
public sealed class BatchNormStatistics
{
    private readonly int _channels, _inner;
    private readonly double[] _shift, _sum, _sumSquares;

    /// <summary>Statistics for rows of <paramref name="rowShape"/> (channel first).</summary>
    public BatchNormStatistics(Shape rowShape)
    {
        if (rowShape.Rank < 1 || rowShape.Length == 0)
            throw new ArgumentException($"BatchNormStatistics: row shape {rowShape} has no values; expected [F] or [C, X...].", nameof(rowShape));
        RowShape = rowShape;
        _channels = rowShape[0];
        _inner = rowShape.SizeFrom(1);
        _shift = new double[_channels];
        _sum = new double[_channels];
        _sumSquares = new double[_channels];
    }

    /// <summary>The shape of one row.</summary>
    public Shape RowShape { get; }

    /// <summary>How many rows were added.</summary>
    public long Rows { get; private set; }

    /// <summary>
    /// The index of the first NaN or infinite value of <paramref name="row"/>, or -1. Such a value would make its
    /// channel's statistics NaN; callers check with this first to name the row in their own terms.
    /// </summary>
    public static int IndexOfNonFinite(ReadOnlySpan<float> row)
    {
        for (int i = 0; i < row.Length; i++)
            if (!float.IsFinite(row[i])) return i;
        return -1;
    }

    /// <summary>Adds one row of <see cref="RowShape"/>'s length; throws on a NaN or infinite value (nothing is added then).</summary>
    public void Add(ReadOnlySpan<float> row)
    {
        if (row.Length != RowShape.Length)
            throw new ArgumentException($"BatchNormStatistics: a row holds {row.Length} values; rows of shape {RowShape} hold {RowShape.Length}.", nameof(row));
        int bad = IndexOfNonFinite(row);
        if (bad >= 0)
            throw new ArgumentException($"BatchNormStatistics: row {Rows} holds {row[bad]} (channel {bad / _inner}); the statistics would be NaN.", nameof(row));
        for (int ch = 0; ch < _channels; ch++)
        {
            var values = row.Slice(ch * _inner, _inner);
            if (Rows == 0) _shift[ch] = values[0];
            double s = 0, ss = 0;
            foreach (float v in values)
            {
                double d = v - _shift[ch];
                s += d; ss += d * d;
            }
            _sum[ch] += s; _sumSquares[ch] += ss;
        }
        Rows++;
    }

    /// <summary>Adds <paramref name="count"/> rows laid out one after another in <paramref name="rows"/> (a mini-batch).</summary>
    public void AddBatch(ReadOnlySpan<float> rows, int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (rows.Length < count * RowShape.Length)
            throw new ArgumentException($"BatchNormStatistics: {count} rows of shape {RowShape} need {count * RowShape.Length} values; got {rows.Length}.", nameof(rows));
        for (int r = 0; r < count; r++) Add(rows.Slice(r * RowShape.Length, RowShape.Length));
    }

    /// <summary>Per-channel mean and biased variance of the rows added, rounded once to float.</summary>
    public (float[] Mean, float[] Variance) Result()
    {
        if (Rows == 0) throw new InvalidOperationException("BatchNormStatistics: no rows were added; the statistics of no data are undefined.");
        double n = (double)Rows * _inner;
        var mean = new float[_channels];
        var variance = new float[_channels];
        for (int ch = 0; ch < _channels; ch++)
        {
            mean[ch] = (float)(_shift[ch] + _sum[ch] / n);
            variance[ch] = (float)Math.Max(0, (_sumSquares[ch] - _sum[ch] * _sum[ch] / n) / n);
        }
        return (mean, variance);
    }
}
