using MLNet.ConvNet.Backends.Cpu;
using MLNet.ConvNet.Ops;
using MLNet.ConvNet.Tests.TestKit;
using Xunit;

namespace MLNet.ConvNet.Tests;

/// <summary>
/// Pooling.Forward / Backward / Unpool / UnpoolBackward on the CPU backend: the seed's examples exactly,
/// random configurations against the naive float64 loops at the bottom of this file, finite-difference
/// gradients, argument checks and thread-count independence.
/// </summary>
public class PoolingTests
{
    private static readonly PoolingMode[] AllModes = [PoolingMode.Max, PoolingMode.AverageIncludingPadding, PoolingMode.AverageExcludingPadding];

    // ---- the seed's examples (Knet 1-D vectors are our [1, 1, X]) ----

    public static TheoryData<int, int?, int?, int?, PoolingMode, float[]> SeedExamples1D => new()
    {
        { 6, null, null, null, PoolingMode.Max, [2, 4, 6] },                           // pool(x)
        { 6, 3, null, null, PoolingMode.Max, [3, 6] },                                 // pool(x; window=3)
        { 6, null, 1, null, PoolingMode.Max, [1, 3, 5, 6] },                           // pool(x; padding=(1,0)), also mode=0
        { 10, null, null, 4, PoolingMode.Max, [2, 6, 10] },                            // pool(x; stride=4)
        { 6, null, 1, null, PoolingMode.AverageIncludingPadding, [0.5f, 2.5f, 4.5f, 3.0f] }, // mode=1
        { 6, null, 1, null, PoolingMode.AverageExcludingPadding, [1.0f, 2.5f, 4.5f, 6.0f] }, // mode=2
    };

    [Theory, MemberData(nameof(SeedExamples1D))]
    public void SeedExample1D(int length, int? window, int? padding, int? stride, PoolingMode mode, float[] expected)
    {
        var options = PoolingOptions.Default with { Mode = mode };
        if (window is int w) options = options with { Window = w };
        if (padding is int p) options = options with { Padding = p };
        if (stride is int s) options = options with { Stride = s };
        var x = Tensor.FromHost(Enumerable.Range(1, length).Select(v => (float)v).ToArray(), 1, 1, length);
        var y = Pooling.Forward(x, options);
        Assert.Equal(new Shape(1, 1, expected.Length), y.Shape);
        GradCheck.AssertExact(expected, y, $"seed 1-D X={length} {options}");
    }

    [Fact]
    public void ReluIntoMaxPoolingDocExampleAndChecks()
    {
        // Pooling.ForwardRelu's example: relu([-3, -1, 2, -5]) = [0, 0, 2, 0] pools to [0, 2]; BackwardRelu with dy = [5, 7]
        // sends 5 to the first cell of the tied window, where the ReLU's slope is 0, and 7 to the 2.
        var x = Tensor.FromHost([-3f, -1f, 2f, -5f], 1, 1, 4);
        var g = PoolGeometry.Create(x.Shape, new PoolingOptions { Window = 2 });
        var y = x.Backend.Allocate(g.Output);
        Pooling.ForwardRelu(g, x, y);
        GradCheck.AssertExact([0f, 2f], y, "ForwardRelu");
        var dx = x.Backend.Allocate(g.Input);
        Pooling.BackwardRelu(g, x, y, Tensor.FromHost([5f, 7f], 1, 1, 2), dx);
        GradCheck.AssertExact([0f, 0f, 7f, 0f], dx, "BackwardRelu");

        // Only max pooling takes the ReLU in; a y of the wrong shape and an output aliasing an input are refused.
        var average = PoolGeometry.Create(x.Shape, new PoolingOptions { Window = 2, Mode = PoolingMode.AverageIncludingPadding });
        Assert.Contains("max pooling only", Assert.Throws<ArgumentException>(() => Pooling.ForwardRelu(average, x, y)).Message);
        Assert.Contains("y has shape", Assert.Throws<ArgumentException>(() => Pooling.BackwardRelu(g, x, dx, Tensor.FromHost([5f, 7f], 1, 1, 2), dx)).Message);
        Assert.Throws<ArgumentException>(() => Pooling.BackwardRelu(g, x, y, Tensor.FromHost([5f, 7f], 1, 1, 2), x));
    }

