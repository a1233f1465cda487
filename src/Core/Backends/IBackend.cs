using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Backends;

/// <summary>
/// The one kernel interface. Ops (src/Core/Ops) check shapes, allocate outputs and call these; a backend
/// implements kernels and nothing else. Every tensor passed in lives on this backend.
/// </summary>
/// <remarks>
/// Contract for every kernel: shapes were checked by the caller (geometry objects carry them); outputs are
/// overwritten unless the summary says "accumulates"; inputs are not modified; results do not depend on the
/// number of threads (no reduction is split by thread count), so training is reproducible.
/// The interface is partial so a later family (optimizers, a GPU-only helper) can add its own file.
/// </remarks>
public partial interface IBackend
{
    /// <summary>A short name for messages ("cpu", "cuda:0").</summary>
    string Name { get; }

    // ---- host threading: how callers above (the scorer) may spread independent work ----

    /// <summary>
    /// How many host threads may usefully drive this backend at once, each with its own <see cref="WithOneHostThread"/>
    /// copy of a network: the CPU backend's thread count; 1 for a backend whose kernels run elsewhere (a GPU).
    /// </summary>
    int HostWorkers { get; }

    /// <summary>
    /// A backend whose tensors interoperate with this one's and whose kernels each use one host thread (the CPU backend:
    /// a cached one-thread instance; a GPU backend: itself). Callers that run several forward passes side by side give
    /// each one a network on this backend. Kernels of any backend may be called from several threads (one call per
    /// tensor set at a time); no backend may assume thread affinity.
    /// </summary>
    IBackend WithOneHostThread();

    // ---- memory: the only way data crosses between host and backend ----

    /// <summary>A new zero-filled tensor.</summary>
    Tensor Allocate(Shape shape);
    void CopyFromHost(ReadOnlySpan<float> source, Tensor destination);
    void CopyToHost(Tensor source, Span<float> destination);
    /// <summary>destination = source (same length).</summary>
    void Copy(Tensor source, Tensor destination);
    /// <summary>Every element = value.</summary>
    void Fill(Tensor tensor, float value);

    // ---- element-wise (same length) ----

    /// <summary>y = alpha * x.</summary>
    void Scale(Tensor x, float alpha, Tensor y);
    /// <summary>y = a + b.</summary>
    void Add(Tensor a, Tensor b, Tensor y);
    /// <summary>y += alpha * x (accumulates).</summary>
    void AddScaled(Tensor x, float alpha, Tensor y);
    /// <summary>y = a * b (element-wise product).</summary>
    void Multiply(Tensor a, Tensor b, Tensor y);
    /// <summary>Sum of all elements, accumulated in double, returned to the host.</summary>
    double Sum(Tensor x);

    // ---- matrix product (dense layers, im2col convolution) ----

    /// <summary>
    /// c = alpha * op(a) * op(b) + beta * c on row-major matrices: a is [M, K] (or [K, M] when transA),
    /// b is [K, N] (or [N, K] when transB), c is [M, N]. Tensors of higher rank are read as
    /// [first dimension, rest flattened].
    /// </summary>
    void MatMul(Tensor a, bool transA, Tensor b, bool transB, Tensor c, float alpha = 1f, float beta = 0f);

    // ---- per-channel helpers (bias of conv and dense) on [N, C, spatial...] or [N, C] ----

    /// <summary>y[n, c, ...] += bias[c] (accumulates).</summary>
    void AddChannelBias(Tensor y, Tensor bias);
    /// <summary>db[c] = sum over n and spatial positions of dy[n, c, ...].</summary>
    void SumPerChannel(Tensor dy, Tensor db);

    // ---- convolution ----

