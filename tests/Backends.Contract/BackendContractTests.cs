using MLNet.ConvNet.Backends.Reference;
using MLNet.ConvNet.Ops;
using Xunit;

namespace MLNet.ConvNet.Backends.Contract;

/// <summary>
/// The contract every <see cref="IBackend"/> keeps, written once: each test runs one kernel on <see cref="Backend"/> and on
/// the oracle (<see cref="ReferenceBackend"/>, the readable reference loops) on the same random inputs and compares the
/// results within <see cref="Tolerance"/>, relative to the output's scale (its largest magnitude). A backend's test project
/// derives a class that names the backend (tests/Core.Tests/CpuBackendContractTests.cs; a GPU backend's tests do the same
/// and may widen the tolerance).
/// </summary>
/// <remarks>
/// <para>Data crosses only through the interface: inputs are made on the host and copied with <see cref="IBackend.Allocate"/>
/// and <see cref="IBackend.CopyFromHost"/>, results read with <see cref="IBackend.CopyToHost"/>; no test looks at storage,
/// so a backend whose memory is elsewhere runs these tests unchanged.</para>
/// <para>Besides the values, every comparison checks the rules of IBackend's remarks: outputs are overwritten (they are
/// filled with NaN before the call, so an element left unwritten shows), "accumulates" kernels add to what is there
/// (random starting values), and inputs are not modified (compared bit for bit after the call). The aliasing rules have
/// tests of their own: inputs may share memory with each other and may be reshaped views; the ops refuse an output that
/// shares memory with an input, so no kernel is ever asked to run in place.</para>
/// </remarks>
public abstract class BackendContractTests
{
    /// <summary>The backend under test.</summary>
    protected abstract IBackend Backend { get; }

    /// <summary>The oracle: the reference kernels.</summary>
    protected virtual IBackend Oracle => ReferenceBackend.Default;

    /// <summary>
    /// Largest difference allowed, relative to the output's scale (max |expected|, at least 1e-30): 1e-4 for float32 kernels
    /// that sum in another order. A GPU backend (TF32, other reduction trees) may widen it.
    /// </summary>
    protected virtual double Tolerance => 1e-4;

    // ---------------- helpers ----------------

    /// <summary>An input: host values and a shape; <see cref="Mutable"/> for the in-place arguments (optimizer state, running statistics).</summary>
    protected sealed record Input(float[] Values, Shape Shape, bool Mutable = false, bool NaNFilled = false);

    /// <summary>Seeded uniform values in [lo, hi).</summary>
    protected static float[] Uniform(Random rng, int count, float lo = -1f, float hi = 1f)
    {
        var r = new float[count];
        for (int i = 0; i < count; i++) r[i] = (float)(lo + (hi - lo) * rng.NextDouble());
        return r;
    }

    /// <summary>Seeded values with magnitude in [0.1, 2) and random sign: away from the kinks of ReLU-like functions at 0.</summary>
    protected static float[] AwayFromZero(Random rng, int count)
    {
        var r = new float[count];
        for (int i = 0; i < count; i++) r[i] = (float)((0.1 + 1.9 * rng.NextDouble()) * (rng.Next(2) == 0 ? -1 : 1));
        return r;
    }

    protected static Input In(float[] values, params int[] dims) => new(values, new Shape(dims));

    /// <summary>An output argument: filled with NaN before the call, so the kernel must write every element.</summary>
    protected static Input Out(params int[] dims) => new(new float[new Shape(dims).Length], new Shape(dims), Mutable: true, NaNFilled: true);

    /// <summary>An in-place argument (read and written) starting at <paramref name="values"/>.</summary>
    protected static Input InOut(float[] values, params int[] dims) => new(values, new Shape(dims), Mutable: true);

    protected static Tensor Put(IBackend backend, float[] values, Shape shape)
    {
        var t = backend.Allocate(shape);
        backend.CopyFromHost(values, t);
        return t;
    }

    protected static float[] Get(IBackend backend, Tensor t)
    {
        var r = new float[t.Length];
        backend.CopyToHost(t, r);
        return r;
    }

    /// <summary>
    /// Runs <paramref name="kernel"/> on the backend under test and on the oracle with the same <paramref name="args"/>, then
    /// compares every mutable argument (outputs and in-place state) within the tolerance and checks the other arguments were
    /// not modified. Returns the backend's results (mutable arguments, in order).
    /// </summary>
    protected float[][] Check(string what, Input[] args, Action<IBackend, Tensor[]> kernel, double? tolerance = null)
    {
        var want = Run(Oracle, args, kernel, what + " (oracle)");
        var got = Run(Backend, args, kernel, what);
        for (int i = 0; i < want.Length; i++) AssertClose(want[i], got[i], $"{what}: output {i}", tolerance ?? Tolerance);
        return got;
    }

