using System.Collections.Concurrent;
using Microsoft.ML;
using MLNet.ConvNet.Backends;
using MLNet.ConvNet.Backends.Cpu;
using MLNet.ConvNet.Ops;
using MLNet.ConvNet.Transforms.Tests.TestKit;
using Xunit;

namespace MLNet.ConvNet.Transforms.Tests;

/// <summary>Every transform runs its kernels on the backend its options choose, and a bad choice is named.</summary>
public class BackendOptionTests
{
    private readonly MLContext _ml = new(seed: 1);

    private sealed class CountingBackend() : DelegatingBackend(new CpuBackend(1))
    {
        public ConcurrentDictionary<string, long> Calls { get; } = new();
        public override string Name => "counting";
        public long this[string kernel] => Calls.TryGetValue(kernel, out long n) ? n : 0;
        protected override void OnKernel(string kernel = "") => Calls.AddOrUpdate(kernel, 1, (_, n) => n + 1);
    }

    [Fact]
    public void Each_transform_runs_its_kernel_on_the_chosen_backend_with_the_same_values()
    {
        var data = Rows.View(_ml, Rows.Random(3, 10, 2 * 6 * 6), 2, 6, 6);
        var w = Rows.RandomTensor(5, 3, 2, 3, 3);
        (string kernel, Func<IBackend?, TensorTransformOptions> options)[] cases =
        [
            ("ConvolutionForward", b => new ConvolutionEstimator.Options { OutputColumnName = "Y", InputColumnName = "Features", Filter = w, CustomBackend = b }),
            ("PoolingForward", b => new PoolingEstimator.Options { OutputColumnName = "Y", InputColumnName = "Features", CustomBackend = b }),
            ("LrnForward", b => new LrnEstimator.Options { OutputColumnName = "Y", InputColumnName = "Features", CustomBackend = b }),
            ("BatchNormForwardInference", b => new BatchNormEstimator.Options { OutputColumnName = "Y", InputColumnName = "Features", CustomBackend = b }),
            ("ActivationForward", b => new ActivationEstimator.Options { OutputColumnName = "Y", InputColumnName = "Features", CustomBackend = b }),
        ];
        foreach (var (kernel, options) in cases)
        {
            var counting = new CountingBackend();
            var onCounting = Fit(options(counting), data);
            var onCpu = Fit(options(null), data);
            Assert.Same(counting, onCounting.Backend);
            Assert.Equal("cpu", onCpu.Backend.Name);
            Assert.Contains("Auto chose the CPU", onCpu.BackendReason);
            Assert.Equal(Rows.Read(onCpu.Transform(data), "Y"), Rows.Read(onCounting.Transform(data), "Y"));
            Assert.True(counting[kernel] > 0, $"{kernel} did not run on the chosen backend");
        }
    }

    private TensorTransformer Fit(TensorTransformOptions options, IDataView data) => options switch
    {
        ConvolutionEstimator.Options o => new ConvolutionEstimator(o).Fit(data),
        PoolingEstimator.Options o => new PoolingEstimator(o).Fit(data),
        LrnEstimator.Options o => new LrnEstimator(o).Fit(data),
        BatchNormEstimator.Options o => new BatchNormEstimator(o).Fit(data),
        ActivationEstimator.Options o => new ActivationEstimator(o).Fit(data),
        _ => throw new ArgumentException(options.GetType().Name),
    };

    [Fact]
    public void Bad_backend_options_are_named()
    {
        var data = Rows.View(_ml, Rows.Random(3, 4, 2 * 6 * 6), 2, 6, 6);
        var cuda = new PoolingEstimator(new PoolingEstimator.Options { OutputColumnName = "Y", InputColumnName = "Features", Backend = BackendKind.Cuda });
        bool gpuHere = BackendFactory.Create(new BackendOptions()).Reason.StartsWith("Auto chose the GPU", StringComparison.Ordinal);
        if (!gpuHere) // where a GPU is usable, Cuda is not an error (tests/Cuda.Tests runs the transforms there)
            Assert.Contains("Backend = Cuda", Assert.Throws<BackendUnavailableException>(() => cuda.Fit(data)).Message);
        Assert.Contains("DeviceIndex", Assert.ThrowsAny<ArgumentException>(() =>
            new PoolingEstimator(new PoolingEstimator.Options { OutputColumnName = "Y", DeviceIndex = -1 })).Message);
        Assert.Contains("MaxThreads", Assert.ThrowsAny<ArgumentException>(() =>
            new PoolingEstimator(new PoolingEstimator.Options { OutputColumnName = "Y", MaxThreads = 0 })).Message);
        Assert.Contains("Backend", Assert.ThrowsAny<ArgumentException>(() =>
            new PoolingEstimator(new PoolingEstimator.Options { OutputColumnName = "Y", Backend = (BackendKind)7 })).Message);
    }
}
