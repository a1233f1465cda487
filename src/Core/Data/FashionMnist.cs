using System.Buffers.Binary;
using System.IO.Compression;

namespace MLNet.ConvNet.Data;

/// <summary>
/// Reads Fashion-MNIST (Xiao et al. 2017: 60,000 training and 10,000 test images of 28x28 grey pixels, 10 classes)
/// from its four gzip'd IDX files, as Debian's <c>dataset-fashion-mnist</c> installs them in
/// <c>/usr/share/datasets/fashion-mnist</c>.
/// </summary>
/// <remarks>
/// IDX format (big-endian): two zero bytes, a type byte (0x08 = unsigned byte), the number of dimensions,
/// one int32 per dimension, then the values row-major. Images are <c>[count, 28, 28]</c>, labels <c>[count]</c>.
/// Pixels become floats as <c>(p / 255 - 0.2860) / 0.3530</c> (the training set's mean and standard deviation,
/// as in the peer benchmark) unless raw scaling is asked for.
/// </remarks>
public static class FashionMnist
{
    /// <summary>Where Debian's package puts the files.</summary>
    public const string DefaultDirectory = "/usr/share/datasets/fashion-mnist";
    /// <summary>An environment variable that overrides <see cref="DefaultDirectory"/>.</summary>
    public const string DirectoryVariable = "FASHION_MNIST_DIR";
    /// <summary>Mean of the training pixels scaled to [0, 1].</summary>
    public const float Mean = 0.2860f;
    /// <summary>Standard deviation of the training pixels scaled to [0, 1].</summary>
    public const float StdDev = 0.3530f;
    /// <summary>Image side in pixels.</summary>
    public const int Side = 28;

    /// <summary>The ten class names, by label.</summary>
    public static IReadOnlyList<string> ClassNames { get; } =
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

    /// <summary>
    /// The directory to read: <paramref name="directory"/> when given, else $FASHION_MNIST_DIR, else
    /// <see cref="DefaultDirectory"/>. Throws <see cref="DirectoryNotFoundException"/> saying how to get the data.
    /// </summary>
    public static string FindDirectory(string? directory = null)
    {
        string dir = directory ?? (Environment.GetEnvironmentVariable(DirectoryVariable) is { Length: > 0 } env ? env : DefaultDirectory);
        if (!Directory.Exists(dir))
            throw new DirectoryNotFoundException($"Fashion-MNIST directory '{dir}' does not exist. Install it with 'apt-get install dataset-fashion-mnist', set {DirectoryVariable}, or pass the directory holding train-images-idx3-ubyte.gz and the other three files.");
        return dir;
    }

    /// <summary>The 60,000 training images (the first <paramref name="limit"/> when given).</summary>
    public static InMemoryDataset LoadTrain(string? directory = null, int? limit = null, bool normalize = true) =>
        Load(FindDirectory(directory), "train", limit, normalize);

    /// <summary>The 10,000 test images (the first <paramref name="limit"/> when given).</summary>
    public static InMemoryDataset LoadTest(string? directory = null, int? limit = null, bool normalize = true) =>
        Load(FindDirectory(directory), "t10k", limit, normalize);

