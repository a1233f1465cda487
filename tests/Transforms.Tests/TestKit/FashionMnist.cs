using Xunit;

namespace MLNet.ConvNet.Transforms.Tests.TestKit;

/// <summary>
/// The first images of the Fashion-MNIST test set (gzip'd IDX, as Debian's dataset-fashion-mnist installs it).
/// </summary>
public static class FashionMnist
{
    /// <summary>Where the files are: $FASHION_MNIST_DIR, else Debian's path.</summary>
    public static string Directory =>
        Environment.GetEnvironmentVariable("FASHION_MNIST_DIR") is { Length: > 0 } dir ? dir : "/usr/share/datasets/fashion-mnist";

    private static string TestImagesPath => Path.Combine(Directory, "t10k-images-idx3-ubyte.gz");

    /// <summary>True when the test images are installed.</summary>
    public static bool Available => File.Exists(TestImagesPath);

    /// <summary>Skips the calling test when the data set is not installed.</summary>
    public static void SkipIfMissing() =>
        Assert.SkipUnless(Available, $"Fashion-MNIST is not installed ({TestImagesPath}); apt-get install dataset-fashion-mnist.");

    /// <summary>The first <paramref name="count"/> test images, 28 x 28 grey bytes each (0 = background), read with the engine's IDX reader.</summary>
    public static byte[][] TestImages(int count) =>
        MLNet.ConvNet.Data.FashionMnist.ReadIdx(TestImagesPath, count).Values.Chunk(28 * 28).ToArray();
}
