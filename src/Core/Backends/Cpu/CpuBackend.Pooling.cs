using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Backends.Cpu;

public sealed partial class CpuBackend
{
    public void PoolingForward(PoolGeometry g, Tensor x, Tensor y) => throw new NotImplementedException();
    public void PoolingBackward(PoolGeometry g, Tensor x, Tensor y, Tensor dy, Tensor dx) => throw new NotImplementedException();
}