    private static float[][] Run(IBackend backend, Input[] args, Action<IBackend, Tensor[]> kernel, string what)
    {
        var tensors = new Tensor[args.Length];
        for (int i = 0; i < args.Length; i++)
        {
            tensors[i] = Put(backend, args[i].Values, args[i].Shape);
            if (args[i].NaNFilled) backend.Fill(tensors[i], float.NaN);
        }
        kernel(backend, tensors);
        var results = new List<float[]>();
        for (int i = 0; i < args.Length; i++)
        {
            var after = Get(backend, tensors[i]);
            if (args[i].Mutable) results.Add(after);
            else Assert.True(after.AsSpan().SequenceEqual(args[i].Values), $"{what} on '{backend.Name}': input {i} was modified (kernels must not write their inputs).");
        }
        return [.. results];
    }

    /// <summary>|got - want| &lt;= tolerance * max(max |want|, 1e-30) element-wise; NaN and infinities must match exactly.</summary>
    protected static void AssertClose(float[] want, float[] got, string what, double tolerance)
    {
        Assert.True(want.Length == got.Length, $"{what}: {got.Length} values, expected {want.Length}.");
        double scale = 1e-30;
        foreach (float v in want) if (float.IsFinite(v)) scale = Math.Max(scale, Math.Abs(v));
        for (int i = 0; i < want.Length; i++)
        {
            if (!float.IsFinite(want[i]) || !float.IsFinite(got[i]))
            {
                Assert.True(want[i].Equals(got[i]), $"{what}: element {i} is {got[i]}, expected {want[i]}.");
                continue;
            }
            double err = Math.Abs((double)got[i] - want[i]);
            Assert.True(err <= tolerance * scale, $"{what}: element {i} is {got[i]}, expected {want[i]} (error {err:G3} > {tolerance:G2} x scale {scale:G3}).");
        }
    }

    private static int Product(int[] dims) => dims.Aggregate(1, (a, b) => a * b);

    // ---------------- memory ----------------

    [Fact]
    public void Name_and_host_workers_are_sane_and_the_one_thread_sibling_interoperates()
    {
        Assert.False(string.IsNullOrWhiteSpace(Backend.Name));
        Assert.True(Backend.HostWorkers >= 1, $"HostWorkers = {Backend.HostWorkers}");
        var one = Backend.WithOneHostThread();
        Assert.Same(one, Backend.WithOneHostThread());
        Assert.Equal(1, one.HostWorkers);
        // A tensor of the backend is an input to its sibling's kernels, and the result reads back the same.
        var data = Uniform(new Random(1), 37);
        var x = Put(Backend, data, new Shape(37));
        var y = one.Allocate(new Shape(37));
        one.Scale(x, 2f, y);
        AssertClose(data.Select(v => 2 * v).ToArray(), Get(one, y), "Scale on WithOneHostThread()", 0);
    }

    [Fact]
    public void Allocate_gives_zeros_and_host_copies_round_trip_bit_for_bit()
    {
        var t = Backend.Allocate(new Shape(3, 5, 7));
        Assert.Equal(new Shape(3, 5, 7), t.Shape);
        Assert.Same(Backend, t.Backend);
        Assert.All(Get(Backend, t), v => Assert.Equal(0f, v));
        float[] data = [.. Uniform(new Random(2), 105), float.NaN, float.PositiveInfinity, -0f, float.Epsilon];
        var u = Put(Backend, data, new Shape(data.Length));
        var back = Get(Backend, u);
        for (int i = 0; i < data.Length; i++) Assert.Equal(BitConverter.SingleToInt32Bits(data[i]), BitConverter.SingleToInt32Bits(back[i]));
    }

    [Fact]
    public void Copy_and_Fill()
    {
        var rng = new Random(3);
        var x = Uniform(rng, 61);
        var got = Check("Copy", [In(x, 61), Out(61)], (b, t) => b.Copy(t[0], t[1]));
        Assert.Equal(x, got[0]);
        got = Check("Fill", [Out(4, 9)], (b, t) => b.Fill(t[0], 2.5f));
        Assert.All(got[0], v => Assert.Equal(2.5f, v));
    }

    // ---------------- element-wise ----------------

