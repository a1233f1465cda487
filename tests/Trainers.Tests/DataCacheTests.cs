using Microsoft.ML;
using MLNet.ConvNet.Data;
using Xunit;

namespace MLNet.ConvNet.Trainers.Tests;

/// <summary>
/// Option DataCache: the rows kept in memory or in a disk cache give the same weights; the log says which and why;
/// the cache file is deleted when Fit ends (unless KeepDataCache), also when it fails.
/// </summary>
public class DataCacheTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>The first 600 Fashion-MNIST images with their pixels as whole numbers 0..255 (as ExtractPixels gives them unscaled).</summary>
    private static IDataView BytePixels(MLContext ml) => FashionData.Keyed(ml, FashionData.TrainRows(600).Select(r => new ImageRow
    {
        Label = r.Label,
        Features = r.Features.Select(v => MathF.Round(Math.Clamp((v * 0.3530f + 0.2860f) * 255f, 0, 255))).ToArray(),
    }));

    private static (string Hash, List<string> Log, long[] FilesLeft) Train(Func<MLContext, IDataView> data, SampleStorage cache,
        long? memoryLimit = null, bool keep = false, double validationFraction = 0.1)
    {
        string dir = Tiny.TempDirectory();
        try
        {
            var ml = new MLContext(0);
            var log = new List<string>();
            var options = Tiny.Options(epochs: 2);
            options.DataCache = cache; options.DataCacheDirectory = dir; options.KeepDataCache = keep;
            options.DataCacheMemoryLimit = memoryLimit;
            options.ValidationFraction = validationFraction;
            options.Log = log.Add;
            options.CancellationToken = Ct;
            // Raw 0..255 pixels make the loss of this tiny net blow up; the test compares memory with disk, not learning.
            options.Divergence = DivergenceAction.Ignore;
            var model = ml.MulticlassClassification.Trainers.ConvNet(options).Fit(data(ml));
            return (model.Network.ComputeHash(), log, Directory.GetFiles(dir).Select(f => new FileInfo(f).Length).ToArray()); // the sizes of the files left
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void MemoryAndDiskGiveTheSameWeightsAndTheDiskCacheIsDeletedAfter()
    {
        var memory = Train(BytePixels, SampleStorage.Memory);
        var disk = Train(BytePixels, SampleStorage.Disk);
        Assert.Equal(memory.Hash, disk.Hash);
        Assert.Contains(memory.Log, l => l.Contains("training data in memory (forced)"));
        Assert.Contains(disk.Log, l => l.Contains("training data disk cache (forced)") && l.Contains("as bytes (8-bit values)"));
        Assert.Empty(disk.FilesLeft);
        // Standardised pixels (fractions) are cached as float32, with the same weights again.
        var floats = Train(ml => Tiny.Data(ml, 600), SampleStorage.Disk);
        Assert.Equal(Train(ml => Tiny.Data(ml, 600), SampleStorage.Memory).Hash, floats.Hash);
        Assert.Contains(floats.Log, l => l.Contains("as float32"));
    }

    [Fact]
    public void AutoGoesToDiskOverItsLimitAndKeepDataCacheLeavesTheFile()
    {
        // 600 rows x 784 floats = 1.9 MB: a limit of 1 MB sends them to disk (the view does not know its row count: a spill).
        var auto = Train(BytePixels, SampleStorage.Auto, memoryLimit: 1_000_000, keep: true, validationFraction: 0);
        Assert.Contains(auto.Log, l => l.Contains("training data disk cache (more than 318 samples, over the 1 MB limit as float32)"));
        Assert.Single(auto.FilesLeft);
        Assert.Equal(600 * 784, auto.FilesLeft[0]); // bytes
        Assert.Equal(Train(BytePixels, SampleStorage.Memory, validationFraction: 0).Hash, auto.Hash);
        var small = Train(BytePixels, SampleStorage.Auto);
        Assert.Contains(small.Log, l => l.StartsWith("ConvNetTrainer: training data in memory: 600 samples take 2 MB as float32, within the"));
    }

    [Fact]
    public void AFailedFitDeletesTheCacheItWrote()
    {
        string dir = Tiny.TempDirectory();
        try
        {
            var ml = new MLContext(0);
            var options = Tiny.Options();
            options.DataCache = SampleStorage.Disk; options.DataCacheDirectory = dir;
            options.Divergence = DivergenceAction.Ignore; // raw 0..255 pixels: the loss blows up before OnBatch sees it
            options.OnBatch = _ => throw new InvalidOperationException("stop here");
            var e = Assert.Throws<InvalidOperationException>(() => ml.MulticlassClassification.Trainers.ConvNet(options).Fit(BytePixels(ml)));
            Assert.Equal("stop here", e.Message);
            Assert.Empty(Directory.GetFiles(dir));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
