using MLNet.ConvNet.Backends;
using MLNet.ConvNet.Backends.Contract;
using MLNet.ConvNet.Backends.Cpu;
using MLNet.ConvNet.Ops;
using Xunit;

namespace MLNet.ConvNet.Tests;

/// <summary>The backend contract (tests/Backends.Contract) on the CPU backend with its fast kernels, all cores.</summary>
public class CpuBackendContractTests : BackendContractTests
{
    protected override IBackend Backend { get; } = new CpuBackend();
}

/// <summary>The contract on a one-thread CPU backend: results must not depend on the thread count.</summary>
public class OneThreadCpuBackendContractTests : BackendContractTests
{
    protected override IBackend Backend { get; } = new CpuBackend(1);
}

/// <summary>
/// The contract tests can fail: a backend that is the CPU backend except for one deliberately wrong kernel fails the
/// contract test of that kernel, and passes the others.
/// </summary>
public class BackendContractCanFailTests
{
    /// <summary>The CPU backend with LRN's output off by 0.1% and AddChannelBias overwriting instead of accumulating.</summary>
    private sealed class BrokenBackend() : DelegatingBackend(new CpuBackend())
    {
        public override string Name => "broken";

        public override void LrnForward(LrnOptions options, Tensor x, Tensor y)
        {
            base.LrnForward(options, x, y);
            var tmp = Allocate(y.Shape);
            base.Scale(y, 1.001f, tmp);
            base.Copy(tmp, y);
        }

        public override void AddChannelBias(Tensor y, Tensor bias)
        {
            base.Fill(y, 0f); // forgets what y held
            base.AddChannelBias(y, bias);
        }
    }

    /// <summary>The CPU backend whose convolution forgets to write the last output element.</summary>
    private sealed class LazyBackend() : DelegatingBackend(new CpuBackend())
    {
        public override void ConvolutionForward(ConvGeometry g, Tensor x, Tensor w, Tensor? bias, Tensor y)
        {
            var scratch = Allocate(y.Shape);
            base.ConvolutionForward(g, x, w, bias, scratch);
            var host = new float[y.Length];
            CopyToHost(y, host);                 // what y held before (NaN in the contract tests)
            var computed = new float[y.Length];
            CopyToHost(scratch, computed);
            computed.AsSpan(0, y.Length - 1).CopyTo(host);
            CopyFromHost(host, y);
        }
    }

    private sealed class Contract(IBackend backend) : BackendContractTests
    {
        protected override IBackend Backend => backend;
    }

    [Fact]
    public void A_wrong_kernel_fails_its_contract_test_and_only_that_one()
    {
        var broken = new Contract(new BrokenBackend());
        var e = Assert.ThrowsAny<Exception>(() => broken.Lrn_forward_and_backward(5, 1e-4f, 0.75f, 2f, 7));
        Assert.Contains("LrnForward", e.Message);
        e = Assert.ThrowsAny<Exception>(() => broken.AddChannelBias_accumulates_and_SumPerChannel_overwrites());
        Assert.Contains("AddChannelBias", e.Message);
        // The kernels it did not break pass.
        broken.Element_wise_kernels_and_Sum();
        broken.Convolution_forward_backward_data_and_backward_filter_on_random_configurations(2, 1);
    }

    [Fact]
    public void An_output_element_left_unwritten_fails()
    {
        var lazy = new Contract(new LazyBackend());
        var e = Assert.ThrowsAny<Exception>(() => lazy.Convolution_forward_backward_data_and_backward_filter_on_random_configurations(2, 0));
        Assert.Contains("ConvolutionForward", e.Message);
        Assert.Contains("NaN", e.Message);
    }
}