    [Fact]
    public void Element_wise_kernels_and_Sum()
    {
        var rng = new Random(4);
        int n = 1003; // not a multiple of any vector width
        float[] a = Uniform(rng, n), b = Uniform(rng, n), y0 = Uniform(rng, n);
        Check("Scale", [In(a, n), Out(n)], (be, t) => be.Scale(t[0], -1.5f, t[1]));
        Check("Add", [In(a, n), In(b, n), Out(n)], (be, t) => be.Add(t[0], t[1], t[2]));
        Check("AddScaled (accumulates)", [In(a, n), InOut(y0, n)], (be, t) => be.AddScaled(t[0], 0.75f, t[1]));
        Check("Multiply", [In(a, n), In(b, n), Out(n)], (be, t) => be.Multiply(t[0], t[1], t[2]));
        double want = Oracle.Sum(Put(Oracle, a, new Shape(n))), got = Backend.Sum(Put(Backend, a, new Shape(n)));
        double scale = a.Sum(v => Math.Abs((double)v));
        Assert.True(Math.Abs(want - got) <= Tolerance * scale, $"Sum: {got}, expected {want}");
    }

    // ---------------- matrix product ----------------

    [Theory]
    [InlineData(false, false, 1f, 0f)]
    [InlineData(true, false, 1f, 0f)]
    [InlineData(false, true, 1f, 1f)]
    [InlineData(true, true, 0.5f, -2f)]
    [InlineData(false, true, 2f, 0.5f)]
    public void MatMul_every_transpose_alpha_and_beta(bool transA, bool transB, float alpha, float beta)
    {
        var rng = new Random(5);
        int m = 13, k = 37, n = 9;
        var a = Uniform(rng, m * k); var b = Uniform(rng, k * n); var c = Uniform(rng, m * n);
        int[] aDims = transA ? [k, m] : [m, k], bDims = transB ? [n, k] : [k, n];
        Check($"MatMul transA={transA} transB={transB} alpha={alpha} beta={beta}",
            [In(a, aDims), In(b, bDims), beta == 0 ? Out(m, n) : InOut(c, m, n)],
            (be, t) => be.MatMul(t[0], transA, t[1], transB, t[2], alpha, beta));
    }

    [Fact]
    public void MatMul_reads_higher_rank_tensors_as_first_dimension_by_the_rest()
    {
        var rng = new Random(6);
        var a = Uniform(rng, 4 * 2 * 3 * 5); var b = Uniform(rng, 7 * 30);
        Check("MatMul [4,2,3,5] x [7,30]^T", [In(a, 4, 2, 3, 5), In(b, 7, 30), Out(4, 7)], (be, t) => be.MatMul(t[0], false, t[1], true, t[2]));
    }

    // ---------------- per-channel helpers ----------------

    [Fact]
    public void AddChannelBias_accumulates_and_SumPerChannel_overwrites()
    {
        var rng = new Random(7);
        var y = Uniform(rng, 3 * 5 * 4 * 3); var bias = Uniform(rng, 5);
        Check("AddChannelBias [N,C,H,W]", [InOut(y, 3, 5, 4, 3), In(bias, 5)], (be, t) => be.AddChannelBias(t[0], t[1]));
        Check("AddChannelBias [N,F]", [InOut(Uniform(rng, 6 * 5), 6, 5), In(bias, 5)], (be, t) => be.AddChannelBias(t[0], t[1]));
        Check("SumPerChannel", [In(y, 3, 5, 4, 3), Out(5)], (be, t) => be.SumPerChannel(t[0], t[1]));
    }

    // ---------------- convolution ----------------

