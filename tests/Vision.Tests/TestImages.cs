using SkiaSharp;

namespace MLNet.ConvNet.Vision.Tests;

/// <summary>
/// A temporary image folder made at test time: two classes of striped images ("horizontal", "vertical") as PNG, JPEG
/// and BMP files of mixed sizes, grey or coloured, plus the unreadable files users meet (empty, truncated, macOS
/// resource fork, text).
/// </summary>
public sealed class TestImages : IDisposable
{
    /// <summary>The folder.</summary>
    public string Folder { get; } = Path.Combine(Path.GetTempPath(), "convnet-vision-" + Guid.NewGuid().ToString("N"));

    /// <summary>Every good image written: path, class, width, height, grey.</summary>
    public List<(string Path, string Label, int Width, int Height, bool Gray)> Good { get; } = [];

    /// <summary>Every unreadable file written: path, and a word its rejection reason must contain.</summary>
    public List<(string Path, string Expect)> Bad { get; } = [];

    private static readonly (int W, int H)[] Sizes = [(28, 28), (28, 28), (24, 30), (32, 26)];

    /// <summary>Writes <paramref name="perClass"/> images per class; <paramref name="gray"/> makes them all grey, else every other one is coloured.</summary>
    public static TestImages Create(int perClass, bool gray, bool withBadFiles, int seed = 1)
    {
        var t = new TestImages();
        var rng = new Random(seed);
        foreach (string label in new[] { "horizontal", "vertical" })
        {
            string dir = Path.Combine(t.Folder, label);
            Directory.CreateDirectory(dir);
            for (int i = 0; i < perClass; i++)
            {
                var (w, h) = Sizes[i % Sizes.Length];
                bool isGray = gray || i % 2 == 0;
                string ext = (i % 3) switch { 0 => "png", 1 => "jpg", _ => "bmp" };
                // Stripes of a random period and phase across the class's direction; lossless formats keep grey exactly
                // grey, and JPEG's colour conversion of a grey image also gives R = G = B (no chroma).
                int period = 4 + rng.Next(5), phase = rng.Next(period);
                byte hi = (byte)(170 + rng.Next(80)), lo = (byte)rng.Next(70);
                var tint = isGray ? (1.0, 1.0, 1.0) : (0.5 + rng.NextDouble() / 2, 0.5 + rng.NextDouble() / 2, 0.5 + rng.NextDouble() / 2);
                var rgba = new byte[w * h * 4];
                for (int y = 0; y < h; y++)
                    for (int x = 0; x < w; x++)
                    {
                        int along = label == "horizontal" ? y : x;
                        double v = ((along + phase) / (period / 2)) % 2 == 0 ? hi : lo;
                        int o = (y * w + x) * 4;
                        rgba[o] = (byte)(v * tint.Item1); rgba[o + 1] = (byte)(v * tint.Item2); rgba[o + 2] = (byte)(v * tint.Item3); rgba[o + 3] = 255;
                    }
                string path = Path.Combine(dir, $"{i:D3}.{ext}");
                Write(path, w, h, rgba, ext);
                // What a decoder reads back decides "grey" (a JPEG of a tinted image is coloured; of a grey one, grey).
                t.Good.Add((path, label, w, h, isGray));
            }
        }
        if (withBadFiles)
        {
            string v = Path.Combine(t.Folder, "vertical"), hz = Path.Combine(t.Folder, "horizontal");
            t.AddBad(Path.Combine(v, "empty.png"), [], "empty");
            var noise = new byte[32 * 32 * 4];
            rng.NextBytes(noise);
            for (int i = 3; i < noise.Length; i += 4) noise[i] = 255;
            var jpeg = Encode(32, 32, noise, "jpg");
            t.AddBad(Path.Combine(hz, "cut.jpg"), jpeg[..(jpeg.Length / 2)], "truncated");
            var png = Encode(32, 32, noise, "png");
            t.AddBad(Path.Combine(v, "cut.png"), png[..(png.Length * 2 / 3)], "truncated");
            // An AppleDouble header (magic 0x00051607, version 2), as macOS writes beside a copied file.
            t.AddBad(Path.Combine(hz, "._000.png"), [0, 5, 22, 7, 0, 2, 0, 0, .. "Mac OS X        "u8.ToArray(), 0, 0], "resource-fork");
            t.AddBad(Path.Combine(v, "notes.txt"), "taken on Tuesday"u8.ToArray(), "not an image");
        }
        return t;
    }

    private void AddBad(string path, byte[] bytes, string expect)
    {
        File.WriteAllBytes(path, bytes);
        Bad.Add((path, expect));
    }

    /// <summary>PNG and JPEG through SkiaSharp's encoders; BMP written by hand (SkiaSharp does not encode BMP).</summary>
    private static void Write(string path, int w, int h, byte[] rgba, string ext) => File.WriteAllBytes(path, Encode(w, h, rgba, ext));

    private static byte[] Encode(int w, int h, byte[] rgba, string ext)
    {
        if (ext == "bmp") return Bmp(w, h, rgba);
        var info = new SKImageInfo(w, h, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        using var bitmap = new SKBitmap(info);
        System.Runtime.InteropServices.Marshal.Copy(rgba, 0, bitmap.GetPixels(), rgba.Length);
        using var data = bitmap.Encode(ext == "png" ? SKEncodedImageFormat.Png : SKEncodedImageFormat.Jpeg, 95);
        return data.ToArray();
    }

    /// <summary>A 24-bit bottom-up BMP (BITMAPINFOHEADER), rows padded to 4 bytes.</summary>
    private static byte[] Bmp(int w, int h, byte[] rgba)
    {
        int stride = (w * 3 + 3) / 4 * 4, size = 54 + stride * h;
        var b = new byte[size];
        void I32(int at, int v) => BitConverter.TryWriteBytes(b.AsSpan(at, 4), v);
        b[0] = (byte)'B'; b[1] = (byte)'M'; I32(2, size); I32(10, 54);
        I32(14, 40); I32(18, w); I32(22, h); b[26] = 1; b[28] = 24; I32(34, stride * h);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                int src = ((h - 1 - y) * w + x) * 4, dst = 54 + y * stride + x * 3;
                b[dst] = rgba[src + 2]; b[dst + 1] = rgba[src + 1]; b[dst + 2] = rgba[src];
            }
        return b;
    }

    public void Dispose()
    {
        try { Directory.Delete(Folder, recursive: true); } catch (IOException) { }
    }
}