    [Fact]
    public void SeedExample2D()
    {
        // Knet: x = reshape(1.0:16.0, (4,4,1,1)) fills column-major, which is our row-major memory 1..16;
        // pool(x) prints [6 14; 8 16].
        var x = Tensor.FromHost(Enumerable.Range(1, 16).Select(v => (float)v).ToArray(), 1, 1, 4, 4);
        var y = Pooling.Forward(x);
        Assert.Equal(new Shape(1, 1, 2, 2), y.Shape);
        GradCheck.AssertExact(Knet([[6, 14], [8, 16]]), y, "seed 2-D");
    }

    [Fact]
    public void SeedExampleTwoChannels()
    {
        // Knet 4x4x2x1 (two channels, one instance) = our [1, 2, 4, 4].
        var x = FromKnet(
            [Knet([[0.880221f, 0.738729f, 0.317231f, 0.990521f],
                   [0.626842f, 0.562692f, 0.339969f, 0.92469f],
                   [0.416676f, 0.403625f, 0.352799f, 0.46624f],
                   [0.566254f, 0.634703f, 0.0632812f, 0.0857779f]]),
             Knet([[0.300799f, 0.407623f, 0.26275f, 0.767884f],
                   [0.217025f, 0.0055375f, 0.623168f, 0.957374f],
                   [0.154975f, 0.246693f, 0.769524f, 0.628197f],
                   [0.259161f, 0.648074f, 0.333324f, 0.46305f]])],
            instances: 1);
        var y = Pooling.Forward(x);
        Assert.Equal(new Shape(1, 2, 2, 2), y.Shape);
        // Pooled values are copies of input entries, so the parsed float32 values match exactly.
        GradCheck.AssertExact(
            [.. Knet([[0.880221f, 0.990521f], [0.634703f, 0.46624f]]),
             .. Knet([[0.407623f, 0.957374f], [0.648074f, 0.769524f]])], y, "seed two channels");
    }

    [Fact]
    public void SeedExampleTwoInstances()
    {
        // Knet 4x4x1x2 (one channel, two instances) = our [2, 1, 4, 4].
        var x = FromKnet(
            [Knet([[0.155228f, 0.848345f, 0.629651f, 0.262436f],
                   [0.729994f, 0.320431f, 0.466628f, 0.0293943f],
                   [0.374592f, 0.662795f, 0.819015f, 0.974298f],
                   [0.421283f, 0.83866f, 0.385306f, 0.36081f]]),
             Knet([[0.0562608f, 0.598084f, 0.0231604f, 0.232413f],
                   [0.71073f, 0.411324f, 0.28688f, 0.287947f],
                   [0.997445f, 0.618981f, 0.471971f, 0.684064f],
                   [0.902232f, 0.570232f, 0.190876f, 0.339076f]])],
            instances: 2);
        var y = Pooling.Forward(x);
        Assert.Equal(new Shape(2, 1, 2, 2), y.Shape);
        GradCheck.AssertExact(
            [.. Knet([[0.848345f, 0.629651f], [0.83866f, 0.974298f]]),
             .. Knet([[0.71073f, 0.287947f], [0.997445f, 0.684064f]])], y, "seed two instances");
    }

    // ---- forward against the float64 reference ----

    /// <summary>Shape, window, padding, stride: 1-D/2-D/3-D, odd sizes, stride != window, overlaps, padding, N and C > 1.</summary>
    private static readonly (int[] Shape, int[] Window, int[] Padding, int[] Stride)[] Configs =
    [
        ([2, 3, 11], [3], [1], [2]),                       // overlapping, padded
        ([1, 2, 7], [4], [3], [1]),                        // padding = window - 1, stride 1
        ([3, 1, 13], [2], [1], [5]),                       // stride > window: skipped cells
        ([2, 3, 7, 9], [3, 2], [1, 0], [2, 3]),
        ([3, 2, 5, 6], [3, 3], [2, 1], [1, 2]),
        ([1, 1, 8, 8], [2, 2], [0, 0], [2, 2]),
        ([2, 2, 5, 6, 7], [2, 3, 2], [1, 1, 0], [1, 2, 3]),
        ([1, 3, 4, 5, 3], [3, 2, 3], [0, 1, 2], [2, 1, 1]),
    ];