    /// <summary>
    /// A random valid convolution: 1 to 3 spatial dimensions, batch and channels up to 3 (at least 2 of each when
    /// <paramref name="several"/>), groups, odd sizes, stride, padding, dilation, the mode given or drawn.
    /// </summary>
    protected static (ConvGeometry G, string Name) RandomConvolution(Random rng, int spatial, ConvolutionMode? mode = null, bool several = false)
    {
        while (true)
        {
            int groups = rng.Next(1, 4), n = rng.Next(several ? 2 : 1, 4), cpg = rng.Next(several ? 2 : 1, 3), opg = rng.Next(1, 3);
            var kernel = new int[spatial]; var stride = new int[spatial]; var pad = new int[spatial]; var dil = new int[spatial]; var size = new int[spatial];
            for (int d = 0; d < spatial; d++)
            {
                kernel[d] = rng.Next(1, 4); stride[d] = rng.Next(1, 3); dil[d] = rng.Next(1, 3); pad[d] = rng.Next(0, 3);
                size[d] = rng.Next(1, spatial == 3 ? 7 : 10);
            }
            var options = new ConvolutionOptions
            {
                Groups = groups, Stride = stride, Padding = pad, Dilation = dil,
                Mode = mode ?? (rng.Next(2) == 0 ? ConvolutionMode.Convolution : ConvolutionMode.CrossCorrelation),
            };
            var x = new Shape([n, groups * cpg, .. size]);
            var w = new Shape([groups * opg, cpg, .. kernel]);
            try
            {
                var g = ConvGeometry.Create(x, w, options);
                return (g, $"x {x} w {w} stride [{string.Join(",", stride)}] pad [{string.Join(",", pad)}] dilation [{string.Join(",", dil)}] groups {groups} {options.Mode}");
            }
            catch (ArgumentException) { } // the output would be empty: draw again
        }
    }

    public static TheoryData<int, int> ConvolutionCases()
    {
        var data = new TheoryData<int, int>();
        for (int spatial = 1; spatial <= 3; spatial++)
            for (int seed = 0; seed < 8; seed++) data.Add(spatial, seed);
        return data;
    }

    [Theory]
    [MemberData(nameof(ConvolutionCases))]
    public void Convolution_forward_backward_data_and_backward_filter_on_random_configurations(int spatial, int seed)
    {
        var rng = new Random(100 * spatial + seed);
        // Seeds 0 and 1 pin each mode with batch > 1 and channels > 1; the others draw everything.
        var (g, name) = seed < 2
            ? RandomConvolution(rng, spatial, seed == 0 ? ConvolutionMode.Convolution : ConvolutionMode.CrossCorrelation, several: true)
            : RandomConvolution(rng, spatial);
        int[] xd = g.Input.ToArray(), wd = g.Filter.ToArray(), yd = g.Output.ToArray();
        float[] x = Uniform(rng, Product(xd)), w = Uniform(rng, Product(wd)), bias = Uniform(rng, wd[0]), dy = Uniform(rng, Product(yd));
        Check($"ConvolutionForward {name}", [In(x, xd), In(w, wd), In(bias, wd[0]), Out(yd)], (b, t) => b.ConvolutionForward(g, t[0], t[1], t[2], t[3]));
        Check($"ConvolutionForward without bias {name}", [In(x, xd), In(w, wd), Out(yd)], (b, t) => b.ConvolutionForward(g, t[0], t[1], null, t[2]));
        Check($"ConvolutionBackwardData {name}", [In(w, wd), In(dy, yd), Out(xd)], (b, t) => b.ConvolutionBackwardData(g, t[0], t[1], t[2]));
        Check($"ConvolutionBackwardFilter {name}", [In(x, xd), In(dy, yd), Out(wd)], (b, t) => b.ConvolutionBackwardFilter(g, t[0], t[1], t[2]));
    }

    [Theory]
    [InlineData(1, 0)]
    [InlineData(2, 1)]
    [InlineData(2, 2)]
    [InlineData(3, 3)]
    public void Im2Col_and_Col2Im(int spatial, int seed)
    {
        var rng = new Random(200 + seed);
        while (true)
        {
            var (g0, _) = RandomConvolution(rng, spatial);
            var kernel = g0.Filter.ToArray()[2..];
            var options = new ConvolutionOptions { Stride = g0.Stride, Padding = g0.Padding, Dilation = g0.Dilation, Mode = g0.Mode };
            ConvGeometry g;
            try { g = ConvGeometry.ForIm2Col(g0.Input, kernel, options); }
            catch (ArgumentException) { continue; }
            int[] xd = g.Input.ToArray();
            int[] cd = [xd[0], xd[1] * Product(kernel), Product(g.Output.ToArray()[2..])];
            string name = $"x {g.Input} kernel [{string.Join(",", kernel)}] {g.Mode}";
            Check($"Im2Col {name}", [In(Uniform(rng, Product(xd)), xd), Out(cd)], (b, t) => b.Im2Col(g, t[0], t[1]));
            Check($"Col2Im {name}", [In(Uniform(rng, Product(cd)), cd), Out(xd)], (b, t) => b.Col2Im(g, t[0], t[1]));
            return;
        }
    }

    // ---------------- pooling ----------------

