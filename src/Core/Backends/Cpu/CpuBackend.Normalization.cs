using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Backends.Cpu;

public sealed partial class CpuBackend
{
    public void LrnForward(LrnOptions options, Tensor x, Tensor y) => throw new NotImplementedException();
    public void LrnBackward(LrnOptions options, Tensor x, Tensor y, Tensor dy, Tensor dx) => throw new NotImplementedException();
    public void BatchNormForwardTraining(Tensor x, Tensor gamma, Tensor beta, float epsilon, float momentum,
        Tensor runningMean, Tensor runningVariance, Tensor y, Tensor savedMean, Tensor savedInvStd) => throw new NotImplementedException();
    public void BatchNormForwardInference(Tensor x, Tensor gamma, Tensor beta, Tensor mean, Tensor variance, float epsilon, Tensor y) => throw new NotImplementedException();
    public void BatchNormBackward(Tensor x, Tensor dy, Tensor gamma, Tensor savedMean, Tensor savedInvStd,
        Tensor dx, Tensor dgamma, Tensor dbeta) => throw new NotImplementedException();
}
