using MLNet.ConvNet.Backends.Cpu;
using MLNet.ConvNet.Ops;
using MLNet.ConvNet.Tests.TestKit;
using Xunit;

namespace MLNet.ConvNet.Tests;

public class LrnTests
{
    /// <summary>
    /// The documented formula, written independently of the kernel: for every element, the window of channels
    /// c - floor((size-1)/2) .. c + ceil((size-1)/2), skipping channels outside [0, C).
    /// </summary>
    private static double[] Reference(double[] x, int[] shape, int size, double alpha, double beta, double k)
    {
        int n = shape[0], c = shape[1], inner = x.Length / (n * c);
        int before = (size - 1) / 2, after = size / 2; // ceil((size-1)/2) == floor(size/2)
        var y = new double[x.Length];
        for (int s = 0; s < n; s++)
            for (int ch = 0; ch < c; ch++)
                for (int i = 0; i < inner; i++)
                {
                    double sum = 0;
                    for (int other = ch - before; other <= ch + after; other++)
                        if (other >= 0 && other < c)
                            sum += Math.Pow(x[(s * c + other) * inner + i], 2);
                    int at = (s * c + ch) * inner + i;
                    y[at] = x[at] / Math.Pow(k + alpha / size * sum, beta);
                }
        return y;
    }

    // Large alpha so the window sum matters (with cuDNN's default 1e-4 LRN is almost a constant scale).
    public static TheoryData<int[], int, float, float, float> Configurations => new()
    {
        { new[] { 2, 7, 3, 4 }, 5, 0.8f, 0.75f, 2f },
        { new[] { 1, 3, 5 }, 5, 1.5f, 0.75f, 1f },        // C smaller than the window
        { new[] { 2, 6, 2, 2, 3 }, 4, 1f, 0.5f, 1f },     // even size: one more channel after than before
        { new[] { 3, 5, 2 }, 2, 2f, 1.2f, 0.5f },         // even size 2: the channel and the next one
        { new[] { 3, 4 }, 3, 1f, 0.75f, 2f },             // [N, F]
        { new[] { 1, 1, 5, 5 }, 1, 1f, 0.75f, 1f },       // one channel, size 1
        { new[] { 2, 16, 3 }, 16, 3f, 0.75f, 2f },        // the largest size
        { new[] { 1, 9, 2, 2 }, 7, 0.5f, 0f, 2f },        // beta 0: identity
        { new[] { 2, 5, 3, 3 }, 5, 1e-4f, 0.75f, 2f },    // cuDNN's defaults
    };

    [Theory]
    [MemberData(nameof(Configurations))]
    public void ForwardMatchesFormula(int[] shape, int size, float alpha, float beta, float k)
    {
        var rng = new Random(size * 31 + shape.Length);
        var data = TestData.Uniform(rng, new Shape(shape).Length, 2f);
        var options = new LrnOptions { Size = size, Alpha = alpha, Beta = beta, K = k };
        var y = Lrn.Forward(Tensor.FromHost(data, shape), options);
        Assert.Equal(new Shape(shape), y.Shape);
        // The kernel works in double and rounds once: 1e-6 of the output's scale is ~10 float ulps.
        GradCheck.AssertClose(y.ToHost(), Reference(TestData.ToDouble(data), shape, size, alpha, beta, k), "LRN y", relTol: 1e-6);
    }

    [Theory]
    [MemberData(nameof(Configurations))]
    public void BackwardMatchesFiniteDifferences(int[] shape, int size, float alpha, float beta, float k)
    {
        var rng = new Random(size * 17 + shape.Length);
        int length = new Shape(shape).Length;
        var data = TestData.Uniform(rng, length, 2f);
        var dyData = TestData.Uniform(rng, length);
        var options = new LrnOptions { Size = size, Alpha = alpha, Beta = beta, K = k };
        var x = Tensor.FromHost(data, shape);
        var y = Lrn.Forward(x, options);
        var dx = Lrn.Backward(x, y, Tensor.FromHost(dyData, shape), options);
        var want = GradCheck.Numeric(v => Reference(v, shape, size, alpha, beta, k), TestData.ToDouble(data), TestData.ToDouble(dyData));
        // Default tolerance (1e-4 of the largest gradient): the kernel's only float32 errors are the rounded y
        // it reads and the final rounding, each ~1e-7 relative; a wrong window edge is an O(1) error.
        GradCheck.AssertClose(dx.ToHost(), want, "LRN dx");
    }

