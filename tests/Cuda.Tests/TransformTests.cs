using Microsoft.ML;
using MLNet.ConvNet.Backends;
using MLNet.ConvNet.Transforms;
using MLNet.ConvNet.Transforms.Tests.TestKit;
using Xunit;

namespace MLNet.ConvNet.Cuda.Tests;

/// <summary>The five ML.NET transforms with Backend = Cuda: their kernels on the GPU, their values those of the CPU.</summary>
public sealed class TransformTests
{
    private readonly MLContext _ml = new(seed: 1);

    [Fact]
    public void Each_transform_on_the_gpu_gives_the_cpu_values()
    {
        var gpu = Gpu.Require();
        var data = Rows.View(_ml, Rows.Random(3, 10, 2 * 6 * 6), 2, 6, 6);
        var w = Rows.RandomTensor(5, 3, 2, 3, 3);
        Func<BackendKind, TensorTransformer>[] fits =
        [
            k => new ConvolutionEstimator(new ConvolutionEstimator.Options { OutputColumnName = "Y", InputColumnName = "Features", Filter = w, Backend = k }).Fit(data),
            k => new PoolingEstimator(new PoolingEstimator.Options { OutputColumnName = "Y", InputColumnName = "Features", Backend = k }).Fit(data),
            k => new LrnEstimator(new LrnEstimator.Options { OutputColumnName = "Y", InputColumnName = "Features", Backend = k }).Fit(data),
            k => new BatchNormEstimator(new BatchNormEstimator.Options { OutputColumnName = "Y", InputColumnName = "Features", Backend = k }).Fit(data),
            k => new ActivationEstimator(new ActivationEstimator.Options { OutputColumnName = "Y", InputColumnName = "Features", Backend = k }).Fit(data),
        ];
        foreach (var fit in fits)
        {
            var onGpu = fit(BackendKind.Cuda);
            var onCpu = fit(BackendKind.Cpu);
            Assert.Same(gpu, onGpu.Backend);
            var expected = Rows.Read(onCpu.Transform(data), "Y").SelectMany(r => r).ToArray();
            var actual = Rows.Read(onGpu.Transform(data), "Y").SelectMany(r => r).ToArray();
            Assert.Equal(expected.Length, actual.Length);
            double scale = expected.Max(v => Math.Abs((double)v)), worst = expected.Zip(actual, (a, b) => Math.Abs((double)a - b)).Max();
            Assert.True(worst <= 1e-4 * Math.Max(scale, 1e-6), $"{onGpu.GetType().Name}: GPU differs from CPU by {worst:G3} (scale {scale:G3})");
        }
    }
}
