using MLNet.ConvNet;
using MLNet.ConvNet.Ops;
using Xunit;

namespace MLNet.ConvNet.Tests;

public class ShapeTests
{
    [Fact]
    public void PrintsReadably() => Assert.Equal("[2, 3, 28, 28]", new Shape(2, 3, 28, 28).ToString());

    [Fact]
    public void RejectsEmptyDimensions()
    {
        var e = Assert.Throws<ArgumentException>(() => new Shape(2, 0, 3));
        Assert.Contains("[2, 0, 3]", e.Message);
    }

    [Fact]
    public void ReshapeSharesMemoryAndChecksLength()
    {
        var t = Tensor.FromHost([1f, 2, 3, 4, 5, 6], 1, 2, 3);
        var v = t.Reshape(3, 2);
        Assert.Equal(t.ToHost(), v.ToHost());
        Assert.Throws<ArgumentException>(() => t.Reshape(4, 2));
    }

    [Fact]
    public void MatMulMatchesNaiveLoop()
    {
        var rng = new Random(1);
        foreach (var (m, n, k) in new[] { (1, 1, 1), (3, 5, 7), (17, 9, 33), (2, 64, 3) })
        foreach (bool ta in new[] { false, true })
        foreach (bool tb in new[] { false, true })
        {
            var a = Enumerable.Range(0, m * k).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();
            var b = Enumerable.Range(0, k * n).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();
            var c0 = Enumerable.Range(0, m * n).Select(_ => (float)rng.NextDouble()).ToArray();
            var A = Tensor.FromHost(a, ta ? k : m, ta ? m : k);
            var B = Tensor.FromHost(b, tb ? n : k, tb ? k : n);
            var C = Tensor.FromHost(c0, m, n);
            C.Backend.MatMul(A, ta, B, tb, C, 0.5f, 2f);
            var got = C.ToHost();
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                {
                    double s = 0;
                    for (int p = 0; p < k; p++)
                        s += (double)a[ta ? p * m + i : i * k + p] * b[tb ? j * k + p : p * n + j];
                    double want = 0.5 * s + 2.0 * c0[i * n + j];
                    Assert.True(Math.Abs(want - got[i * n + j]) < 1e-5 * (1 + Math.Abs(want)), $"{m}x{n}x{k} ta={ta} tb={tb} [{i},{j}]: {got[i * n + j]} vs {want}");
                }
        }
    }
}

public class ShapeIndexTests
{
    [Fact]
    public void IndexFromEndCountsDimensionsNotElements()
    {
        var s = new Shape(2, 3, 5);
        Assert.Equal(5, s[^1]);
        Assert.Equal(3, s[^2]);
        Assert.Equal(5, s[-1]);
    }
}
