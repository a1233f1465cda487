using Microsoft.ML;
using Microsoft.ML.Data;
using Xunit;

namespace MLNet.ConvNet.Vision.Tests;

/// <summary>ImageFolder.Load: every file checked once; unreadable ones skipped and reported, or named in the error.</summary>
public sealed class ImageFolderTests
{
    [Fact]
    public void Skip_keeps_every_good_image_and_reports_each_bad_file_with_its_reason()
    {
        using var images = TestImages.Create(perClass: 6, gray: false, withBadFiles: true);
        var log = new List<string>();
        var loaded = new MLContext().Data.LoadFromImageFolder(images.Folder, new ImageFolderOptions { Log = log.Add });

        Assert.Equal(["horizontal", "vertical"], loaded.Classes);
        var report = loaded.Report;
        Assert.Equal(images.Good.Select(g => g.Path).Order(), report.Images.Select(i => i.Path).Order());
        foreach (var g in images.Good)
        {
            var info = report.Images.Single(i => i.Path == g.Path);
            Assert.Equal((g.Label, g.Width, g.Height, g.Gray), (info.Label, info.Width, info.Height, info.IsGray));
        }
        Assert.Equal(images.Bad.Select(b => b.Path).Order(), report.Rejected.Select(r => r.Path).Order());
        foreach (var (path, expect) in images.Bad)
        {
            Assert.Contains(expect, report.Rejected.Single(r => r.Path == path).Reason);
            Assert.Contains(log, line => line.Contains(path));
        }

        // The rows: one per good image, with its class and facts.
        var data = loaded.Data;
        var paths = data.GetColumn<string>(ImageFolder.Columns.ImagePath).ToArray();
        var labels = data.GetColumn<string>(ImageFolder.Columns.Label).ToArray();
        var widths = data.GetColumn<int>(ImageFolder.Columns.Width).ToArray();
        Assert.Equal(images.Good.Count, paths.Length);
        for (int i = 0; i < paths.Length; i++)
        {
            var g = images.Good.Single(x => x.Path == paths[i]);
            Assert.Equal((g.Label, g.Width), (labels[i], widths[i]));
        }
    }

    [Theory]
    [InlineData("empty.png", "empty file")]
    [InlineData("cut.jpg", "truncated")]
    [InlineData("._000.png", "resource-fork")]
    [InlineData("notes.txt", "not an image")]
    public void Fail_names_the_file_and_why(string name, string reason)
    {
        using var images = TestImages.Create(perClass: 3, gray: true, withBadFiles: false);
        string dir = Path.Combine(images.Folder, "vertical");
        var source = TestImages.Create(perClass: 3, gray: true, withBadFiles: true);
        try
        {
            string bad = source.Bad.Single(b => Path.GetFileName(b.Path) == name).Path;
            string path = Path.Combine(dir, name);
            File.Copy(bad, path);
            var e = Assert.Throws<InvalidDataException>(() => new MLContext().Data.LoadFromImageFolder(images.Folder,
                new ImageFolderOptions { InvalidImages = InvalidImageHandling.Fail }));
            Assert.Contains(path, e.Message);
            Assert.Contains(reason, e.Message);
        }
        finally { source.Dispose(); }
    }

    [Fact]
    public void A_folder_without_usable_images_is_an_error_naming_it()
    {
        using var images = TestImages.Create(perClass: 0, gray: true, withBadFiles: true);
        var e = Assert.Throws<InvalidDataException>(() => new MLContext().Data.LoadFromImageFolder(images.Folder));
        Assert.Contains(images.Folder, e.Message);
        Assert.Contains("no usable image", e.Message);
    }
}
