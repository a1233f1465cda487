using MLNet.ConvNet.Backends.Cpu;
using MLNet.ConvNet.Layers;
using MLNet.ConvNet.Optimizers;
using MLNet.ConvNet.Tests.TestKit;
using Xunit;

namespace MLNet.ConvNet.Tests;

public class OptimizerTests
{
    // Tolerance for optimizer steps vs the float64 formulas below: the kernel computes each update in double and
    // rounds the parameter and state to float32 after every step, while the reference keeps doubles throughout.
    // After S steps the difference is a few float32 roundings of the values involved (~S * 6e-8 relative);
    // 1e-5 relative to the largest value leaves a wide margin yet catches any wrong term (an error of order lr * g,
    // i.e. >= 1e-3 of the values here).
    private const double Rel = 1e-5;

    /// <summary>One dense "layer" worth of parameters: two tensors of odd sizes with random values and gradients.</summary>
    private static Parameter[] MakeParameters(CpuBackend backend, int seed, params int[] sizes)
    {
        var rng = new Random(seed);
        var ps = new Parameter[sizes.Length];
        for (int i = 0; i < sizes.Length; i++)
        {
            var layer = new Dense(sizes[i]) { Name = "p" + i };
            layer.Build(new Shape(1, 1), backend);
            ps[i] = layer.Weight!;
            ps[i].Name = $"p{i}.weight";
            ps[i].Value.CopyFromHost(TestData.Uniform(rng, sizes[i], 1f));
        }
        return ps;
    }

    private static void SetGradients(Parameter[] ps, Random rng)
    {
        foreach (var p in ps) p.Gradient.CopyFromHost(TestData.Uniform(rng, p.Value.Length, 2f));
    }

    /// <summary>Runs <paramref name="steps"/> steps with fresh random gradients; returns the final values and the gradients used.</summary>
    private static (double[][] Start, List<double[][]> Grads, float[][] End) Run(Optimizer opt, Parameter[] ps, int steps, int seed)
    {
        var start = ps.Select(p => TestData.ToDouble(p.Value)).ToArray();
        var grads = new List<double[][]>();
        var rng = new Random(seed);
        for (int s = 0; s < steps; s++)
        {
            SetGradients(ps, rng);
            grads.Add(ps.Select(p => TestData.ToDouble(p.Gradient)).ToArray());
            opt.Step();
        }
        return (start, grads, ps.Select(p => p.Value.ToHost()).ToArray());
    }

    public static TheoryData<double, double, bool, double> SgdCases => new()
    {
        { 0.1, 0.0, false, 0.0 },
        { 0.05, 0.9, false, 0.0 },
        { 0.05, 0.9, true, 0.0 },
        { 0.02, 0.5, true, 0.01 },
        { 0.3, 0.0, false, 0.1 },
    };

    [Theory]
    [MemberData(nameof(SgdCases))]
    public void SgdMatchesTheFloat64Formula(double lr, double momentum, bool nesterov, double wd)
    {
        var ps = MakeParameters(CpuBackend.Default, 1, 7, 33);
        var opt = new Sgd(ps, lr, momentum, nesterov, wd);
        var (start, grads, end) = Run(opt, ps, steps: 3, seed: 2);
        double mu = (float)momentum, decay = (float)wd, rate = (float)lr;
        for (int k = 0; k < ps.Length; k++)
        {
            var p = (double[])start[k].Clone();
            var v = new double[p.Length];
            foreach (var g0 in grads.Select(g => g[k]))
                for (int i = 0; i < p.Length; i++)
                {
                    double g = g0[i] + decay * p[i];
                    v[i] = mu * v[i] + g;
                    double d = momentum == 0 ? g : nesterov ? g + mu * v[i] : v[i];
                    p[i] -= rate * d;
                }
            GradCheck.AssertClose(end[k], p, $"SGD lr {lr} momentum {momentum} nesterov {nesterov} wd {wd}, tensor {k}", Rel, 1e-7);
        }
        Assert.Equal(3, opt.StepCount);
    }

    public static TheoryData<bool, double, double, double, double> AdamCases => new()
    {
        { false, 1e-3, 0.9, 0.999, 0.0 },
        { false, 1e-2, 0.8, 0.99, 0.05 },
        { true, 1e-2, 0.9, 0.999, 0.1 },
        { true, 3e-3, 0.5, 0.9, 0.0 },
    };