    private static InMemoryDataset Load(string dir, string prefix, int? limit, bool normalize)
    {
        if (limit is < 1) throw new ArgumentOutOfRangeException(nameof(limit), limit, "limit must be at least 1.");
        string imagesPath = Path.Combine(dir, $"{prefix}-images-idx3-ubyte.gz");
        string labelsPath = Path.Combine(dir, $"{prefix}-labels-idx1-ubyte.gz");
        var (pixels, imageDims) = ReadIdx(imagesPath, limit);
        var (labelBytes, labelDims) = ReadIdx(labelsPath, limit);
        if (imageDims.Length != 3 || imageDims[1] != Side || imageDims[2] != Side)
            throw new InvalidDataException($"'{imagesPath}' holds [{string.Join(", ", imageDims)}]; expected [count, {Side}, {Side}] images.");
        if (labelDims.Length != 1)
            throw new InvalidDataException($"'{labelsPath}' holds [{string.Join(", ", labelDims)}]; expected [count] labels.");
        if (imageDims[0] != labelDims[0])
            throw new InvalidDataException($"'{imagesPath}' has {imageDims[0]} images but '{labelsPath}' has {labelDims[0]} labels.");

        var features = new float[pixels.Length];
        float scale = normalize ? 1f / (255f * StdDev) : 1f / 255f, shift = normalize ? Mean / StdDev : 0f;
        for (int i = 0; i < pixels.Length; i++) features[i] = pixels[i] * scale - shift;
        var labels = new int[labelBytes.Length];
        for (int i = 0; i < labels.Length; i++)
        {
            labels[i] = labelBytes[i];
            if (labels[i] >= ClassNames.Count)
                throw new InvalidDataException($"'{labelsPath}': label {labels[i]} of item {i} is outside [0, {ClassNames.Count}).");
        }
        return new InMemoryDataset(features, labels, new Shape(1, Side, Side), ClassNames.Count);
    }

    /// <summary>
    /// Reads a gzip'd IDX file of unsigned bytes: the values (the first <paramref name="limit"/> items along
    /// dimension 0 when given) and the dimensions (dimension 0 reduced to what was read). Throws
    /// <see cref="FileNotFoundException"/> or <see cref="InvalidDataException"/> naming the file and what is wrong.
    /// </summary>
    public static (byte[] Values, int[] Dims) ReadIdx(string path, int? limit = null)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"Fashion-MNIST file '{path}' is missing. Install the data with 'apt-get install dataset-fashion-mnist' or point {DirectoryVariable} at a directory holding the four .gz files.", path);
        try
        {
            using var gz = new GZipStream(File.OpenRead(path), CompressionMode.Decompress);
            Span<byte> head = stackalloc byte[4];
            ReadAll(gz, head, path, "the IDX header");
            if (head[0] != 0 || head[1] != 0)
                throw new InvalidDataException($"'{path}' is not an IDX file: it starts with 0x{head[0]:X2}{head[1]:X2}, not 0x0000.");
            if (head[2] != 0x08)
                throw new InvalidDataException($"'{path}': IDX type 0x{head[2]:X2} is not unsigned bytes (0x08).");
            int rank = head[3];
            if (rank < 1 || rank > 4) throw new InvalidDataException($"'{path}': IDX rank {rank} is not in 1..4.");
            var dims = new int[rank];
            Span<byte> d = stackalloc byte[4];
            long total = 1;
            for (int i = 0; i < rank; i++)
            {
                ReadAll(gz, d, path, $"dimension {i} of the header");
                dims[i] = BinaryPrimitives.ReadInt32BigEndian(d);
                if (dims[i] < 1) throw new InvalidDataException($"'{path}': IDX dimension {i} is {dims[i]}.");
                total *= dims[i];
            }
            if (limit is int l && l < dims[0]) { total = total / dims[0] * l; dims[0] = l; }
            if (total > Array.MaxLength) throw new InvalidDataException($"'{path}': IDX data of {total} bytes is too large.");
            var values = new byte[total];
            ReadAll(gz, values, path, $"{total} data bytes for [{string.Join(", ", dims)}]");
            return (values, dims);
        }
        catch (InvalidDataException e) when (!e.Message.Contains(path, StringComparison.Ordinal))
        {
            // GZipStream's own errors (a damaged or cut-off stream) do not name the file.
            throw new InvalidDataException($"'{path}' is not a readable gzip file (damaged or truncated): {e.Message}", e);
        }
    }

    private static void ReadAll(Stream s, Span<byte> buffer, string path, string what)
    {
        int got = 0;
        while (got < buffer.Length)
        {
            int n = s.Read(buffer[got..]);
            if (n == 0) throw new InvalidDataException($"'{path}' is truncated: it ends after {got} of the {buffer.Length} bytes expected for {what}.");
            got += n;
        }
    }
}