    /// <summary>y = conv(x, w) (+ bias per output channel when bias is not null), per <paramref name="g"/>.</summary>
    void ConvolutionForward(ConvGeometry g, Tensor x, Tensor w, Tensor? bias, Tensor y);
    /// <summary>
    /// <see cref="ConvolutionForward(ConvGeometry, Tensor, Tensor, Tensor, Tensor)"/> for a filter that call after call
    /// reuses (a layer in inference): the backend may keep its filter-only work in <paramref name="cache"/>. Same result,
    /// bit for bit; a backend with nothing to keep ignores the cache (the default).
    /// </summary>
    void ConvolutionForward(ConvGeometry g, Tensor x, Tensor w, Tensor? bias, Tensor y, FilterCache cache) => ConvolutionForward(g, x, w, bias, y);
    /// <summary>dx = d(loss)/dx given dy: the adjoint of <see cref="ConvolutionForward(ConvGeometry, Tensor, Tensor, Tensor, Tensor)"/> in x.</summary>
    void ConvolutionBackwardData(ConvGeometry g, Tensor w, Tensor dy, Tensor dx);
    /// <summary>dw = d(loss)/dw given x and dy.</summary>
    void ConvolutionBackwardFilter(ConvGeometry g, Tensor x, Tensor dy, Tensor dw);
    /// <summary>
    /// cols[n, (c, k...), (y...)] = the input cell that kernel tap k of channel c meets at output position y
    /// (0 in padding); shape [N, C*prod(K), prod(Y)]. In Convolution mode tap k reads the flipped position,
    /// so conv(x, w) = w.reshape(O, C*prod(K)) x cols[n] in both modes.
    /// </summary>
    void Im2Col(ConvGeometry g, Tensor x, Tensor cols);
    /// <summary>The adjoint of <see cref="Im2Col"/>: x = sum of each column entry back onto its input cell.</summary>
    void Col2Im(ConvGeometry g, Tensor cols, Tensor x);

    // ---- pooling ----

    void PoolingForward(PoolGeometry g, Tensor x, Tensor y);
    /// <summary>dx given x, y = pool(x) and dy. Max routes each dy to the first maximal cell of its window.</summary>
    void PoolingBackward(PoolGeometry g, Tensor x, Tensor y, Tensor dy, Tensor dx);
    /// <summary>
    /// Max pooling of max(0, x) in one call (g.Mode is Max): every value of y equals ActivationForward(ReLU) then
    /// <see cref="PoolingForward"/> (NaN stays NaN); the ReLU's output need not be written anywhere.
    /// </summary>
    void PoolingReluForward(PoolGeometry g, Tensor x, Tensor y);
    /// <summary>
    /// Gradient of <see cref="PoolingReluForward"/> with respect to x given its y and dy: the values of
    /// <see cref="PoolingBackward"/> on r = max(0, x), then ActivationBackward(ReLU) at x.
    /// </summary>
    void PoolingReluBackward(PoolGeometry g, Tensor x, Tensor y, Tensor dy, Tensor dx);

    // ---- normalization ----

    void LrnForward(LrnOptions options, Tensor x, Tensor y);
    void LrnBackward(LrnOptions options, Tensor x, Tensor y, Tensor dy, Tensor dx);