    [Theory]
    [MemberData(nameof(AdamCases))]
    public void AdamAndAdamWMatchTheFloat64Formula(bool decoupled, double lr, double beta1, double beta2, double wd)
    {
        var ps = MakeParameters(CpuBackend.Default, 3, 5, 40);
        const double eps = 1e-8;
        Optimizer opt = decoupled ? new AdamW(ps, lr, beta1, beta2, eps, wd) : new Adam(ps, lr, beta1, beta2, eps, wd);
        var (start, grads, end) = Run(opt, ps, steps: 4, seed: 4);
        // The kernel sees the hyper-parameters as float32; the reference uses the same rounded values.
        double b1 = (float)beta1, b2 = (float)beta2, e = (float)eps, rate = (float)lr, decay = (float)wd;
        for (int k = 0; k < ps.Length; k++)
        {
            var p = (double[])start[k].Clone();
            var m = new double[p.Length];
            var v = new double[p.Length];
            int t = 0;
            foreach (var g0 in grads.Select(g => g[k]))
            {
                t++;
                for (int i = 0; i < p.Length; i++)
                {
                    double g = g0[i];
                    if (decoupled) p[i] *= 1 - rate * decay; else g += decay * p[i];
                    m[i] = b1 * m[i] + (1 - b1) * g;
                    v[i] = b2 * v[i] + (1 - b2) * g * g;
                    double mHat = m[i] / (1 - Math.Pow(b1, t)), vHat = v[i] / (1 - Math.Pow(b2, t));
                    p[i] -= rate * mHat / (Math.Sqrt(vHat) + e);
                }
            }
            GradCheck.AssertClose(end[k], p, $"{opt.Kind} lr {lr} betas {beta1}/{beta2} wd {wd}, tensor {k}", Rel, 1e-7);
        }
    }

    /// <summary>
    /// The kernel's documented arithmetic (each update in double, state and parameter rounded to float after every
    /// step) written here as a plain scalar loop gives the same bits as the kernel, whose vector lanes must not change
    /// a single rounding. Sizes straddle the vector width and the kernel's 4096-element chunks.
    /// </summary>
    [Theory]
    [InlineData(false, 4096 + 37)]
    [InlineData(true, 4096 * 2 + 5)]
    [InlineData(false, 3)]
    public void AdamIsBitIdenticalToItsScalarDoubleFormula(bool decoupled, int size)
    {
        var ps = MakeParameters(CpuBackend.Default, 5, size);
        const float lr = 3e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, wd = 0.02f;
        Optimizer opt = decoupled ? new AdamW(ps, lr, beta1, beta2, eps, wd) : new Adam(ps, lr, beta1, beta2, eps, wd);
        var p = ps[0].Value.ToHost();
        var m = new float[size];
        var v = new float[size];
        var rng = new Random(6);
        for (int step = 1; step <= 3; step++)
        {
            SetGradients(ps, rng);
            var g = ps[0].Gradient.ToHost();
            opt.Step();
            double c1 = 1 - Math.Pow(beta1, step), c2 = 1 - Math.Pow(beta2, step);
            for (int i = 0; i < size; i++)
            {
                double pi = p[i], gi = g[i];
                if (decoupled) pi -= (double)lr * wd * pi; else gi += (double)wd * pi;
                double mi = (double)beta1 * m[i] + (1 - (double)beta1) * gi;
                double vi = (double)beta2 * v[i] + (1 - (double)beta2) * gi * gi;
                m[i] = (float)mi; v[i] = (float)vi;
                p[i] = (float)(pi - lr * (mi / c1) / (Math.Sqrt(vi / c2) + eps));
            }
            var got = ps[0].Value.ToHost();
            for (int i = 0; i < size; i++)
                Assert.True(BitConverter.SingleToInt32Bits(got[i]) == BitConverter.SingleToInt32Bits(p[i]),
                    $"step {step}, element {i}: kernel {got[i]:R} vs scalar {p[i]:R}");
        }
    }

    [Fact]
    public void AdamWDecayIsDecoupledFromTheGradientScale()
    {
        // With a zero gradient Adam's moments stay 0, so AdamW only shrinks by (1 - lr wd) while Adam's L2 term
        // enters the moments and moves each weight by about lr (Adam normalises the step).
        var psW = MakeParameters(CpuBackend.Default, 5, 9);
        var psA = MakeParameters(CpuBackend.Default, 5, 9);
        var before = psW[0].Value.ToHost();
        new AdamW(psW, 0.1, weightDecay: 0.5).Step();
        new Adam(psA, 0.1, weightDecay: 0.5).Step();
        var w = psW[0].Value.ToHost();
        var a = psA[0].Value.ToHost();
        for (int i = 0; i < before.Length; i++)
        {
            Assert.Equal(before[i] * (1 - 0.1 * 0.5), w[i], 1e-6);
            Assert.Equal(before[i] - 0.1 * Math.Sign(before[i]), a[i], 1e-4);
        }
    }