    public static TheoryData<int, int, int, int, int> PoolingCases()
    {
        var data = new TheoryData<int, int, int, int, int>();
        foreach (PoolingMode mode in Enum.GetValues<PoolingMode>())
        {
            data.Add((int)mode, 2, 2, 0, 2);   // 2x2, stride 2
            data.Add((int)mode, 3, 2, 1, 2);   // overlapping windows with padding
            data.Add((int)mode, 3, 1, 2, 1);   // 1-D, padding 2
            data.Add((int)mode, 2, 3, 1, 3);   // 3-D, stride 3
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(PoolingCases))]
    public void Pooling_forward_and_backward_every_mode_with_padding(int mode, int window, int stride, int padding, int spatial)
    {
        var rng = new Random(300 + 10 * mode + window + stride + padding + spatial);
        int[] size = spatial switch { 1 => [11], 2 => [7, 9], _ => [5, 6, 7] };
        var options = new PoolingOptions { Window = window, Stride = stride, Padding = padding, Mode = (PoolingMode)mode };
        var g = PoolGeometry.Create(new Shape([2, 3, .. size]), options);
        int[] xd = g.Input.ToArray(), yd = g.Output.ToArray();
        var x = Uniform(rng, Product(xd));
        string name = $"{(PoolingMode)mode} x {g.Input} window {window} stride {stride} padding {padding}";
        Check($"PoolingForward {name}", [In(x, xd), Out(yd)], (b, t) => b.PoolingForward(g, t[0], t[1]));
        // Backward takes y = pool(x); the oracle's y is given to both so only the backward kernel is compared.
        var y = Get(Oracle, Pool(Oracle, g, x));
        Check($"PoolingBackward {name}", [In(x, xd), In(y, yd), In(Uniform(rng, Product(yd)), yd), Out(xd)], (b, t) => b.PoolingBackward(g, t[0], t[1], t[2], t[3]));
    }

    [Theory]
    [InlineData(2, 2, 0, 2)]                               // the 2x2 fast path
    [InlineData(3, 2, 1, 2)]                               // overlapping windows with padding
    [InlineData(2, 3, 1, 3)]                               // 3-D
    public void Max_pooling_with_relu_forward_and_backward(int window, int stride, int padding, int spatial)
    {
        var rng = new Random(560 + window + stride + padding + spatial);
        int[] size = spatial switch { 2 => [7, 9], _ => [5, 6, 7] };
        var g = PoolGeometry.Create(new Shape([2, 3, .. size]), new PoolingOptions { Window = window, Stride = stride, Padding = padding });
        int[] xd = g.Input.ToArray(), yd = g.Output.ToArray();
        var x = Uniform(rng, Product(xd), -2, 1);          // mostly negative: many windows pool to the ReLU's 0
        string name = $"{g.Input} window {window} stride {stride} padding {padding}";
        var y = Check($"PoolingReluForward {name}", [In(x, xd), Out(yd)], (b, t) => b.PoolingReluForward(g, t[0], t[1]))[0];
        Assert.Contains(y, v => v == 0f);
        Assert.Contains(y, v => v > 0f);
        // The backward reads x and y (a maximum: the same values on every backend).
        Check($"PoolingReluBackward {name}", [In(x, xd), In(y, yd), In(Uniform(rng, Product(yd)), yd), Out(xd)],
            (b, t) => b.PoolingReluBackward(g, t[0], t[1], t[2], t[3]));
    }

    private static Tensor Pool(IBackend b, PoolGeometry g, float[] x)
    {
        var y = b.Allocate(g.Output);
        b.PoolingForward(g, Put(b, x, g.Input), y);
        return y;
    }

    // ---------------- normalization ----------------

    [Theory]
    [InlineData(5, 1e-4f, 0.75f, 2f, 7)]
    [InlineData(3, 0.5f, 0.5f, 1f, 2)]
    [InlineData(1, 1f, 1f, 1f, 4)]
    public void Lrn_forward_and_backward(int size, float alpha, float beta, float k, int channels)
    {
        var rng = new Random(400 + size + channels);
        var options = new LrnOptions { Size = size, Alpha = alpha, Beta = beta, K = k };
        int[] xd = [2, channels, 5, 3];
        var x = Uniform(rng, Product(xd), -2, 2);
        Check($"LrnForward size {size} channels {channels}", [In(x, xd), Out(xd)], (b, t) => b.LrnForward(options, t[0], t[1]));
        var yo = Oracle.Allocate(new Shape(xd));
        Oracle.LrnForward(options, Put(Oracle, x, new Shape(xd)), yo);
        var y = Get(Oracle, yo);
        Check($"LrnBackward size {size} channels {channels}", [In(x, xd), In(y, xd), In(Uniform(rng, Product(xd)), xd), Out(xd)],
            (b, t) => b.LrnBackward(options, t[0], t[1], t[2], t[3]));
    }

