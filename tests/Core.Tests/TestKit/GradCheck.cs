using Xunit;

namespace MLNet.ConvNet.Tests.TestKit;

/// <summary>
/// Finite differences in float64 over a test's own naive float64 forward function, and float32 comparisons.
/// </summary>
/// <remarks>
/// A backward pass is checked through a random projection: with L(x) = sum(dy * f(x)) for a random dy,
/// dL/dx is exactly what the backward kernel computes from dy. The numeric gradient uses central differences
/// on the float64 reference (step 1e-6, truncation error ~1e-12 times the third derivative, rounding ~1e-10),
/// so the comparison measures only the float32 error of the kernel under test.
/// Default tolerance: |got - want| &lt;= 1e-4 * max|want| + 1e-6 per element: float32 carries 24 bits (6e-8
/// relative), and a sum of K terms in float32 drifts by about sqrt(K) ulps of its largest partial sum; the
/// biggest reductions in these tests (a few thousand terms) stay below 1e-5 of the output's scale, so 1e-4
/// leaves a 10x margin while a wrong index (an O(1) error) is caught.
/// </remarks>
public static class GradCheck
{
    /// <summary>d/dx of sum(dy * f(x)) by central differences.</summary>
    public static double[] Numeric(Func<double[], double[]> f, double[] x, double[] dy, double h = 1e-6)
    {
        var g = new double[x.Length];
        var xp = (double[])x.Clone();
        for (int i = 0; i < x.Length; i++)
        {
            double keep = xp[i];
            xp[i] = keep + h; double up = Dot(dy, f(xp));
            xp[i] = keep - h; double down = Dot(dy, f(xp));
            xp[i] = keep;
            g[i] = (up - down) / (2 * h);
        }
        return g;
    }

    public static double Dot(double[] a, double[] b)
    {
        Assert.Equal(a.Length, b.Length);
        double s = 0;
        for (int i = 0; i < a.Length; i++) s += a[i] * b[i];
        return s;
    }

    /// <summary>Asserts |got - want| &lt;= relTol * max|want| + absTol for every element, naming the first bad index.</summary>
    public static void AssertClose(ReadOnlySpan<float> got, double[] want, string what, double relTol = 1e-4, double absTol = 1e-6)
    {
        Assert.True(got.Length == want.Length, $"{what}: length {got.Length}, expected {want.Length}");
        double scale = 0;
        foreach (double w in want) scale = Math.Max(scale, Math.Abs(w));
        double tol = relTol * scale + absTol;
        for (int i = 0; i < want.Length; i++)
        {
            double err = Math.Abs(got[i] - want[i]);
            if (!(err <= tol))
                Assert.Fail($"{what}: element {i} is {got[i]}, expected {want[i]} (error {err:g3} > tolerance {tol:g3}, scale {scale:g3})");
        }
    }

    /// <summary>Exact equality for the seed's examples, which are small integers and halves.</summary>
    public static void AssertExact(float[] want, Tensor got, string what)
    {
        Assert.True(got.Length == want.Length, $"{what}: got {got.Shape}, expected {want.Length} values");
        Assert.Equal(want, got.ToHost());
    }
}

/// <summary>Reproducible random inputs.</summary>
public static class TestData
{
    /// <summary>Uniform values in [-scale, scale).</summary>
    public static float[] Uniform(Random rng, int n, float scale = 1f)
    {
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)((rng.NextDouble() * 2 - 1) * scale);
        return a;
    }

    public static double[] ToDouble(float[] a) => Array.ConvertAll(a, v => (double)v);
    public static double[] ToDouble(Tensor t) => ToDouble(t.ToHost());
}
