namespace MLNet.ConvNet.Backends.Cuda;

// Members not written yet: each is being written in its own family file; delete its line here when it lands.
public sealed partial class CudaBackend
{
    private static NotSupportedException Pending(string member) => new($"CudaBackend.{member} is not written yet.");

    // element-wise, matrix product, per-channel, im2col (CudaBackend.Elementwise.cs, .MatMul.cs, .Im2Col.cs)
    public void Scale(Tensor x, float alpha, Tensor y) => throw Pending(nameof(Scale));
    public void Add(Tensor a, Tensor b, Tensor y) => throw Pending(nameof(Add));
    public void AddScaled(Tensor x, float alpha, Tensor y) => throw Pending(nameof(AddScaled));
    public void Multiply(Tensor a, Tensor b, Tensor y) => throw Pending(nameof(Multiply));
    public double Sum(Tensor x) => throw Pending(nameof(Sum));
    public void MatMul(Tensor a, bool transA, Tensor b, bool transB, Tensor c, float alpha = 1f, float beta = 0f) => throw Pending(nameof(MatMul));
    public void AddChannelBias(Tensor y, Tensor bias) => throw Pending(nameof(AddChannelBias));
    public void SumPerChannel(Tensor dy, Tensor db) => throw Pending(nameof(SumPerChannel));
    public void Im2Col(Ops.ConvGeometry g, Tensor x, Tensor cols) => throw Pending(nameof(Im2Col));
    public void Col2Im(Ops.ConvGeometry g, Tensor cols, Tensor x) => throw Pending(nameof(Col2Im));
    // dropout, activations, loss, statistics, optimizers (CudaBackend.Activation.cs, .Loss.cs, .Optimizers.cs)
    public void DropoutForward(Tensor x, float p, ulong seed, Tensor mask, Tensor y) => throw Pending(nameof(DropoutForward));
    public void ActivationForward(Ops.ActivationKind kind, float alpha, Tensor x, Tensor y) => throw Pending(nameof(ActivationForward));
    public void ActivationBackward(Ops.ActivationKind kind, float alpha, Tensor x, Tensor y, Tensor dy, Tensor dx) => throw Pending(nameof(ActivationBackward));
    public void SoftmaxCrossEntropyForward(Tensor logits, Tensor labels, float labelSmoothing, Tensor loss, Tensor probabilities) => throw Pending(nameof(SoftmaxCrossEntropyForward));
    public void SoftmaxCrossEntropyBackward(Tensor probabilities, Tensor labels, float labelSmoothing, float scale, Tensor dlogits) => throw Pending(nameof(SoftmaxCrossEntropyBackward));
    public void LossAndCorrect(Tensor loss, Tensor probabilities, Tensor labels, Tensor stats, int row) => throw Pending(nameof(LossAndCorrect));
    public void SgdStep(Tensor param, Tensor grad, Tensor? velocity, float learningRate, float momentum, bool nesterov, float weightDecay) => throw Pending(nameof(SgdStep));
    public void AdamStep(Tensor param, Tensor grad, Tensor m, Tensor v, float learningRate, float beta1, float beta2, float epsilon, float weightDecay, bool decoupled, long step) => throw Pending(nameof(AdamStep));
    // convolution in cuDNN (CudaBackend.Convolution.cs)
    // pooling, LRN, batch norm, softmax in cuDNN (CudaBackend.Pooling.cs, .Normalization.cs, .Softmax.cs)
}
