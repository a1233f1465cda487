using Microsoft.ML;
using Microsoft.ML.Data;

/// <summary>Fashion-MNIST test images in, PNG files out, and an ML.NET view of image files.</summary>
static class Images
{
    /// <summary>The first <paramref name="count"/> Fashion-MNIST test images (28 x 28 grey bytes), read with the engine's IDX reader.</summary>
    public static byte[][] FashionMnist(int count)
    {
        string path = Path.Combine(MLNet.ConvNet.Data.FashionMnist.FindDirectory(), "t10k-images-idx3-ubyte.gz");
        var (pixels, _) = MLNet.ConvNet.Data.FashionMnist.ReadIdx(path, count);
        return pixels.Chunk(28 * 28).ToArray();
    }

    /// <summary>Writes a grey PNG: value v becomes byte clamp(v * scale + offset).</summary>
    public static void WriteGrey(string file, float[] values, int height, int width, float scale = 1, float offset = 0) =>
        WriteRgb(file, height, width, (y, x) => { byte g = Clamp(values[y * width + x] * scale + offset); return (g, g, g); });

    /// <summary>Writes an RGB PNG through ML.NET's image type.</summary>
    public static void WriteRgb(string file, int height, int width, Func<int, int, (byte r, byte g, byte b)> pixel)
    {
        var bgra = new byte[height * width * 4];
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
            {
                var (r, g, b) = pixel(y, x);
                int o = (y * width + x) * 4;
                (bgra[o], bgra[o + 1], bgra[o + 2], bgra[o + 3]) = (b, g, r, 255);
            }
        using var image = MLImage.CreateFromPixels(width, height, MLPixelFormat.Bgra32, bgra);
        image.Save(file);
    }

    public static byte Clamp(float v) => (byte)Math.Clamp(MathF.Round(v), 0, 255);

    /// <summary>A row naming image files (relative to the folder given to LoadImages).</summary>
    public sealed class Files
    {
        public string Path { get; set; } = "";
        public string Next { get; set; } = "";
    }

    /// <summary>Every value of vector column <paramref name="column"/>, row by row.</summary>
    public static float[][] Read(IDataView view, string column) =>
        view.GetColumn<VBuffer<float>>(column).Select(v => v.DenseValues().ToArray()).ToArray();

    /// <summary>Prints a crop of a [H, W] plane as a grid of numbers.</summary>
    public static void Print(string title, float[] plane, int width, int top, int left, int rows, int cols)
    {
        Console.WriteLine(title);
        for (int y = top; y < top + rows; y++)
            Console.WriteLine("  " + string.Join(" ", Enumerable.Range(left, cols).Select(x => plane[y * width + x].ToString("0").PadLeft(4))));
    }
}
