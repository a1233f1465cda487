namespace MLNet.ConvNet.Ops;

/// <summary>Softmax and log-softmax over the last dimension of <c>[N, K]</c> logits.</summary>
public static class Softmax
{
    /// <summary><c>y[n, k] = exp(x[n,k] - m) / sum_j exp(x[n,j] - m)</c> with m = max_j x[n,j] (stable for large logits).</summary>
    public static Tensor Forward(Tensor x) => Run(x, log: false);

    /// <summary><c>y[n, k] = x[n,k] - m - log sum_j exp(x[n,j] - m)</c>.</summary>
    public static Tensor LogForward(Tensor x) => Run(x, log: true);

    /// <summary>Gradient of <see cref="Forward"/>: <c>dx = y * (dy - sum_j dy_j y_j)</c>.</summary>
    public static Tensor Backward(Tensor y, Tensor dy) => RunBackward(y, dy, log: false);

    /// <summary>Gradient of <see cref="LogForward"/>: <c>dx = dy - exp(y) * sum_j dy_j</c>.</summary>
    public static Tensor LogBackward(Tensor y, Tensor dy) => RunBackward(y, dy, log: true);

    private static Tensor Run(Tensor x, bool log)
    {
        CheckLogits(x.Shape, "Softmax");
        var y = x.Backend.Allocate(x.Shape);
        x.Backend.SoftmaxForward(x, y, log);
        return y;
    }

    private static Tensor RunBackward(Tensor y, Tensor dy, bool log)
    {
        CheckLogits(y.Shape, "Softmax.Backward", nameof(y));
        Convolution.CheckGradient(dy, y.Shape, "Softmax.Backward");
        var dx = y.Backend.Allocate(y.Shape);
        y.Backend.SoftmaxBackward(y, dy, dx, log);
        return dx;
    }

    internal static void CheckLogits(Shape x, string op, string parameter = "x")
    {
        if (x.Rank != 2) throw new ArgumentException($"{op}: expected logits [N, K]; got {x}.", parameter);
    }
}

/// <summary>
/// Loss and probabilities from one <see cref="CrossEntropy.Forward(Tensor, ReadOnlySpan{int}, float)"/> call;
/// <see cref="CrossEntropy.Backward(CrossEntropyResult)"/> uses its <paramref name="LabelSmoothing"/>.
/// </summary>
public sealed record CrossEntropyResult(float MeanLoss, Tensor LossPerSample, Tensor Probabilities, Tensor Labels, float LabelSmoothing = 0);

/// <summary>
/// Softmax cross-entropy over a batch, fused for numerical stability, with optional label smoothing as PyTorch's
/// <c>CrossEntropyLoss(label_smoothing)</c>: with K classes and <c>labelSmoothing = e</c> in [0, 1) the target is
/// <c>q = (1 - e) * onehot(label) + e / K</c>, <c>loss[n] = -sum_k q_k log softmax(logits[n])_k</c> and the gradient of
/// the mean loss is <c>(softmax - q) / N</c>. e = 0 (the default) is the plain cross-entropy.
/// </summary>
public static class CrossEntropy
{
    /// <summary>
    /// <c>loss[n] = logsumexp(logits[n]) - sum_k q_k logits[n, k]</c> (<c>logsumexp(logits[n]) - logits[n, labels[n]]</c>
    /// without smoothing), computed as log-softmax so large logits do not overflow; <c>MeanLoss</c> is the average over
    /// the batch. <paramref name="labelSmoothing"/> = 0: e in [0, 1), see <see cref="CrossEntropy"/>.
    /// </summary>
    public static CrossEntropyResult Forward(Tensor logits, ReadOnlySpan<int> labels, float labelSmoothing = 0)
    {
        Softmax.CheckLogits(logits.Shape, "CrossEntropy", nameof(logits));
        CheckSmoothing(labelSmoothing, "CrossEntropy");
        int n = logits.Shape[0], k = logits.Shape[1];
        if (labels.Length != n)
            throw new ArgumentException($"CrossEntropy: {labels.Length} labels for logits {logits.Shape} ({n} rows).", nameof(labels));
        var host = new float[n];
        for (int i = 0; i < n; i++)
        {
            if ((uint)labels[i] >= (uint)k)
                throw new ArgumentOutOfRangeException(nameof(labels), labels[i], $"CrossEntropy: label {labels[i]} at row {i} is outside [0, {k}) for logits {logits.Shape}.");
            host[i] = labels[i];
        }
        var b = logits.Backend;
        var labelTensor = Tensor.FromHost(host, new Shape(n), b);
        var loss = b.Allocate(new Shape(n));
        var probs = b.Allocate(logits.Shape);
        b.SoftmaxCrossEntropyForward(logits, labelTensor, labelSmoothing, loss, probs);
        return new CrossEntropyResult((float)(b.Sum(loss) / n), loss, probs, labelTensor, labelSmoothing);
    }

    /// <summary>
    /// Gradient of the mean loss with respect to the logits: <c>(softmax - q) / N</c>, q the target smoothed by the
    /// forward call's <see cref="CrossEntropyResult.LabelSmoothing"/> (<c>onehot(labels)</c> when it is 0).
    /// </summary>
    public static Tensor Backward(CrossEntropyResult forward)
    {
        ArgumentNullException.ThrowIfNull(forward);
        var p = forward.Probabilities;
        var d = p.Backend.Allocate(p.Shape);
        Backward(p, forward.Labels, d, forward.LabelSmoothing);
        return d;
    }