    [Fact]
    public void StepsDoNotDependOnTheThreadCount()
    {
        // 70,000 elements span several parallel chunks of the update kernel.
        float[][] RunWith(CpuBackend b)
        {
            var ps = MakeParameters(b, 6, 70_000, 3);
            var opt = new Adam(ps, 1e-2, weightDecay: 0.01);
            var sgd = new Sgd(ps, 0.01, 0.9, nesterov: true, weightDecay: 1e-3);
            var rng = new Random(7);
            for (int s = 0; s < 3; s++) { SetGradients(ps, rng); opt.Step(); sgd.Step(); }
            return ps.Select(p => p.Value.ToHost()).ToArray();
        }
        var one = RunWith(new CpuBackend(maxThreads: 1));
        var many = RunWith(new CpuBackend(maxThreads: 4));
        for (int k = 0; k < one.Length; k++) Assert.Equal(one[k], many[k]);
    }

    [Fact]
    public void ZeroGradClearsEveryGradient()
    {
        var ps = MakeParameters(CpuBackend.Default, 8, 4, 6);
        SetGradients(ps, new Random(1));
        new Sgd(ps, 0.1).ZeroGrad();
        foreach (var p in ps) Assert.All(p.Gradient.ToHost(), g => Assert.Equal(0f, g));
    }

    [Theory]
    [InlineData("Sgd")]
    [InlineData("Adam")]
    [InlineData("AdamW")]
    public void SavedStateContinuesExactly(string kind)
    {
        Optimizer Make(Parameter[] ps) => kind switch
        {
            "Sgd" => new Sgd(ps, 0.05, 0.9),
            "Adam" => new Adam(ps, 1e-2),
            _ => new AdamW(ps, 1e-2),
        };
        var a = MakeParameters(CpuBackend.Default, 9, 11, 4);
        var b = MakeParameters(CpuBackend.Default, 9, 11, 4);
        var optA = Make(a);
        var rng = new Random(10);
        for (int s = 0; s < 2; s++) { SetGradients(a, rng); optA.Step(); }
        var state = optA.GetState();
        Assert.Equal(kind, state.Kind);
        Assert.Equal(2, state.StepCount);

        // b gets a's values and optimizer state, then both take the same two further steps.
        for (int k = 0; k < a.Length; k++) b[k].Value.CopyFromHost(a[k].Value.ToHost());
        var optB = Make(b);
        optB.SetState(state);
        var g1 = new Random(11);
        var g2 = new Random(11);
        for (int s = 0; s < 2; s++) { SetGradients(a, g1); optA.Step(); SetGradients(b, g2); optB.Step(); }
        for (int k = 0; k < a.Length; k++) Assert.Equal(a[k].Value.ToHost(), b[k].Value.ToHost());
    }

    [Fact]
    public void SetStateRejectsAnotherKindOrLayout()
    {
        var ps = MakeParameters(CpuBackend.Default, 12, 3);
        var adam = new Adam(ps);
        Assert.Contains("Sgd", Assert.Throws<InvalidDataException>(() => adam.SetState(new Sgd(ps, 0.1, 0.9).GetState())).Message);
        var other = MakeParameters(CpuBackend.Default, 12, 4);
        var e = Assert.Throws<InvalidDataException>(() => adam.SetState(new Adam(other).GetState()));
        Assert.Contains("p0.weight.m", e.Message);
    }

    [Fact]
    public void BadHyperParametersThrowNamingThem()
    {
        var ps = MakeParameters(CpuBackend.Default, 13, 3);
        Assert.Equal("learningRate", Assert.Throws<ArgumentOutOfRangeException>(() => new Sgd(ps, 0)).ParamName);
        Assert.Equal("learningRate", Assert.Throws<ArgumentOutOfRangeException>(() => new Adam(ps, -1e-3)).ParamName);
        Assert.Equal("learningRate", Assert.Throws<ArgumentOutOfRangeException>(() => new Adam(ps, double.NaN)).ParamName);
        Assert.Equal("momentum", Assert.Throws<ArgumentOutOfRangeException>(() => new Sgd(ps, 0.1, momentum: 1.0)).ParamName);
        Assert.Equal("nesterov", Assert.Throws<ArgumentException>(() => new Sgd(ps, 0.1, nesterov: true)).ParamName);
        Assert.Equal("weightDecay", Assert.Throws<ArgumentOutOfRangeException>(() => new AdamW(ps, weightDecay: -0.1)).ParamName);
        Assert.Equal("beta2", Assert.Throws<ArgumentOutOfRangeException>(() => new Adam(ps, beta2: 1.0)).ParamName);
        Assert.Equal("epsilon", Assert.Throws<ArgumentOutOfRangeException>(() => new Adam(ps, epsilon: 0)).ParamName);
        Assert.Throws<ArgumentException>(() => new Adam([]));
    }
}
