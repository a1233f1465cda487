using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Backends.Cpu;

public sealed partial class CpuBackend
{
    public void DropoutForward(Tensor x, float p, ulong seed, Tensor mask, Tensor y) => throw new NotImplementedException();
    public void ActivationForward(ActivationKind kind, float alpha, Tensor x, Tensor y) => throw new NotImplementedException();
    public void ActivationBackward(ActivationKind kind, float alpha, Tensor x, Tensor y, Tensor dy, Tensor dx) => throw new NotImplementedException();
    public void SoftmaxForward(Tensor x, Tensor y, bool log) => throw new NotImplementedException();
    public void SoftmaxBackward(Tensor y, Tensor dy, Tensor dx, bool log) => throw new NotImplementedException();
    public void SoftmaxCrossEntropyForward(Tensor logits, Tensor labels, Tensor loss, Tensor probabilities) => throw new NotImplementedException();
    public void SoftmaxCrossEntropyBackward(Tensor probabilities, Tensor labels, float scale, Tensor dlogits) => throw new NotImplementedException();
}
