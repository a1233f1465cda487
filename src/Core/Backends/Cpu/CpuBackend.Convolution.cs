using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Backends.Cpu;

public sealed partial class CpuBackend
{
    public void ConvolutionForward(ConvGeometry g, Tensor x, Tensor w, Tensor? bias, Tensor y) => throw new NotImplementedException();
    public void ConvolutionBackwardData(ConvGeometry g, Tensor w, Tensor dy, Tensor dx) => throw new NotImplementedException();
    public void ConvolutionBackwardFilter(ConvGeometry g, Tensor x, Tensor dy, Tensor dw) => throw new NotImplementedException();
    public void Im2Col(ConvGeometry g, Tensor x, Tensor cols) => throw new NotImplementedException();
    public void Col2Im(ConvGeometry g, Tensor cols, Tensor x) => throw new NotImplementedException();
}