    [Theory]
    [InlineData(new[] { 4, 3, 5, 2 })]
    [InlineData(new[] { 6, 7 })]
    [InlineData(new[] { 2, 2, 3, 2, 2 })]
    public void Batch_norm_training_inference_and_backward(int[] xd)
    {
        var rng = new Random(500 + xd.Length);
        int c = xd[1];
        float[] x = Uniform(rng, Product(xd), -3, 3), gamma = Uniform(rng, c, 0.5f, 1.5f), beta = Uniform(rng, c);
        float[] runningMean = Uniform(rng, c), runningVar = Uniform(rng, c, 0.5f, 2f);
        var training = Check($"BatchNormForwardTraining {string.Join("x", xd)}",
            [In(x, xd), In(gamma, c), In(beta, c), InOut(runningMean, c), InOut(runningVar, c), Out(xd), Out(c), Out(c)],
            (b, t) => b.BatchNormForwardTraining(t[0], t[1], t[2], 1e-5f, 0.1f, t[3], t[4], t[5], t[6], t[7]));
        Check($"BatchNormForwardInference {string.Join("x", xd)}",
            [In(x, xd), In(gamma, c), In(beta, c), In(runningMean, c), In(runningVar, c), Out(xd)],
            (b, t) => b.BatchNormForwardInference(t[0], t[1], t[2], t[3], t[4], 1e-5f, t[5]));
        // Backward reads the saved statistics of the forward pass (the backend's own, close to the oracle's).
        float[] savedMean = training[3], savedInvStd = training[4];
        Check($"BatchNormBackward {string.Join("x", xd)}",
            [In(x, xd), In(Uniform(rng, Product(xd)), xd), In(gamma, c), In(savedMean, c), In(savedInvStd, c), Out(xd), Out(c), Out(c)],
            (b, t) => b.BatchNormBackward(t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7]));
    }

    [Theory]
    [InlineData(new[] { 4, 3, 5, 2 })]
    [InlineData(new[] { 6, 7 })]
    [InlineData(new[] { 2, 2, 3, 2, 2 })]
    public void Batch_norm_with_relu_forward_training_and_backward(int[] xd)
    {
        var rng = new Random(520 + xd.Length);
        int c = xd[1];
        float[] x = Uniform(rng, Product(xd), -3, 3), gamma = Uniform(rng, c, 0.5f, 1.5f), beta = Uniform(rng, c, -0.5f, 0.5f);
        float[] runningMean = Uniform(rng, c), runningVar = Uniform(rng, c, 0.5f, 2f);
        var training = Check($"BatchNormReluForwardTraining {string.Join("x", xd)}",
            [In(x, xd), In(gamma, c), In(beta, c), InOut(runningMean, c), InOut(runningVar, c), Out(xd), Out(c), Out(c)],
            (b, t) => b.BatchNormReluForwardTraining(t[0], t[1], t[2], 1e-5f, 0.1f, t[3], t[4], t[5], t[6], t[7]));
        float[] y = training[2], savedMean = training[3], savedInvStd = training[4];
        Assert.Contains(y, v => v == 0f);                  // the ReLU cut some values ...
        Assert.Contains(y, v => v > 0f);                   // ... and kept others
        // The backward reads y (the oracle's: the same ReLU mask for every backend) and the saved statistics.
        Check($"BatchNormReluBackward {string.Join("x", xd)}",
            [In(x, xd), In(y, xd), In(Uniform(rng, Product(xd)), xd), In(gamma, c), In(savedMean, c), In(savedInvStd, c), Out(xd), Out(c), Out(c)],
            (b, t) => b.BatchNormReluBackward(t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8]));
    }

    // ---------------- dropout, activations, softmax, loss ----------------

    [Theory]
    [InlineData(0.5f, 1ul)]
    [InlineData(0.1f, 42ul)]
    [InlineData(0f, 7ul)]
    public void Dropout_mask_equals_the_oracles_exactly(float p, ulong seed)
    {
        var rng = new Random(600);
        int n = 2 * 3 * 17;
        var got = Check($"DropoutForward p={p}", [In(Uniform(rng, n), 2, 3, 17), Out(2, 3, 17), Out(2, 3, 17)],
            (b, t) => b.DropoutForward(t[0], p, seed, t[1], t[2]), tolerance: 0);
        Assert.All(got[0], m => Assert.True(m == 0 || m == 1f / (1 - p), $"mask value {m}"));
    }

    public static TheoryData<int> ActivationKinds() => new(Enum.GetValues<ActivationKind>().Select(k => (int)k));

    [Theory]
    [MemberData(nameof(ActivationKinds))]
    public void Activation_forward_and_backward_every_kind(int kindValue)
    {
        var kind = (ActivationKind)kindValue;
        var rng = new Random(700 + kindValue);
        int[] xd = [3, 4, 5];
        var x = AwayFromZero(rng, 60);
        foreach (float alpha in new[] { Activation.DefaultAlpha(kind), 0.3f })
        {
            Check($"ActivationForward {kind} alpha {alpha}", [In(x, xd), Out(xd)], (b, t) => b.ActivationForward(kind, alpha, t[0], t[1]));
            var yo = Oracle.Allocate(new Shape(xd));
            Oracle.ActivationForward(kind, alpha, Put(Oracle, x, new Shape(xd)), yo);
            Check($"ActivationBackward {kind} alpha {alpha}", [In(x, xd), In(Get(Oracle, yo), xd), In(Uniform(rng, 60), xd), Out(xd)],
                (b, t) => b.ActivationBackward(kind, alpha, t[0], t[1], t[2], t[3]));
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Softmax_and_log_softmax_forward_and_backward(bool log)
    {
        var rng = new Random(800);
        var x = Uniform(rng, 5 * 11, -30, 30); // large logits: the kernels must be stable
        Check($"SoftmaxForward log={log}", [In(x, 5, 11), Out(5, 11)], (b, t) => b.SoftmaxForward(t[0], t[1], log));
        var yo = Oracle.Allocate(new Shape(5, 11));
        Oracle.SoftmaxForward(Put(Oracle, x, new Shape(5, 11)), yo, log);
        Check($"SoftmaxBackward log={log}", [In(Get(Oracle, yo), 5, 11), In(Uniform(rng, 55), 5, 11), Out(5, 11)], (b, t) => b.SoftmaxBackward(t[0], t[1], t[2], log));
    }

    [Theory]
    [InlineData(0f)]
    [InlineData(0.1f)]
    [InlineData(0.5f)]
    public void Softmax_cross_entropy_with_label_smoothing(float smoothing)
    {
        var rng = new Random(900);
        int n = 7, k = 6;
        var logits = Uniform(rng, n * k, -4, 4);
        var labels = Enumerable.Range(0, n).Select(_ => (float)rng.Next(k)).ToArray();
        Check($"SoftmaxCrossEntropyForward e={smoothing}", [In(logits, n, k), In(labels, n), Out(n), Out(n, k)],
            (b, t) => b.SoftmaxCrossEntropyForward(t[0], t[1], smoothing, t[2], t[3]));
        var p = Oracle.Allocate(new Shape(n, k));
        Oracle.SoftmaxCrossEntropyForward(Put(Oracle, logits, new Shape(n, k)), Put(Oracle, labels, new Shape(n)), smoothing, Oracle.Allocate(new Shape(n)), p);
        Check($"SoftmaxCrossEntropyBackward e={smoothing}", [In(Get(Oracle, p), n, k), In(labels, n), Out(n, k)],
            (b, t) => b.SoftmaxCrossEntropyBackward(t[0], t[1], smoothing, 1f / n, t[2]));
    }

    [Fact]
    public void LossAndCorrect_writes_its_row_only()
    {
        var rng = new Random(1000);
        int n = 9, k = 4;
        var loss = Uniform(rng, n, 0, 3);
        var probabilities = Uniform(rng, n * k, 0, 1);
        var labels = Enumerable.Range(0, n).Select(_ => (float)rng.Next(k)).ToArray();
        var stats = Enumerable.Repeat(7f, 3 * 2).ToArray();
        var got = Check("LossAndCorrect row 1", [In(loss, n), In(probabilities, n, k), In(labels, n), InOut(stats, 3, 2)],
            (b, t) => b.LossAndCorrect(t[0], t[1], t[2], t[3], 1));
        Assert.Equal([7f, 7f, 7f, 7f], new[] { got[0][0], got[0][1], got[0][4], got[0][5] });
        // The count is exact; recount it here from the definition (first maximum at the label).
        int hits = 0;
        for (int i = 0; i < n; i++)
        {
            int best = 0;
            for (int j = 1; j < k; j++) if (probabilities[i * k + j] > probabilities[i * k + best]) best = j;
            if (best == (int)labels[i]) hits++;
        }
        Assert.Equal(hits, got[0][3]);
    }

    // ---------------- optimizers ----------------

    [Theory]
    [InlineData(0f, false, 0f)]
    [InlineData(0.9f, false, 1e-2f)]
    [InlineData(0.9f, true, 0f)]
    public void SgdStep(float momentum, bool nesterov, float weightDecay)
    {
        var rng = new Random(1100);
        int n = 77;
        float[] param = Uniform(rng, n), grad = Uniform(rng, n), velocity = Uniform(rng, n);
        if (momentum == 0)
            Check("SgdStep without velocity", [InOut(param, n), In(grad, n)], (b, t) => b.SgdStep(t[0], t[1], null, 0.1f, 0, false, weightDecay));
        else
            Check($"SgdStep momentum {momentum} nesterov {nesterov}", [InOut(param, n), In(grad, n), InOut(velocity, n)],
                (b, t) => b.SgdStep(t[0], t[1], t[2], 0.1f, momentum, nesterov, weightDecay));
    }

    [Theory]
    [InlineData(false, 0f, 1L)]
    [InlineData(false, 1e-2f, 3L)]
    [InlineData(true, 1e-2f, 10L)]
    public void AdamStep(bool decoupled, float weightDecay, long step)
    {
        var rng = new Random(1200);
        int n = 77;
        float[] param = Uniform(rng, n), grad = Uniform(rng, n), m = Uniform(rng, n, -0.1f, 0.1f), v = Uniform(rng, n, 0, 0.01f);
        Check($"AdamStep decoupled {decoupled} step {step}", [InOut(param, n), In(grad, n), InOut(m, n), InOut(v, n)],
            (b, t) => b.AdamStep(t[0], t[1], t[2], t[3], 1e-3f, 0.9f, 0.999f, 1e-8f, weightDecay, decoupled, step));
    }

    // ---------------- aliasing ----------------

    [Fact]
    public void Inputs_may_share_memory_with_each_other()
    {
        var rng = new Random(1300);
        var a = Uniform(rng, 6 * 8);
        var got = Check("Add(a, a)", [In(a, 48), Out(48)], (b, t) => b.Add(t[0], t[0], t[1]));
        AssertClose(a.Select(v => 2 * v).ToArray(), got[0], "Add(a, a) = 2a", 0);
        got = Check("Multiply(a, a)", [In(a, 48), Out(48)], (b, t) => b.Multiply(t[0], t[0], t[1]));
        AssertClose(a.Select(v => v * v).ToArray(), got[0], "Multiply(a, a) = a^2", 0);
        Check("MatMul(a, a^T)", [In(a, 6, 8), Out(6, 6)], (b, t) => b.MatMul(t[0], false, t[0], true, t[1]));
    }

    [Fact]
    public void A_reshaped_view_reads_and_writes_the_same_memory()
    {
        var rng = new Random(1400);
        var x = Uniform(rng, 2 * 3 * 4);
        var got = Check("SoftmaxForward on a [2,12] view of [2,3,4]", [In(x, 2, 3, 4), Out(2, 3, 4)],
            (b, t) => b.SoftmaxForward(t[0].Reshape(2, 12), t[1].Reshape(2, 12), log: false));
        Assert.Equal(2.0, got[0].Sum(v => (double)v), 4);
    }

    [Fact]
    public void The_ops_never_hand_a_kernel_an_output_that_shares_memory_with_an_input()
    {
        var x = Put(Backend, Uniform(new Random(1500), 12), new Shape(3, 4));
        Assert.Throws<ArgumentException>(() => Activation.Forward(ActivationKind.ReLU, x, x));
        Assert.Throws<ArgumentException>(() => Activation.Forward(ActivationKind.Tanh, x, x.Reshape(12).Reshape(3, 4)));
        Assert.Throws<ArgumentException>(() => Lrn.Forward(x.Reshape(1, 3, 2, 2), x.Reshape(1, 3, 2, 2)));
        // Unpool and its backward run on kernels with separate outputs and give the definition's values: each value
        // spread over its window, and the window sums back.
        var small = Put(Backend, [1, 2, 3, 4], new Shape(1, 1, 2, 2));
        var up = Pooling.Unpool(small, new PoolingOptions { Window = 2 });
        Assert.Equal([1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4], Get(Backend, up));
        Assert.Equal([4, 8, 12, 16], Get(Backend, Pooling.UnpoolBackward(up, new PoolingOptions { Window = 2 })));
    }
}
