using System.Runtime.CompilerServices;
using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Backends;

/// <summary>
/// A backend that runs every kernel of another backend (<see cref="Inner"/>): the base of
/// <see cref="Reference.ReferenceBackend"/> and of test doubles that count, trace or deliberately break calls.
/// Every member is virtual and forwards as is.
/// </summary>
/// <remarks>
/// Tensors it allocates hold the inner backend's storage (so the inner kernels can read them) but report this backend
/// as their <see cref="Tensor.Backend"/>, so every op on them is dispatched here first. <see cref="HostWorkers"/> is 1
/// and <see cref="WithOneHostThread"/> is this backend, so no caller sidesteps the wrapper by asking for the inner
/// backend's one-thread sibling.
/// </remarks>
public abstract class DelegatingBackend : IBackend
{
    /// <summary>A backend forwarding to <paramref name="inner"/>.</summary>
    protected DelegatingBackend(IBackend inner)
    {
        ArgumentNullException.ThrowIfNull(inner);
        Inner = inner;
    }

    /// <summary>The backend whose kernels run.</summary>
    protected IBackend Inner { get; }

    /// <summary>
    /// Called at the start of every forwarding member except <see cref="Name"/>, <see cref="HostWorkers"/> and
    /// <see cref="WithOneHostThread"/>, with the member's name ("ConvolutionForward", "CopyToHost", "Allocate"): the one
    /// place a counting or tracing wrapper needs to override. Does nothing here.
    /// </summary>
    protected virtual void OnKernel([CallerMemberName] string kernel = "") { }

    public virtual string Name => Inner.Name;
    public virtual int HostWorkers => 1;
    public virtual IBackend WithOneHostThread() => this;

    public virtual Tensor Allocate(Shape shape)
    {
        OnKernel();
        return new(this, Inner.Allocate(shape).Storage, shape);
    }

    public virtual void CopyFromHost(ReadOnlySpan<float> source, Tensor destination)
    {
        OnKernel();
        Inner.CopyFromHost(source, destination);
    }

    public virtual void CopyToHost(Tensor source, Span<float> destination)
    {
        OnKernel();
        Inner.CopyToHost(source, destination);
    }

    public virtual void Copy(Tensor source, Tensor destination)
    {
        OnKernel();
        Inner.Copy(source, destination);
    }

    public virtual void Fill(Tensor tensor, float value)
    {
        OnKernel();
        Inner.Fill(tensor, value);
    }

    public virtual void Scale(Tensor x, float alpha, Tensor y)
    {
        OnKernel();
        Inner.Scale(x, alpha, y);
    }

    public virtual void Add(Tensor a, Tensor b, Tensor y)
    {
        OnKernel();
        Inner.Add(a, b, y);
    }

    public virtual void AddScaled(Tensor x, float alpha, Tensor y)
    {
        OnKernel();
        Inner.AddScaled(x, alpha, y);
    }

    public virtual void Multiply(Tensor a, Tensor b, Tensor y)
    {
        OnKernel();
        Inner.Multiply(a, b, y);
    }

    public virtual double Sum(Tensor x)
    {
        OnKernel();
        return Inner.Sum(x);
    }

    public virtual void MatMul(Tensor a, bool transA, Tensor b, bool transB, Tensor c, float alpha = 1f, float beta = 0f)
    {
        OnKernel();
        Inner.MatMul(a, transA, b, transB, c, alpha, beta);
    }

    public virtual void AddChannelBias(Tensor y, Tensor bias)
    {
        OnKernel();
        Inner.AddChannelBias(y, bias);
    }

    public virtual void SumPerChannel(Tensor dy, Tensor db)
    {
        OnKernel();
        Inner.SumPerChannel(dy, db);
    }

    public virtual void ConvolutionForward(ConvGeometry g, Tensor x, Tensor w, Tensor? bias, Tensor y)
    {
        OnKernel();
        Inner.ConvolutionForward(g, x, w, bias, y);
    }

    public virtual void ConvolutionForward(ConvGeometry g, Tensor x, Tensor w, Tensor? bias, Tensor y, FilterCache cache)
    {
        OnKernel();
        Inner.ConvolutionForward(g, x, w, bias, y, cache);
    }

    public virtual void ConvolutionBackwardData(ConvGeometry g, Tensor w, Tensor dy, Tensor dx)
    {
        OnKernel();
        Inner.ConvolutionBackwardData(g, w, dy, dx);
    }

    public virtual void ConvolutionBackwardFilter(ConvGeometry g, Tensor x, Tensor dy, Tensor dw)
    {
        OnKernel();
        Inner.ConvolutionBackwardFilter(g, x, dy, dw);
    }

    public virtual void Im2Col(ConvGeometry g, Tensor x, Tensor cols)
    {
        OnKernel();
        Inner.Im2Col(g, x, cols);
    }

    public virtual void Col2Im(ConvGeometry g, Tensor cols, Tensor x)
    {
        OnKernel();
        Inner.Col2Im(g, cols, x);
    }

    public virtual void PoolingForward(PoolGeometry g, Tensor x, Tensor y)
    {
        OnKernel();
        Inner.PoolingForward(g, x, y);
    }

    public virtual void PoolingBackward(PoolGeometry g, Tensor x, Tensor y, Tensor dy, Tensor dx)
    {
        OnKernel();
        Inner.PoolingBackward(g, x, y, dy, dx);
    }