    public static TheoryData<int[], int[], int[], int[]> Configurations => Rows(Configs);

    public static TheoryData<int[], int[], int[], int[]> PaddedConfigurations => Rows(Configs.Where(c => c.Padding.Any(p => p > 0)));

    private static TheoryData<int[], int[], int[], int[]> Rows(IEnumerable<(int[], int[], int[], int[])> configs)
    {
        var data = new TheoryData<int[], int[], int[], int[]>();
        foreach (var (shape, window, padding, stride) in configs) data.Add(shape, window, padding, stride);
        return data;
    }

    [Theory, MemberData(nameof(Configurations))]
    public void ForwardMatchesReference(int[] shape, int[] window, int[] padding, int[] stride)
    {
        var rng = new Random(11);
        foreach (var mode in AllModes)
            CheckForward(rng, shape, window, padding, stride, mode);
    }

    [Fact]
    public void ForwardMatchesReferenceOnRandomConfigurations()
    {
        var rng = new Random(12);
        for (int trial = 0; trial < 40; trial++)
        {
            int rank = 1 + rng.Next(3);
            int[] window = new int[rank], padding = new int[rank], stride = new int[rank], shape = new int[rank + 2];
            shape[0] = 1 + rng.Next(3); shape[1] = 1 + rng.Next(3);
            for (int i = 0; i < rank; i++)
            {
                window[i] = 1 + rng.Next(4);
                padding[i] = rng.Next(window[i]);
                stride[i] = 1 + rng.Next(4);
                shape[i + 2] = Math.Max(1, window[i] - 2 * padding[i]) + rng.Next(rank == 3 ? 4 : 9);
            }
            CheckForward(rng, shape, window, padding, stride, AllModes[rng.Next(3)]);
        }
    }

    private static void CheckForward(Random rng, int[] shape, int[] window, int[] padding, int[] stride, PoolingMode mode)
    {
        var options = Options(window, padding, stride, mode);
        string what = $"x {Shape.Format(shape)} {options}";
        var data = TestData.Uniform(rng, Length(shape), 2f);
        var y = Pooling.Forward(Tensor.FromHost(data, shape), options);
        var want = Reference.Pool(TestData.ToDouble(data), shape, window, padding, stride, mode, out var outShape);
        Assert.Equal(new Shape(outShape), y.Shape);
        if (mode == PoolingMode.Max)
            // A max is one of the input values: exact.
            Assert.Equal(Array.ConvertAll(want, v => (float)v), y.ToHost());
        else
            // Sums run in double and are rounded once: within half an ulp (6e-8 relative) of the exact value.
            GradCheck.AssertClose(y.ToHost(), want, what, relTol: 1e-6, absTol: 1e-7);
    }

    [Theory, MemberData(nameof(PaddedConfigurations))]
    public void PaddingNeverWinsMax(int[] shape, int[] window, int[] padding, int[] stride)
    {
        // All inputs negative: a zero-padding rule would put 0 in every window touching the border.
        var rng = new Random(13);
        var data = TestData.Uniform(rng, Length(shape)).Select(v => -1.5f + 0.5f * v).ToArray();
        var y = Pooling.Forward(Tensor.FromHost(data, shape), Options(window, padding, stride, PoolingMode.Max)).ToHost();
        var want = Reference.Pool(TestData.ToDouble(data), shape, window, padding, stride, PoolingMode.Max, out _);
        var zeroPadded = Reference.Pool(TestData.ToDouble(data), shape, window, padding, stride, PoolingMode.Max, out _, padValue: 0);
        Assert.Equal(Array.ConvertAll(want, v => (float)v), y);
        Assert.All(y, v => Assert.True(v < 0, $"max {v} came from padding"));
        Assert.Contains(0.0, zeroPadded); // the configuration does put padding in some window
    }

    // ---- backward: finite differences on the reference ----

