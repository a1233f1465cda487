using Microsoft.ML;
using Microsoft.ML.Data;
using SkiaSharp;

namespace MLNet.ConvNet.Vision;

/// <summary>What <see cref="ImageFolder.Load"/> does with a file it cannot use.</summary>
public enum InvalidImageHandling
{
    /// <summary>Leave the file out, record it in <see cref="ImageFolderReport.Rejected"/> and the log, and go on.</summary>
    Skip,
    /// <summary>Throw <see cref="InvalidDataException"/> naming the file and why (no row is produced).</summary>
    Fail,
}

/// <summary>Options of <see cref="ImageFolder.Load"/>; each summary states the default.</summary>
public sealed class ImageFolderOptions
{
    /// <summary>InvalidImages = Skip: what to do with a file that does not decode completely (see <see cref="InvalidImageHandling"/>).</summary>
    public InvalidImageHandling InvalidImages { get; set; } = InvalidImageHandling.Skip;

    /// <summary>Log = null: receives one line per rejected file and a summary line.</summary>
    public Action<string>? Log { get; set; }
}

/// <summary>One image that decoded completely: where it is, its class, its size and whether it holds colour.</summary>
/// <param name="Path">The file's full path (the data's ImagePath).</param>
/// <param name="Label">The class: the name of the sub-folder holding it.</param>
/// <param name="Width">Its width in pixels.</param>
/// <param name="Height">Its height in pixels.</param>
/// <param name="IsGray">True when every pixel has red = green = blue (a grey image, whatever its file's colour type).</param>
public sealed record ImageFileInfo(string Path, string Label, int Width, int Height, bool IsGray);

/// <summary>A file left out: its full path and why, in words.</summary>
/// <param name="Path">The file's full path.</param>
/// <param name="Reason">Why it cannot be used (e.g. "empty file (0 bytes)", "truncated: the image data ends early").</param>
public sealed record RejectedFile(string Path, string Reason);

/// <summary>What <see cref="ImageFolder.Load"/> found: the images it kept, the files it left out and why.</summary>
public sealed class ImageFolderReport
{
    internal ImageFolderReport(string folder, IReadOnlyList<string> classes, IReadOnlyList<ImageFileInfo> images, IReadOnlyList<RejectedFile> rejected)
    {
        Folder = folder; Classes = classes; Images = images; Rejected = rejected;
    }

    /// <summary>The folder read (full path).</summary>
    public string Folder { get; }

    /// <summary>The class names (sub-folders holding at least one usable image), in ordinal order.</summary>
    public IReadOnlyList<string> Classes { get; }

    /// <summary>Every usable image, class by class, in ordinal order of file name.</summary>
    public IReadOnlyList<ImageFileInfo> Images { get; }

    /// <summary>Every file left out, with the reason.</summary>
    public IReadOnlyList<RejectedFile> Rejected { get; }

    /// <summary>True when every usable image is grey (see <see cref="ImageFileInfo.IsGray"/>).</summary>
    public bool AllGray => Images.All(i => i.IsGray);

    /// <summary>The most common (width, height) among the images; on a tie, the one with more pixels.</summary>
    public (int Width, int Height) MostCommonSize => Images.GroupBy(i => (i.Width, i.Height))
        .OrderByDescending(g => g.Count()).ThenByDescending(g => g.Key.Width * g.Key.Height).First().Key;

    /// <summary>One line: images, classes, sizes, colour, rejected files.</summary>
    public override string ToString()
    {
        string sizes = Images.Count == 0 ? "no images" :
            $"sizes {Images.Min(i => i.Width)}..{Images.Max(i => i.Width)} x {Images.Min(i => i.Height)}..{Images.Max(i => i.Height)} (most common {MostCommonSize.Width} x {MostCommonSize.Height})";
        return $"{Images.Count} images in {Classes.Count} classes under {Folder}: {sizes}, {Images.Count(i => i.IsGray)} grey and {Images.Count(i => !i.IsGray)} colour; {Rejected.Count} files left out.";
    }
}

/// <summary>The images of a folder as an IDataView, and the report of what was kept and left out.</summary>
public sealed class ImageFolderData
{
    internal ImageFolderData(IDataView data, ImageFolderReport report) { Data = data; Report = report; }

    /// <summary>
    /// One row per usable image: <c>ImagePath</c> (text, full path), <c>Label</c> (text, the sub-folder's name),
    /// <c>Width</c>, <c>Height</c> (Int32) and <c>IsGray</c> (Boolean).
    /// </summary>
    public IDataView Data { get; }

    /// <summary>What was kept and left out, and why.</summary>
    public ImageFolderReport Report { get; }

    /// <summary>The class names, in ordinal order.</summary>
    public IReadOnlyList<string> Classes => Report.Classes;
}