    /// <summary>
    /// <see cref="Forward(Tensor, ReadOnlySpan{int}, float)"/> with every tensor owned by the caller, so a training loop
    /// allocates nothing: <paramref name="labels"/> <c>[N]</c> holds class indices as floats on the logits' backend (the
    /// backend rejects one outside [0, K)); writes <paramref name="loss"/> <c>[N]</c> and <paramref name="probabilities"/>
    /// <c>[N, K]</c> and returns the mean loss. <paramref name="labelSmoothing"/> = 0: e in [0, 1).
    /// </summary>
    public static float Forward(Tensor logits, Tensor labels, Tensor loss, Tensor probabilities, float labelSmoothing = 0)
    {
        ForwardNoReadBack(logits, labels, loss, probabilities, labelSmoothing); // checks every argument
        return (float)(logits.Backend.Sum(loss) / logits.Shape[0]);
    }

    /// <summary>
    /// A training step's statistics kept on the backend (<see cref="Backends.IBackend.LossAndCorrect"/>): row
    /// <paramref name="row"/> of <paramref name="stats"/> <c>[rows, 2]</c> gets the sum of <paramref name="loss"/> <c>[N]</c>
    /// and the number of rows of <paramref name="probabilities"/> <c>[N, K]</c> whose first maximum is at the label.
    /// </summary>
    public static void LossAndCorrect(Tensor loss, Tensor probabilities, Tensor labels, Tensor stats, int row)
    {
        ArgumentNullException.ThrowIfNull(loss); ArgumentNullException.ThrowIfNull(probabilities);
        ArgumentNullException.ThrowIfNull(labels); ArgumentNullException.ThrowIfNull(stats);
        Softmax.CheckLogits(probabilities.Shape, "LossAndCorrect", nameof(probabilities));
        int n = probabilities.Shape[0];
        if (loss.Length != n || labels.Length != n)
            throw new ArgumentException($"LossAndCorrect: loss {loss.Shape} and labels {labels.Shape} need {n} rows, as probabilities {probabilities.Shape}.", nameof(loss));
        if (row < 0 || stats.Length < 2 * (row + 1))
            throw new ArgumentOutOfRangeException(nameof(row), row, $"LossAndCorrect: stats {stats.Shape} has no row {row}.");
        probabilities.Backend.LossAndCorrect(loss, probabilities, labels, stats, row);
    }

    /// <summary>
    /// <see cref="Forward(Tensor, Tensor, Tensor, Tensor, float)"/> without the mean: writes <paramref name="loss"/> and
    /// <paramref name="probabilities"/> on the backend and reads nothing back (a training step's form).
    /// </summary>
    public static void ForwardNoReadBack(Tensor logits, Tensor labels, Tensor loss, Tensor probabilities, float labelSmoothing = 0)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(labels);
        Softmax.CheckLogits(logits.Shape, "CrossEntropy", nameof(logits));
        CheckSmoothing(labelSmoothing, "CrossEntropy");
        int n = logits.Shape[0];
        if (labels.Rank != 1 || labels.Shape[0] != n)
            throw new ArgumentException($"CrossEntropy: labels have shape {labels.Shape} for logits {logits.Shape}; expected [{n}].", nameof(labels));
        var b = logits.Backend;
        Outputs.Check(loss, labels.Shape, b, "CrossEntropy", nameof(loss), logits, labels);
        Outputs.Check(probabilities, logits.Shape, b, "CrossEntropy", nameof(probabilities), logits, labels, loss);
        b.SoftmaxCrossEntropyForward(logits, labels, labelSmoothing, loss, probabilities);
    }

    /// <summary>
    /// Gradient of the mean loss with respect to the logits into <paramref name="dlogits"/>: <c>(probabilities - q) / N</c>
    /// with q smoothed by <paramref name="labelSmoothing"/> = 0 (pass the value given to the forward call).
    /// </summary>
    public static void Backward(Tensor probabilities, Tensor labels, Tensor dlogits, float labelSmoothing = 0)
    {
        ArgumentNullException.ThrowIfNull(probabilities);
        ArgumentNullException.ThrowIfNull(labels);
        Softmax.CheckLogits(probabilities.Shape, "CrossEntropy.Backward", nameof(probabilities));
        CheckSmoothing(labelSmoothing, "CrossEntropy.Backward");
        if (labels.Rank != 1 || labels.Shape[0] != probabilities.Shape[0])
            throw new ArgumentException($"CrossEntropy.Backward: labels have shape {labels.Shape} for probabilities {probabilities.Shape}.", nameof(labels));
        Outputs.Check(dlogits, probabilities.Shape, probabilities.Backend, "CrossEntropy.Backward", nameof(dlogits), probabilities, labels);
        probabilities.Backend.SoftmaxCrossEntropyBackward(probabilities, labels, labelSmoothing, 1f / probabilities.Shape[0], dlogits);
    }

    /// <summary>Label smoothing e must be in [0, 1): e = 1 would make the target uniform whatever the label (NaN is refused too).</summary>
    private static void CheckSmoothing(float labelSmoothing, string op)
    {
        if (!(labelSmoothing >= 0 && labelSmoothing < 1))
            throw new ArgumentOutOfRangeException(nameof(labelSmoothing), labelSmoothing, $"{op}: labelSmoothing = {labelSmoothing} must be in [0, 1).");
    }
}
