using Microsoft.ML.Data;

namespace MLNet.ConvNet.Transforms.Tests.TestKit;

/// <summary>A temporary folder of PNG files: Fashion-MNIST test images and a synthesized colour image.</summary>
public sealed class ImageFolder : IDisposable
{
    private ImageFolder(string path, List<string> files) { Path = path; Files = files; }

    /// <summary>The folder.</summary>
    public string Path { get; }

    /// <summary>The file names (relative to <see cref="Path"/>), Fashion-MNIST ones first, the colour image last.</summary>
    public IReadOnlyList<string> Files { get; }

    /// <summary>Writes <paramref name="fashionCount"/> Fashion-MNIST test images and one 40 x 32 colour image.</summary>
    public static ImageFolder Create(int fashionCount)
    {
        string path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "mlnet-convnet-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(path);
        var files = new List<string>();
        var images = FashionMnist.TestImages(fashionCount);
        for (int i = 0; i < images.Length; i++)
        {
            string name = $"fashion{i}.png";
            WritePng(System.IO.Path.Combine(path, name), 28, 28, (x, y) => { byte g = images[i][y * 28 + x]; return (g, g, g); });
            files.Add(name);
        }
        // Red rises left to right, green top to bottom, blue is a checkerboard: every channel differs.
        WritePng(System.IO.Path.Combine(path, "colour.png"), 40, 32,
            (x, y) => ((byte)(x * 6), (byte)(y * 8), (byte)(((x / 5 + y / 4) % 2) * 200 + 20)));
        files.Add("colour.png");
        return new ImageFolder(path, files);
    }

    /// <summary>Writes a PNG through ML.NET's own image type (BGRA, opaque).</summary>
    public static void WritePng(string file, int width, int height, Func<int, int, (byte r, byte g, byte b)> pixel)
    {
        var bgra = new byte[width * height * 4];
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
            {
                var (r, g, b) = pixel(x, y);
                int o = (y * width + x) * 4;
                bgra[o] = b; bgra[o + 1] = g; bgra[o + 2] = r; bgra[o + 3] = 255;
            }
        using var image = MLImage.CreateFromPixels(width, height, MLPixelFormat.Bgra32, bgra);
        image.Save(file);
    }

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}
