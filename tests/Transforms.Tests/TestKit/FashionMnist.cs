using System.Buffers.Binary;
using System.IO.Compression;
using Xunit;

namespace MLNet.ConvNet.Transforms.Tests.TestKit;

/// <summary>
/// Reads the first images of the Fashion-MNIST test set (gzip'd IDX, as Debian's dataset-fashion-mnist installs it).
/// IDX: big-endian magic 0x00000803 (unsigned bytes, 3 dimensions), count, rows, columns, then the pixels row-major.
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

    /// <summary>The first <paramref name="count"/> test images, 28 x 28 grey bytes each (0 = background).</summary>
    public static byte[][] TestImages(int count)
    {
        using var gz = new GZipStream(File.OpenRead(TestImagesPath), CompressionMode.Decompress);
        Span<byte> header = stackalloc byte[16];
        gz.ReadExactly(header);
        int magic = BinaryPrimitives.ReadInt32BigEndian(header);
        int n = BinaryPrimitives.ReadInt32BigEndian(header[4..]);
        int rows = BinaryPrimitives.ReadInt32BigEndian(header[8..]), cols = BinaryPrimitives.ReadInt32BigEndian(header[12..]);
        if (magic != 0x803 || rows != 28 || cols != 28)
            throw new InvalidDataException($"{TestImagesPath}: magic {magic:x}, {rows}x{cols}; expected 0x803 and 28x28 images.");
        if (count > n) throw new ArgumentOutOfRangeException(nameof(count), count, $"the file holds {n} images");
        var images = new byte[count][];
        for (int i = 0; i < count; i++)
        {
            images[i] = new byte[rows * cols];
            gz.ReadExactly(images[i]);
        }
        return images;
    }
}
