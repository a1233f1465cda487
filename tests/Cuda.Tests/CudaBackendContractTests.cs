using MLNet.ConvNet.Backends;
using MLNet.ConvNet.Backends.Contract;
using Xunit;

namespace MLNet.ConvNet.Cuda.Tests;

/// <summary>
/// Every IBackend member of the CUDA backend against the reference backend (tests/Backends.Contract), at the contract's
/// fp32 tolerance (1e-4 of each output's scale): TF32 is off by default, so cuDNN and cuBLAS compute in true fp32 and
/// only the order of additions differs. Skips with the probe's reason where no GPU is present.
/// </summary>
public sealed class CudaBackendContractTests : BackendContractTests
{
    protected override IBackend Backend => Gpu.Require();
}

/// <summary>Auto picks the GPU where one is usable, and says so.</summary>
public sealed class CudaChoiceTests
{
    [Fact]
    public void Auto_chooses_the_gpu_when_one_is_usable()
    {
        var gpu = Gpu.Require();
        var choice = BackendFactory.Create(new BackendOptions());
        Assert.Same(gpu, choice.Backend);
        Assert.StartsWith("Auto chose the GPU: ", choice.Reason);
    }
}
