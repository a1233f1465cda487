using System.IO.Compression;
using MLNet.ConvNet.Data;
using Xunit;

namespace MLNet.ConvNet.Tests;

public class FashionMnistTests
{
    private static string Installed(string name) => Path.Combine(FashionMnist.DefaultDirectory, name);

    [Fact]
    public void ReadsTheInstalledTestSet()
    {
        var test = FashionMnist.LoadTest();
        Assert.Equal(10_000, test.Count);
        Assert.Equal(new Shape(1, 28, 28), test.SampleShape);
        Assert.Equal(10, test.ClassCount);
        // The test set is balanced: 1,000 images per class (Xiao et al. 2017).
        Assert.All(Enumerable.Range(0, 10), k => Assert.Equal(1000, test.Labels.ToArray().Count(l => l == k)));
        float lo = (0 - FashionMnist.Mean) / FashionMnist.StdDev, hi = (1 - FashionMnist.Mean) / FashionMnist.StdDev;
        Assert.All(test.Features.ToArray(), v => Assert.InRange(v, lo - 1e-5f, hi + 1e-5f));
    }

    [Fact]
    public void LimitAndRawScalingMatchTheFullNormalizedRead()
    {
        var raw = FashionMnist.LoadTrain(limit: 300, normalize: false);
        var norm = FashionMnist.LoadTrain(limit: 300);
        Assert.Equal(300, raw.Count);
        Assert.Equal(raw.Labels.ToArray(), norm.Labels.ToArray());
        var r = raw.Features.ToArray();
        var n = norm.Features.ToArray();
        for (int i = 0; i < r.Length; i++)
        {
            float pixel = r[i] * 255;
            Assert.Equal(Math.Round(pixel), pixel, 3); // raw values are bytes / 255
            Assert.Equal((r[i] - FashionMnist.Mean) / FashionMnist.StdDev, n[i], 1e-5);
        }
        // The training pixels' mean and spread are what the normalization constants say (to their 3-4 digits).
        double mean = r.Average(v => (double)v), std = Math.Sqrt(r.Average(v => (v - mean) * (v - mean)));
        Assert.InRange(mean, 0.25, 0.32);
        Assert.InRange(std, 0.32, 0.38);
        var first = FashionMnist.LoadTest(limit: 3);
        Assert.Equal(FashionMnist.LoadTest().Features[..(3 * 784)].ToArray(), first.Features.ToArray());
    }

    [Fact]
    public void MissingDirectoryOrFileSaysHowToGetTheData()
    {
        using var dir = new TempDir();
        var e = Assert.Throws<DirectoryNotFoundException>(() => FashionMnist.LoadTest(dir.File("nowhere")));
        Assert.Contains("apt-get install dataset-fashion-mnist", e.Message);
        var f = Assert.Throws<FileNotFoundException>(() => FashionMnist.LoadTest(dir.Path));
        Assert.Contains("t10k-images-idx3-ubyte.gz", f.Message);
    }

    [Fact]
    public void ACutOffGzipFileIsReportedNamingTheFile()
    {
        using var dir = new TempDir();
        var bytes = File.ReadAllBytes(Installed("t10k-images-idx3-ubyte.gz"));
        File.WriteAllBytes(dir.File("t10k-images-idx3-ubyte.gz"), bytes[..(bytes.Length / 2)]);
        File.Copy(Installed("t10k-labels-idx1-ubyte.gz"), dir.File("t10k-labels-idx1-ubyte.gz"));
        var e = Assert.Throws<InvalidDataException>(() => FashionMnist.LoadTest(dir.Path));
        Assert.Contains("t10k-images-idx3-ubyte.gz", e.Message);
        Assert.Matches("truncated|damaged", e.Message);
    }

    private static void WriteGz(string path, params byte[] content)
    {
        using var gz = new GZipStream(File.Create(path), CompressionLevel.Fastest);
        gz.Write(content);
    }

    private static byte[] Idx(int[] dims, int values)
    {
        var b = new List<byte> { 0, 0, 0x08, (byte)dims.Length };
        foreach (int d in dims) b.AddRange([(byte)(d >> 24), (byte)(d >> 16), (byte)(d >> 8), (byte)d]);
        for (int i = 0; i < values; i++) b.Add((byte)(i % 10));
        return [.. b];
    }

    [Fact]
    public void IdxErrorsNameTheFileAndWhatIsWrong()
    {
        using var dir = new TempDir();
        string path = dir.File("x.gz");

        WriteGz(path, Idx([100], 60));
        Assert.Contains("ends after 60 of the 100 bytes", Assert.Throws<InvalidDataException>(() => FashionMnist.ReadIdx(path)).Message);

        WriteGz(path, 0, 0, 8);
        Assert.Contains("truncated", Assert.Throws<InvalidDataException>(() => FashionMnist.ReadIdx(path)).Message);

        WriteGz(path, 1, 2, 8, 1, 0, 0, 0, 1, 7);
        Assert.Contains("not an IDX file", Assert.Throws<InvalidDataException>(() => FashionMnist.ReadIdx(path)).Message);

        WriteGz(path, 0, 0, 0x0D, 1, 0, 0, 0, 1, 7, 7, 7, 7);
        Assert.Contains("not unsigned bytes", Assert.Throws<InvalidDataException>(() => FashionMnist.ReadIdx(path)).Message);

        File.WriteAllBytes(path, Idx([3], 3)); // not gzip'd at all
        var e = Assert.Throws<InvalidDataException>(() => FashionMnist.ReadIdx(path));
        Assert.Contains(path, e.Message);

        var (values, dims) = FashionMnist.ReadIdx(WriteAndReturn(dir.File("ok.gz"), Idx([4, 2], 8)), limit: 3);
        Assert.Equal([3, 2], dims);
        Assert.Equal([0, 1, 2, 3, 4, 5], values);
    }

    private static string WriteAndReturn(string path, byte[] content) { WriteGz(path, content); return path; }

    [Fact]
    public void ImagesAndLabelsMustAgree()
    {
        using var dir = new TempDir();
        WriteGz(dir.File("t10k-images-idx3-ubyte.gz"), Idx([3, 28, 28], 3 * 784));
        WriteGz(dir.File("t10k-labels-idx1-ubyte.gz"), Idx([2], 2));
        Assert.Contains("3 images but", Assert.Throws<InvalidDataException>(() => FashionMnist.LoadTest(dir.Path)).Message);

        WriteGz(dir.File("t10k-images-idx3-ubyte.gz"), Idx([2, 27, 28], 2 * 27 * 28));
        Assert.Contains("expected [count, 28, 28]", Assert.Throws<InvalidDataException>(() => FashionMnist.LoadTest(dir.Path)).Message);

        WriteGz(dir.File("t10k-images-idx3-ubyte.gz"), Idx([2, 28, 28], 2 * 784));
        WriteGz(dir.File("t10k-labels-idx1-ubyte.gz"), 0, 0, 8, 1, 0, 0, 0, 2, 3, 12);
        Assert.Contains("label 12 of item 1", Assert.Throws<InvalidDataException>(() => FashionMnist.LoadTest(dir.Path)).Message);
    }
}