    [Theory, MemberData(nameof(Configurations))]
    public void BackwardMatchesFiniteDifferences(int[] shape, int[] window, int[] padding, int[] stride)
    {
        var rng = new Random(14);
        // Distinct values (a shuffled ramp, gaps >= 1/length >> the 1e-6 step) make max differentiable everywhere.
        var data = DistinctValues(rng, Length(shape));
        var x = Tensor.FromHost(data, shape);
        foreach (var mode in AllModes)
        {
            var options = Options(window, padding, stride, mode);
            var y = Pooling.Forward(x, options);
            var dyData = TestData.Uniform(rng, y.Length);
            var dx = Pooling.Backward(x, y, Tensor.FromHost(dyData, y.Shape), options);
            var want = GradCheck.Numeric(
                v => Reference.Pool(v, shape, window, padding, stride, mode, out _), TestData.ToDouble(data), TestData.ToDouble(dyData));
            // Each dx is a short double sum of dy / divisor rounded once (6e-8 relative); central differences on a
            // piecewise-linear float64 function are exact up to ~1e-9 here. 1e-5 leaves a wide margin.
            GradCheck.AssertClose(dx.ToHost(), want, $"dx, x {Shape.Format(shape)} {options}", relTol: 1e-5, absTol: 1e-7);
        }
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    public void MaxBackwardSendsTiesToTheFirstCell(int padding)
    {
        // Constant input with overlapping windows: every cell of every window is maximal.
        int[] shape = [2, 2, 5, 4];
        int[] window = [3, 2], pad = [padding, padding], stride = [1, 2];
        var data = Enumerable.Repeat(0.25f, Length(shape)).ToArray();
        data[7] = -3; // a smaller value changes which cell is first in some windows
        var options = Options(window, pad, stride, PoolingMode.Max);
        var x = Tensor.FromHost(data, shape);
        var y = Pooling.Forward(x, options);
        var dyData = TestData.Uniform(new Random(15), y.Length);
        var dx = Pooling.Backward(x, y, Tensor.FromHost(dyData, y.Shape), options);
        var want = Reference.MaxBackwardFirst(TestData.ToDouble(data), shape, window, pad, stride, TestData.ToDouble(dyData));
        // A handful of dy values summed in double and rounded once.
        GradCheck.AssertClose(dx.ToHost(), want, $"tied max backward, padding {padding}", relTol: 1e-6, absTol: 0);
    }

    [Fact]
    public void NaNPropagatesThroughEveryMode()
    {
        int[] shape = [1, 1, 8];
        var data = new float[] { 1, 2, 3, float.NaN, 5, 6, float.NaN, float.NaN };
        var x = Tensor.FromHost(data, shape);
        foreach (var mode in AllModes)
        {
            var options = PoolingOptions.Default with { Mode = mode };
            var y = Pooling.Forward(x, options).ToHost();
            // Windows [1,2], [3,NaN], [5,6], [NaN,NaN].
            Assert.False(float.IsNaN(y[0]) || float.IsNaN(y[2]), $"{mode}: {string.Join(", ", y)}");
            Assert.True(float.IsNaN(y[1]) && float.IsNaN(y[3]), $"{mode}: {string.Join(", ", y)}");
        }
        // Max backward sends a window's dy to its first NaN (the cell that produced the NaN).
        var maxY = Pooling.Forward(x);
        var dx = Pooling.Backward(x, maxY, Tensor.FromHost([1f, 2, 3, 4], 1, 1, 4)).ToHost();
        Assert.Equal([0f, 1, 0, 2, 0, 3, 4, 0], dx);
    }

    // ---- unpool ----

    [Theory, MemberData(nameof(Configurations))]
    public void UnpoolMatchesReferenceAndShapeRule(int[] shape, int[] window, int[] padding, int[] stride)
    {
        // Unpool takes the pooled size as input: use the pooled shape of the configuration.
        int[] pooled = Reference.PooledShape(shape, window, padding, stride);
        var data = TestData.Uniform(new Random(16), Length(pooled));
        var options = Options(window, padding, stride, PoolingMode.Max);
        var y = Pooling.Unpool(Tensor.FromHost(data, pooled), options);
        int[] expectedShape = [.. pooled[..2], .. Enumerable.Range(0, window.Length).Select(i => (pooled[i + 2] - 1) * stride[i] + window[i] - 2 * padding[i])];
        Assert.Equal(new Shape(expectedShape), y.Shape);
        var want = Reference.Unpool(TestData.ToDouble(data), pooled, window, padding, stride, out var refShape);
        Assert.Equal(expectedShape, refShape);
        // Unpool scales by the window volume and divides again in the kernel: a few ulps at most.
        GradCheck.AssertClose(y.ToHost(), want, $"unpool {Shape.Format(pooled)} {options}", relTol: 1e-6, absTol: 1e-7);
    }

    public static TheoryData<int[], int[], int[], PoolingMode> NonOverlapping => new()
    {
        { [2, 3, 4], [2], [0], PoolingMode.AverageIncludingPadding },
        { [2, 2, 3, 4], [3, 2], [1, 1], PoolingMode.AverageExcludingPadding },
        { [1, 3, 2, 3, 2], [2, 3, 3], [1, 0, 2], PoolingMode.Max },
        { [3, 1, 3, 3], [3, 2], [0, 0], PoolingMode.AverageIncludingPadding },
        { [1, 2, 5], [3], [2], PoolingMode.AverageExcludingPadding },
    };

    [Theory, MemberData(nameof(NonOverlapping))]
    public void PoolOfUnpoolGivesBackItsInput(int[] pooled, int[] window, int[] padding, PoolingMode mode)
    {
        // Stride = window: windows do not overlap, so every unpooled cell holds exactly its window's value.
        var data = TestData.Uniform(new Random(17), Length(pooled));
        var options = Options(window, padding, window, mode);
        var back = Pooling.Forward(Pooling.Unpool(Tensor.FromHost(data, pooled), options), options);
        Assert.Equal(new Shape(pooled), back.Shape);
        GradCheck.AssertClose(back.ToHost(), TestData.ToDouble(data), $"pool(unpool) {mode}", relTol: 1e-6, absTol: 1e-7);
    }

    [Theory]
    [InlineData(new[] { 2, 3, 6 }, new[] { 3 })]
    [InlineData(new[] { 1, 2, 4, 6 }, new[] { 2, 3 })]
    [InlineData(new[] { 2, 1, 2, 4, 3 }, new[] { 2, 2, 3 })]
    public void UnpoolOfAveragePoolSpreadsEachWindowMean(int[] shape, int[] window)
    {
        // Sizes divisible by the window, no padding, stride = window: every cell becomes the mean of its window.
        var data = TestData.Uniform(new Random(18), Length(shape));
        var options = Options(window, new int[window.Length], window, PoolingMode.AverageIncludingPadding);
        var y = Pooling.Unpool(Pooling.Forward(Tensor.FromHost(data, shape), options), options);
        Assert.Equal(new Shape(shape), y.Shape);
        var means = Reference.Pool(TestData.ToDouble(data), shape, window, new int[window.Length], window, PoolingMode.AverageIncludingPadding, out var pooled);
        var want = new double[data.Length];
        int i = 0;
        for (int plane = 0; plane < shape[0] * shape[1]; plane++)
            foreach (var cell in Reference.Odometer(shape[2..]))
            {
                int o = 0;
                for (int a = 0; a < window.Length; a++) o = o * pooled[a + 2] + cell[a] / window[a];
                want[i++] = means[plane * Length(pooled[2..]) + o];
            }
        GradCheck.AssertClose(y.ToHost(), want, "unpool(average pool)", relTol: 1e-6, absTol: 1e-7);
    }

    [Theory, MemberData(nameof(Configurations))]
    public void UnpoolBackwardMatchesFiniteDifferencesAndIsTheAdjoint(int[] shape, int[] window, int[] padding, int[] stride)
    {
        var rng = new Random(19);
        int[] pooled = Reference.PooledShape(shape, window, padding, stride);
        var options = Options(window, padding, stride, PoolingMode.AverageExcludingPadding); // mode must not matter
        var a = TestData.Uniform(rng, Length(pooled));
        var up = Pooling.Unpool(Tensor.FromHost(a, pooled), options);
        var b = TestData.Uniform(rng, up.Length);
        var dx = Pooling.UnpoolBackward(Tensor.FromHost(b, up.Shape), options);
        Assert.Equal(new Shape(pooled), dx.Shape);
        var want = GradCheck.Numeric(v => Reference.Unpool(v, pooled, window, padding, stride, out _), TestData.ToDouble(a), TestData.ToDouble(b));
        // Unpool is linear, so the central difference is exact up to ~1e-9; the kernel sums a window in double,
        // rounds, then scales by the window volume in float32 (2 roundings, ~1.2e-7 relative).
        GradCheck.AssertClose(dx.ToHost(), want, $"unpool backward {options}", relTol: 1e-5, absTol: 1e-7);
        // <unpool(a), b> == <a, unpoolBackward(b)>: both sides are float32 results summed in double.
        double left = GradCheck.Dot(TestData.ToDouble(up), TestData.ToDouble(b));
        double right = GradCheck.Dot(TestData.ToDouble(a), TestData.ToDouble(dx));
        Assert.True(Math.Abs(left - right) <= 1e-5 * (1 + Math.Abs(left)), $"adjointness: {left} vs {right}");
    }

    // ---- arguments ----

    private sealed record BadCase(Action Call, Type Exception, string Parameter, string[] MessageParts);

    private static readonly Dictionary<string, BadCase> BadCases = new()
    {
        ["window 0"] = new(() => Pooling.Forward(Zeros(1, 1, 6), new() { Window = 0 }), typeof(ArgumentOutOfRangeException), "window", ["[1, 1, 6]"]),
        ["stride 0"] = new(() => Pooling.Forward(Zeros(1, 1, 6), new() { Stride = 0 }), typeof(ArgumentOutOfRangeException), "stride", ["[1, 1, 6]"]),
        ["stride 0 on 2-D"] = new(() => Pooling.Forward(Zeros(1, 1, 6, 6), new() { Stride = new[] { 1, 0 } }), typeof(ArgumentOutOfRangeException), "stride", ["[1, 1, 6, 6]"]),
        ["negative padding"] = new(() => Pooling.Forward(Zeros(2, 1, 6), new() { Padding = -1 }), typeof(ArgumentOutOfRangeException), "padding", ["[2, 1, 6]"]),
        ["padding = window"] = new(() => Pooling.Forward(Zeros(1, 3, 6, 5), new() { Window = 2, Padding = new[] { 0, 2 } }), typeof(ArgumentOutOfRangeException), "padding", ["[1, 3, 6, 5]", "window 2"]),
        ["window larger than padded input"] = new(() => Pooling.Forward(Zeros(1, 1, 3), new() { Window = 6, Padding = 1 }), typeof(ArgumentException), "window", ["[1, 1, 3]", "6", "5"]),
        ["rank 2"] = new(() => Pooling.Forward(Zeros(2, 3)), typeof(ArgumentException), "x", ["[2, 3]"]),
        ["rank 6"] = new(() => Pooling.Forward(Zeros(1, 1, 2, 2, 2, 2)), typeof(ArgumentException), "x", ["[1, 1, 2, 2, 2, 2]"]),
        // PerAxis names the option, its values and the spatial rank (it does not see the input shape).
        ["three windows for 2-D"] = new(() => Pooling.Forward(Zeros(1, 1, 4, 4), new() { Window = new[] { 2, 2, 2 } }), typeof(ArgumentException), "window", ["[2, 2, 2]", "2 spatial"]),
        ["two strides for 1-D"] = new(() => Pooling.Forward(Zeros(1, 1, 6), new() { Stride = new[] { 1, 2 } }), typeof(ArgumentException), "stride", ["[1, 2]", "1 spatial"]),
        ["dy of the input's shape"] = new(() => Pooling.Backward(Zeros(1, 1, 6), Zeros(1, 1, 3), Zeros(1, 1, 6)), typeof(ArgumentException), "dy", ["[1, 1, 6]", "[1, 1, 3]"]),
        ["y of the wrong shape"] = new(() => Pooling.Backward(Zeros(1, 2, 4, 4), Zeros(1, 2, 2, 3), Zeros(1, 2, 2, 2)), typeof(ArgumentException), "y", ["[1, 2, 2, 3]", "[1, 2, 2, 2]"]),
        ["unpool padding too large"] = new(() => Pooling.Unpool(Zeros(1, 1, 1), new() { Window = 2, Padding = 1 }), typeof(ArgumentException), "padding", ["[1, 1, 1]"]),
        ["unpool backward dy Unpool cannot give"] = new(() => Pooling.UnpoolBackward(Zeros(1, 1, 7)), typeof(ArgumentException), "dy", ["[1, 1, 7]", "[1, 1, 6]"]),
        ["unpool backward rank 2"] = new(() => Pooling.UnpoolBackward(Zeros(4, 4)), typeof(ArgumentException), "dy", ["[4, 4]"]),
    };

    public static TheoryData<string> BadCaseNames => new(BadCases.Keys.ToArray());

    [Theory, MemberData(nameof(BadCaseNames))]
    public void BadArgumentsThrowNamingParameterAndShape(string name)
    {
        var c = BadCases[name];
        var e = Assert.Throws(c.Exception, c.Call);
        var ae = Assert.IsAssignableFrom<ArgumentException>(e);
        Assert.Equal(c.Parameter, ae.ParamName);
        foreach (var part in c.MessageParts) Assert.Contains(part, ae.Message);
    }

    // ---- threads ----

    [Fact]
    public void SingleThreadIsBitIdenticalToDefault()
    {
        int[] shape = [3, 4, 5, 7, 6];
        int[] window = [3, 2, 3], padding = [1, 1, 2], stride = [2, 1, 2];
        var rng = new Random(20);
        var data = TestData.Uniform(rng, Length(shape));
        var one = new CpuBackend(maxThreads: 1);
        foreach (var mode in AllModes)
        {
            var options = Options(window, padding, stride, mode);
            var results = new List<float[]>[2];
            foreach (var (i, backend) in new[] { (0, (CpuBackend)one), (1, CpuBackend.Default) })
            {
                var x = Tensor.FromHost(data, new Shape(shape), backend);
                var y = Pooling.Forward(x, options);
                var dy = Tensor.FromHost(TestData.Uniform(new Random(21), y.Length), y.Shape, backend);
                var dx = Pooling.Backward(x, y, dy, options);
                results[i] = [y.ToHost(), dx.ToHost(), Pooling.Unpool(y, options).ToHost()];
            }
            for (int k = 0; k < 3; k++) Assert.Equal(results[0][k], results[1][k]);
        }
    }

    // ---- helpers ----

    private static PoolingOptions Options(int[] window, int[] padding, int[] stride, PoolingMode mode) =>
        new() { Window = window, Padding = padding, Stride = stride, Mode = mode };

    private static int Length(int[] dims) => dims.Aggregate(1, (a, b) => a * b);

    private static Tensor Zeros(params int[] dims) => Tensor.Zeros(new Shape(dims));

    private static float[] DistinctValues(Random rng, int n)
    {
        var v = Enumerable.Range(0, n).Select(i => (float)(2.0 * i / n - 1)).ToArray();
        rng.Shuffle(v);
        return v;
    }

    /// <summary>
    /// A matrix as Knet prints it (rows = its first index) in memory order: Knet's column-major (X1, X2) is the
    /// same memory as our row-major [X2, X1], so the printed matrix is our [H, W] plane transposed.
    /// </summary>
    private static float[] Knet(float[][] printed) =>
        [.. Enumerable.Range(0, printed[0].Length).SelectMany(j => printed.Select(row => row[j]))];

    /// <summary>Knet's 4x4 slices [:, :, c, n] as our [N, C, 4, 4] (channels vary fastest in Knet's last two dims).</summary>
    private static Tensor FromKnet(float[][] slices, int instances = 1) =>
        Tensor.FromHost([.. slices.SelectMany(s => s)], instances, slices.Length / instances, 4, 4);

    /// <summary>Naive float64 pooling and unpooling over any number of spatial dimensions, written for these tests.</summary>
    private static class Reference
    {
        /// <summary>All multi-indices below <paramref name="dims"/>, last index fastest.</summary>
        public static IEnumerable<int[]> Odometer(int[] dims)
        {
            var i = new int[dims.Length];
            while (true)
            {
                yield return (int[])i.Clone();
                int a = dims.Length - 1;
                while (a >= 0 && ++i[a] == dims[a]) i[a--] = 0;
                if (a < 0) yield break;
            }
        }

        public static int[] PooledShape(int[] shape, int[] w, int[] p, int[] s) =>
            [shape[0], shape[1], .. Enumerable.Range(0, w.Length).Select(i => 1 + (shape[i + 2] + 2 * p[i] - w[i]) / s[i])];

        /// <summary>Flat index within a plane of window cell k of output o, or -1 in padding.</summary>
        private static int Cell(int[] spatial, int[] o, int[] k, int[] p, int[] s)
        {
            int flat = 0;
            for (int i = 0; i < spatial.Length; i++)
            {
                int pos = o[i] * s[i] - p[i] + k[i];
                if (pos < 0 || pos >= spatial[i]) return -1;
                flat = flat * spatial[i] + pos;
            }
            return flat;
        }

        /// <summary>Pooling; padded cells are skipped by max unless <paramref name="padValue"/> is given.</summary>
        public static double[] Pool(double[] x, int[] shape, int[] w, int[] p, int[] s, PoolingMode mode, out int[] outShape, double? padValue = null)
        {
            outShape = PooledShape(shape, w, p, s);
            int[] spatial = shape[2..], outSpatial = outShape[2..];
            int inVol = Length(spatial), outVol = Length(outSpatial), winVol = Length(w);
            var y = new double[shape[0] * shape[1] * outVol];
            for (int plane = 0; plane < shape[0] * shape[1]; plane++)
            {
                int oi = 0;
                foreach (var o in Odometer(outSpatial))
                {
                    double max = double.NegativeInfinity, sum = 0;
                    int count = 0;
                    foreach (var k in Odometer(w))
                    {
                        int c = Cell(spatial, o, k, p, s);
                        if (c < 0) { if (padValue is double pv) max = Math.Max(max, pv); continue; }
                        double v = x[plane * inVol + c];
                        max = Math.Max(max, v); sum += v; count++;
                    }
                    y[plane * outVol + oi++] = mode switch
                    {
                        PoolingMode.Max => max,
                        PoolingMode.AverageIncludingPadding => sum / winVol,
                        _ => sum / count,
                    };
                }
            }
            return y;
        }

        /// <summary>Max pooling's gradient routing each dy to the first maximal in-input cell of its window.</summary>
        public static double[] MaxBackwardFirst(double[] x, int[] shape, int[] w, int[] p, int[] s, double[] dy)
        {
            int[] spatial = shape[2..], outSpatial = PooledShape(shape, w, p, s)[2..];
            int inVol = Length(spatial), outVol = Length(outSpatial);
            var dx = new double[x.Length];
            for (int plane = 0; plane < shape[0] * shape[1]; plane++)
            {
                int oi = 0;
                foreach (var o in Odometer(outSpatial))
                {
                    int best = -1;
                    foreach (var k in Odometer(w))
                    {
                        int c = Cell(spatial, o, k, p, s);
                        if (c >= 0 && (best < 0 || x[plane * inVol + c] > x[plane * inVol + best])) best = c;
                    }
                    dx[plane * inVol + best] += dy[plane * outVol + oi++];
                }
            }
            return dx;
        }

        /// <summary>Each value of x added into every in-input cell of its window; output (X - 1)S + W - 2P.</summary>
        public static double[] Unpool(double[] x, int[] shape, int[] w, int[] p, int[] s, out int[] outShape)
        {
            outShape = [shape[0], shape[1], .. Enumerable.Range(0, w.Length).Select(i => (shape[i + 2] - 1) * s[i] + w[i] - 2 * p[i])];
            int[] spatial = shape[2..], outSpatial = outShape[2..];
            int inVol = Length(spatial), outVol = Length(outSpatial);
            var y = new double[shape[0] * shape[1] * outVol];
            for (int plane = 0; plane < shape[0] * shape[1]; plane++)
            {
                int oi = 0;
                foreach (var o in Odometer(spatial))
                {
                    foreach (var k in Odometer(w))
                    {
                        int c = Cell(outSpatial, o, k, p, s);
                        if (c >= 0) y[plane * outVol + c] += x[plane * inVol + oi];
                    }
                    oi++;
                }
            }
            return y;
        }
    }
}