    public virtual void PoolingReluForward(PoolGeometry g, Tensor x, Tensor y)
    {
        OnKernel();
        Inner.PoolingReluForward(g, x, y);
    }

    public virtual void PoolingReluBackward(PoolGeometry g, Tensor x, Tensor y, Tensor dy, Tensor dx)
    {
        OnKernel();
        Inner.PoolingReluBackward(g, x, y, dy, dx);
    }

    public virtual void LrnForward(LrnOptions options, Tensor x, Tensor y)
    {
        OnKernel();
        Inner.LrnForward(options, x, y);
    }

    public virtual void LrnBackward(LrnOptions options, Tensor x, Tensor y, Tensor dy, Tensor dx)
    {
        OnKernel();
        Inner.LrnBackward(options, x, y, dy, dx);
    }

    public virtual void BatchNormForwardTraining(Tensor x, Tensor gamma, Tensor beta, float epsilon, float momentum,
        Tensor runningMean, Tensor runningVariance, Tensor y, Tensor savedMean, Tensor savedInvStd)
    {
        OnKernel();
        Inner.BatchNormForwardTraining(x, gamma, beta, epsilon, momentum, runningMean, runningVariance, y, savedMean, savedInvStd);
    }

    public virtual void BatchNormForwardInference(Tensor x, Tensor gamma, Tensor beta, Tensor mean, Tensor variance, float epsilon, Tensor y)
    {
        OnKernel();
        Inner.BatchNormForwardInference(x, gamma, beta, mean, variance, epsilon, y);
    }

    public virtual void BatchNormBackward(Tensor x, Tensor dy, Tensor gamma, Tensor savedMean, Tensor savedInvStd,
        Tensor dx, Tensor dgamma, Tensor dbeta)
    {
        OnKernel();
        Inner.BatchNormBackward(x, dy, gamma, savedMean, savedInvStd, dx, dgamma, dbeta);
    }

    public virtual void BatchNormReluForwardTraining(Tensor x, Tensor gamma, Tensor beta, float epsilon, float momentum,
        Tensor runningMean, Tensor runningVariance, Tensor y, Tensor savedMean, Tensor savedInvStd)
    {
        OnKernel();
        Inner.BatchNormReluForwardTraining(x, gamma, beta, epsilon, momentum, runningMean, runningVariance, y, savedMean, savedInvStd);
    }

    public virtual void BatchNormReluBackward(Tensor x, Tensor y, Tensor dy, Tensor gamma, Tensor savedMean, Tensor savedInvStd,
        Tensor dx, Tensor dgamma, Tensor dbeta)
    {
        OnKernel();
        Inner.BatchNormReluBackward(x, y, dy, gamma, savedMean, savedInvStd, dx, dgamma, dbeta);
    }

    public virtual void DropoutForward(Tensor x, float p, ulong seed, Tensor mask, Tensor y)
    {
        OnKernel();
        Inner.DropoutForward(x, p, seed, mask, y);
    }

    public virtual void ActivationForward(ActivationKind kind, float alpha, Tensor x, Tensor y)
    {
        OnKernel();
        Inner.ActivationForward(kind, alpha, x, y);
    }

    public virtual void ActivationBackward(ActivationKind kind, float alpha, Tensor x, Tensor y, Tensor dy, Tensor dx)
    {
        OnKernel();
        Inner.ActivationBackward(kind, alpha, x, y, dy, dx);
    }

    public virtual void SoftmaxForward(Tensor x, Tensor y, bool log)
    {
        OnKernel();
        Inner.SoftmaxForward(x, y, log);
    }

    public virtual void SoftmaxBackward(Tensor y, Tensor dy, Tensor dx, bool log)
    {
        OnKernel();
        Inner.SoftmaxBackward(y, dy, dx, log);
    }

    public virtual void SoftmaxCrossEntropyForward(Tensor logits, Tensor labels, float labelSmoothing, Tensor loss, Tensor probabilities)
    {
        OnKernel();
        Inner.SoftmaxCrossEntropyForward(logits, labels, labelSmoothing, loss, probabilities);
    }

    public virtual void SoftmaxCrossEntropyBackward(Tensor probabilities, Tensor labels, float labelSmoothing, float scale, Tensor dlogits)
    {
        OnKernel();
        Inner.SoftmaxCrossEntropyBackward(probabilities, labels, labelSmoothing, scale, dlogits);
    }

    public virtual void LossAndCorrect(Tensor loss, Tensor probabilities, Tensor labels, Tensor stats, int row)
    {
        OnKernel();
        Inner.LossAndCorrect(loss, probabilities, labels, stats, row);
    }

    public virtual void SgdStep(Tensor param, Tensor grad, Tensor? velocity, float learningRate, float momentum, bool nesterov, float weightDecay)
    {
        OnKernel();
        Inner.SgdStep(param, grad, velocity, learningRate, momentum, nesterov, weightDecay);
    }

    public virtual void AdamStep(Tensor param, Tensor grad, Tensor m, Tensor v, float learningRate, float beta1, float beta2, float epsilon,
        float weightDecay, bool decoupled, long step)
    {
        OnKernel();
        Inner.AdamStep(param, grad, m, v, learningRate, beta1, beta2, epsilon, weightDecay, decoupled, step);
    }
}