    [Fact]
    public void DefaultOptionsAreCuDnns()
    {
        var o = LrnOptions.Default;
        Assert.Equal((5, 1e-4f, 0.75f, 2f), (o.Size, o.Alpha, o.Beta, o.K));
        var data = TestData.Uniform(new Random(3), 2 * 6 * 4, 3f);
        int[] shape = [2, 6, 4];
        GradCheck.AssertClose(Lrn.Forward(Tensor.FromHost(data, shape)).ToHost(),
            Reference(TestData.ToDouble(data), shape, 5, 1e-4, 0.75, 2), "LRN y (defaults)", relTol: 1e-6);
    }

    [Fact]
    public void NaNPropagatesAlongItsWindow()
    {
        int[] shape = [1, 5, 2];
        var data = TestData.Uniform(new Random(4), 10);
        data[2 * 2 + 1] = float.NaN; // channel 2, position 1
        var y = Lrn.Forward(Tensor.FromHost(data, shape), new LrnOptions { Size = 3 }).ToHost();
        for (int c = 0; c < 5; c++)
        {
            Assert.Equal(Math.Abs(c - 2) <= 1, float.IsNaN(y[c * 2 + 1]));
            Assert.False(float.IsNaN(y[c * 2]));
        }
    }

    [Fact]
    public void ThreadCountDoesNotChangeResults()
    {
        int[] shape = [3, 8, 5, 7];
        var rng = new Random(5);
        var data = TestData.Uniform(rng, new Shape(shape).Length, 2f);
        var dyData = TestData.Uniform(rng, data.Length);
        var options = new LrnOptions { Size = 5, Alpha = 1f };
        (float[] y, float[] dx) Run(CpuBackend backend)
        {
            var x = Tensor.FromHost(data, new Shape(shape), backend);
            var y = Lrn.Forward(x, options);
            var dx = Lrn.Backward(x, y, Tensor.FromHost(dyData, new Shape(shape), backend), options);
            return (y.ToHost(), dx.ToHost());
        }
        var one = Run(new CpuBackend(maxThreads: 1));
        foreach (var backend in new[] { CpuBackend.Default, new CpuBackend(maxThreads: 3) })
        {
            var other = Run(backend);
            Assert.Equal(one.y, other.y);
            Assert.Equal(one.dx, other.dx);
        }
    }

    public static TheoryData<string, float, string> BadOptions => new()
    {
        { "size", 0, "size" },
        { "size", 17, "size" },
        { "alpha", -0.1f, "alpha" },
        { "beta", float.NaN, "beta" },
        { "k", 0f, "k" },
    };

    [Theory]
    [MemberData(nameof(BadOptions))]
    public void RejectsBadOptions(string option, float value, string parameter)
    {
        var o = option switch
        {
            "size" => new LrnOptions { Size = (int)value },
            "alpha" => new LrnOptions { Alpha = value },
            "beta" => new LrnOptions { Beta = value },
            _ => new LrnOptions { K = value },
        };
        var x = Tensor.Zeros(new Shape(1, 3, 2, 2));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Lrn.Forward(x, o));
        Assert.Equal(parameter, e.ParamName);
        Assert.Contains(value.ToString(), e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => Lrn.Backward(x, x, x, o));
    }

    [Fact]
    public void RejectsBadShapes()
    {
        var e = Assert.Throws<ArgumentException>(() => Lrn.Forward(Tensor.Zeros(new Shape(6))));
        Assert.Equal("x", e.ParamName);
        Assert.Contains("[6]", e.Message);

        var x = Tensor.Zeros(new Shape(1, 3, 2, 2));
        var wrong = Tensor.Zeros(new Shape(1, 3, 2, 3));
        e = Assert.Throws<ArgumentException>(() => Lrn.Backward(x, x, wrong));
        Assert.Equal("dy", e.ParamName);
        Assert.Contains("[1, 3, 2, 3]", e.Message);
        Assert.Contains("[1, 3, 2, 2]", e.Message);
    }
}
