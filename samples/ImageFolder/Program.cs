// Image files in a folder per class through an ML.NET pipeline:
//   LoadImages -> ResizeImages -> ExtractPixels -> NormalizeMeanVariance -> ConvNet -> Evaluate -> Save -> PredictionEngine.
// Without --images, it first writes Fashion-MNIST test images as PNG files into a folder per class.
//
//   dotnet run -c Release --project samples/ImageFolder -- [--images DIR] [--size 28] [--gray] [--net lenet5] [--epochs 3]
//
// Options: --images DIR (a sub-folder per class holding .png/.jpg/.jpeg/.bmp files; default: write Fashion-MNIST PNGs to
//          --out/images)  --size S (images are resized to S x S, default 28)  --gray (one channel; implied for the
//          Fashion-MNIST PNGs)  --net lenet5|cnn2bn|vgg|resnet  --epochs 3  --batch 64  --lr 0.001  --seed 42
//          --per-class N (Fashion-MNIST PNGs written per class, default 600)  --out DIR (default image-folder-output)
using System.Diagnostics;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms.Image;
using MLNet.ConvNet.Data;
using MLNet.ConvNet.Trainers;

var opt = CommandLineArgs.Parse(args, "gray");
string outDir = Path.GetFullPath(opt.Str("out", "image-folder-output"));
int size = opt.Int("size", 28), seed = opt.Int("seed", 42);
Directory.CreateDirectory(outDir);
var clock = Stopwatch.StartNew();

string imagesDir = opt.StrOrNull("images") is { } given ? Path.GetFullPath(given) : WriteFashionPngs(Path.Combine(outDir, "images"), opt.Int("per-class", 600));
bool gray = opt.Has("gray") || opt.StrOrNull("images") is null;

// One row per image file: its path relative to the folder, and its class (the sub-folder's name).
string[] extensions = [".png", ".jpg", ".jpeg", ".bmp"];
var files = Directory.GetDirectories(imagesDir).OrderBy(d => d, StringComparer.Ordinal)
    .SelectMany(d => Directory.GetFiles(d).Where(f => extensions.Contains(Path.GetExtension(f).ToLowerInvariant()))
        .OrderBy(f => f, StringComparer.Ordinal)
        .Select(f => new ImageFile { ImagePath = Path.GetRelativePath(imagesDir, f), Label = Path.GetFileName(d) }))
    .ToArray();
if (files.Length == 0) throw new DirectoryNotFoundException($"'{imagesDir}' holds no sub-folder with images ({string.Join(", ", extensions)}).");
Console.WriteLine($"{files.Length:N0} images in {files.Select(f => f.Label).Distinct().Count()} classes under {imagesDir}");

var ml = new MLContext(seed);
var all = ml.Data.LoadFromEnumerable(files);
var split = ml.Data.TrainTestSplit(all, testFraction: 0.2, seed: seed);
// The label becomes a key (KeyValues: the folder names) before the model, so the saved model needs only an image path.
var labelToKey = ml.Transforms.Conversion.MapValueToKey("Label").Fit(all);
var train = labelToKey.Transform(split.TrainSet);
var test = labelToKey.Transform(split.TestSet);

var pipeline = ml.Transforms.LoadImages("Image", imagesDir, "ImagePath")
    .Append(ml.Transforms.ResizeImages("Image", size, size))
    .Append(ml.Transforms.ExtractPixels("Pixels", "Image", gray ? ImagePixelExtractingEstimator.ColorBits.Red : ImagePixelExtractingEstimator.ColorBits.Rgb,
        scaleImage: 1f / 255))                                  // Vector<Single, C, size, size> in [0, 1]
    .Append(ml.Transforms.NormalizeMeanVariance("Features", "Pixels", fixZero: false)) // per pixel, learned from the training images
    .Append(ml.MulticlassClassification.Trainers.ConvNet(new ConvNetTrainer.Options
    {
        Network = opt.Str("net", "lenet5"), Epochs = opt.Int("epochs", 3), BatchSize = opt.Int("batch", 64),
        LearningRate = opt.Double("lr", 1e-3), Seed = seed,
        OnEpoch = m => Console.WriteLine($"epoch {m.Epoch}: train loss {m.TrainLoss:F4} accuracy {m.TrainAccuracy:F4} ({m.Seconds:F1} s)"),
    }))
    .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedClass", "PredictedLabel"));
var model = pipeline.Fit(train);
Console.WriteLine($"features {model.Transform(test).Schema["Features"].Type}; trained in {clock.Elapsed.TotalSeconds:F1} s so far");

var metrics = ml.MulticlassClassification.Evaluate(model.Transform(test));
Console.WriteLine($"held-out images: accuracy {metrics.MicroAccuracy:F4}, macro accuracy {metrics.MacroAccuracy:F4}, log-loss {metrics.LogLoss:F4}");

string zip = Path.Combine(outDir, "model.zip");
ml.Model.Save(model, train.Schema, zip);
Console.WriteLine($"saved {zip}");

// A new context loads the model and classifies one file. ConvNetModel.Load, not Model.Load: disposing this engine then
// leaves the model working for the next one (a loaded model kept by a web app; docs/deployment.md).
var ml2 = new MLContext();
var loaded = ConvNetModel.Load(ml2, zip, out _);
using var engine = ml2.Model.CreatePredictionEngine<ImageFile, Prediction>(loaded);
var one = files[files.Length / 2];
var p = engine.Predict(new ImageFile { ImagePath = one.ImagePath });
Console.WriteLine($"{one.ImagePath}: predicted {p.PredictedClass} ({p.Score.Max():P1}), folder {one.Label}");
Console.WriteLine($"total {clock.Elapsed.TotalSeconds:F1} s");
Console.WriteLine($"held-out accuracy: {metrics.MicroAccuracy:F4}");
return 0;

// Writes the first perClass test images of each Fashion-MNIST class as 28x28 PNGs into <dir>/<class>/<index>.png.
static string WriteFashionPngs(string dir, int perClass)
{
    var test = FashionMnist.LoadTest(normalize: false);
    var written = new int[FashionMnist.ClassNames.Count];
    var bgra = new byte[28 * 28 * 4];
    for (int i = 0; i < test.Count; i++)
    {
        int label = test.Labels[i];
        if (written[label] == perClass) continue;
        string classDir = Path.Combine(dir, FashionMnist.ClassNames[label].Replace('/', '-'));
        Directory.CreateDirectory(classDir);
        var pixels = test.Features.Slice(i * 784, 784);
        for (int j = 0; j < 784; j++)
        {
            byte v = (byte)Math.Round(pixels[j] * 255);
            bgra[4 * j] = bgra[4 * j + 1] = bgra[4 * j + 2] = v;
            bgra[4 * j + 3] = 255;
        }
        using var image = MLImage.CreateFromPixels(28, 28, MLPixelFormat.Bgra32, bgra);
        image.Save(Path.Combine(classDir, $"{i:D5}.png"));
        written[label]++;
    }
    Console.WriteLine($"wrote {written.Sum():N0} Fashion-MNIST test images as PNG files into {dir}");
    return dir;
}

sealed class ImageFile
{
    public string ImagePath { get; set; } = "";
    public string Label { get; set; } = "";
}

sealed class Prediction
{
    public float[] Score { get; set; } = [];
    public string PredictedClass { get; set; } = "";
}