    /// <summary>
    /// Training-mode batch norm over dimension 1 of x ([N, C, ...] or [N, F]): batch mean and biased
    /// variance per channel; y = gamma (x - mean) / sqrt(var + eps) + beta. Updates the running statistics
    /// in place: running = (1 - momentum) running + momentum * batch (the running variance uses the unbiased
    /// batch variance). Saves mean and 1/sqrt(var + eps) for the backward pass.
    /// </summary>
    void BatchNormForwardTraining(Tensor x, Tensor gamma, Tensor beta, float epsilon, float momentum,
        Tensor runningMean, Tensor runningVariance, Tensor y, Tensor savedMean, Tensor savedInvStd);
    /// <summary>Inference-mode batch norm: y = gamma (x - mean) / sqrt(variance + eps) + beta.</summary>
    void BatchNormForwardInference(Tensor x, Tensor gamma, Tensor beta, Tensor mean, Tensor variance, float epsilon, Tensor y);
    /// <summary>Gradients of training-mode batch norm (batch statistics are functions of x).</summary>
    void BatchNormBackward(Tensor x, Tensor dy, Tensor gamma, Tensor savedMean, Tensor savedInvStd,
        Tensor dx, Tensor dgamma, Tensor dbeta);
    /// <summary>
    /// <see cref="BatchNormForwardTraining"/> followed by a ReLU, in one call: y = max(0, gamma (x - mean) / sqrt(var + eps)
    /// + beta), the same statistics, saved values and running updates. Every value of y equals ActivationForward(ReLU)
    /// applied to BatchNormForwardTraining's y (NaN stays NaN).
    /// </summary>
    void BatchNormReluForwardTraining(Tensor x, Tensor gamma, Tensor beta, float epsilon, float momentum,
        Tensor runningMean, Tensor runningVariance, Tensor y, Tensor savedMean, Tensor savedInvStd);
    /// <summary>
    /// Gradients of y = max(0, batchnorm(x)) given that y (the output of <see cref="BatchNormReluForwardTraining"/>):
    /// <see cref="BatchNormBackward"/> of ActivationBackward(ReLU)'s dx, where y &gt; 0 stands for the ReLU's x &gt; 0.
    /// </summary>
    void BatchNormReluBackward(Tensor x, Tensor y, Tensor dy, Tensor gamma, Tensor savedMean, Tensor savedInvStd,
        Tensor dx, Tensor dgamma, Tensor dbeta);

    // ---- dropout, activations, softmax ----

    /// <summary>
    /// Inverted dropout: mask[i] = 0 with probability p, else 1/(1-p), drawn from a counter-based generator
    /// keyed by (seed, i) so the mask does not depend on threads; y = x * mask.
    /// </summary>
    void DropoutForward(Tensor x, float p, ulong seed, Tensor mask, Tensor y);

    void ActivationForward(ActivationKind kind, float alpha, Tensor x, Tensor y);
    /// <summary>dx given x, y = f(x) and dy.</summary>
    void ActivationBackward(ActivationKind kind, float alpha, Tensor x, Tensor y, Tensor dy, Tensor dx);

    /// <summary>Softmax (or log-softmax) along the last dimension of [N, K], stable for large logits.</summary>
    void SoftmaxForward(Tensor x, Tensor y, bool log);
    /// <summary>dx given y = (log-)softmax(x) and dy.</summary>
    void SoftmaxBackward(Tensor y, Tensor dy, Tensor dx, bool log);
    /// <summary>
    /// loss[n] = -sum_k q[n,k] log softmax(logits[n])[k] with the target q = (1 - labelSmoothing) * onehot(labels[n])
    /// + labelSmoothing / K; probabilities = softmax(logits). Labels are class indices stored as floats, shape [N].
    /// labelSmoothing in [0, 1) (the op checks it); 0 gives -log softmax(logits[n])[labels[n]].
    /// </summary>
    void SoftmaxCrossEntropyForward(Tensor logits, Tensor labels, float labelSmoothing, Tensor loss, Tensor probabilities);
    /// <summary>dlogits = scale * (probabilities - q), q the smoothed target of <see cref="SoftmaxCrossEntropyForward"/>.</summary>
    void SoftmaxCrossEntropyBackward(Tensor probabilities, Tensor labels, float labelSmoothing, float scale, Tensor dlogits);

    /// <summary>
    /// One training step's statistics, kept on the backend so a step needs no read-back: writes
    /// <c>stats[2 * row] = sum over n of loss[n]</c> (summed in double, stored as float) and
    /// <c>stats[2 * row + 1] = the number of rows n whose first maximal probability is at labels[n]</c>.
    /// loss is [N], probabilities [N, K], labels [N] (class indices as floats); stats holds at least 2 * (row + 1) values.
    /// The trainer reads stats to the host only when it reports progress or ends an epoch.
    /// </summary>
    void LossAndCorrect(Tensor loss, Tensor probabilities, Tensor labels, Tensor stats, int row);
}