/// <summary>
/// Loads a folder holding one sub-folder per class (the class is the sub-folder's name) into an IDataView, checking
/// every file once: it must decode completely with the decoder ML.NET's LoadImages uses (SkiaSharp), which finds empty
/// files, non-image files (macOS <c>._x.png</c> and <c>.DS_Store</c> included: every file of a class sub-folder is
/// checked, whatever its name), unknown formats and truncated images. Each file that fails is skipped and reported, or
/// makes the load fail naming it (<see cref="ImageFolderOptions.InvalidImages"/>).
/// </summary>
/// <remarks>
/// Without this check, one unreadable file stops <c>LoadImages</c> in the middle of training with
/// "Invalid input stream contents" and no file name, and a truncated JPEG or PNG is not noticed at all (it decodes
/// with its missing rows blank). Files directly in the folder (not in a sub-folder) are not read.
/// </remarks>
public static class ImageFolder
{
    /// <summary>The column names of <see cref="ImageFolderData.Data"/>.</summary>
    public static class Columns
    {
        /// <summary>"ImagePath".</summary>
        public const string ImagePath = "ImagePath";
        /// <summary>"Label".</summary>
        public const string Label = "Label";
        /// <summary>"Width".</summary>
        public const string Width = "Width";
        /// <summary>"Height".</summary>
        public const string Height = "Height";
        /// <summary>"IsGray".</summary>
        public const string IsGray = "IsGray";
    }

    /// <summary>Reads <paramref name="folder"/> (see the class summary); throws naming the folder when it has no usable image.</summary>
    public static ImageFolderData Load(MLContext mlContext, string folder, ImageFolderOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        ArgumentException.ThrowIfNullOrEmpty(folder);
        options ??= new ImageFolderOptions();
        string root = Path.GetFullPath(folder);
        if (!Directory.Exists(root)) throw new DirectoryNotFoundException($"Image folder '{root}' does not exist.");

        var images = new List<ImageFileInfo>();
        var rejected = new List<RejectedFile>();
        foreach (string classDir in Directory.GetDirectories(root).Order(StringComparer.Ordinal))
        {
            string label = Path.GetFileName(classDir);
            foreach (string file in Directory.GetFiles(classDir).Order(StringComparer.Ordinal))
            {
                string? reason = Check(file, out int width, out int height, out bool gray);
                if (reason is null)
                {
                    images.Add(new ImageFileInfo(file, label, width, height, gray));
                    continue;
                }
                if (options.InvalidImages == InvalidImageHandling.Fail)
                    throw new InvalidDataException($"Image file '{file}' cannot be used: {reason}. (ImageFolderOptions.InvalidImages = Fail; Skip leaves such files out and reports them.)");
                rejected.Add(new RejectedFile(file, reason));
                options.Log?.Invoke($"ImageFolder: left out '{file}': {reason}.");
            }
        }
        var classes = images.Select(i => i.Label).Distinct().ToArray();
        var report = new ImageFolderReport(root, classes, images, rejected);
        options.Log?.Invoke("ImageFolder: " + report);
        if (images.Count == 0)
            throw new InvalidDataException($"Image folder '{root}' holds no usable image in a class sub-folder ({rejected.Count} files left out" +
                (rejected.Count > 0 ? $", e.g. '{rejected[0].Path}': {rejected[0].Reason}" : "") + ").");

        var rows = images.Select(i => new Row { ImagePath = i.Path, Label = i.Label, Width = i.Width, Height = i.Height, IsGray = i.IsGray }).ToArray();
        return new ImageFolderData(mlContext.Data.LoadFromEnumerable(rows), report);
    }

    /// <summary>
    /// Decodes <paramref name="file"/> completely; null when it is a usable image (with its size and whether it is
    /// grey), else the reason in words.
    /// </summary>
    internal static string? Check(string file, out int width, out int height, out bool gray)
    {
        width = height = 0;
        gray = false;
        byte[] bytes;
        try { bytes = File.ReadAllBytes(file); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return $"cannot be read: {e.Message}"; }
        if (bytes.Length == 0) return "empty file (0 bytes)";

        using var data = SKData.CreateCopy(bytes);
        using var codec = SKCodec.Create(data);
        if (codec is null)
            return "not an image SkiaSharp can decode (unknown format or damaged header)" +
                (Path.GetFileName(file).StartsWith("._", StringComparison.Ordinal) ? "; a macOS resource-fork file ('._' name), not an image" : "");
        var info = new SKImageInfo(codec.Info.Width, codec.Info.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        if (info.Width <= 0 || info.Height <= 0) return $"declares a size of {info.Width} x {info.Height}";
        using var bitmap = new SKBitmap(info);
        var result = codec.GetPixels(info, bitmap.GetPixels());
        if (result != SKCodecResult.Success)
            return result == SKCodecResult.IncompleteInput
                ? $"truncated: the {codec.EncodedFormat} data ends before the last row of its {info.Width} x {info.Height} pixels"
                : $"the {codec.EncodedFormat} decoder failed ({result})";

        width = info.Width;
        height = info.Height;
        var pixels = bitmap.GetPixelSpan();
        gray = true;
        for (int i = 0; i < pixels.Length && gray; i += 4)
            gray = pixels[i] == pixels[i + 1] && pixels[i] == pixels[i + 2];
        return null;
    }

    private sealed class Row
    {
        public string ImagePath { get; set; } = "";
        public string Label { get; set; } = "";
        public int Width { get; set; }
        public int Height { get; set; }
        public bool IsGray { get; set; }
    }
}
