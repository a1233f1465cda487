// Image files in a folder per class, from folder to model and ONNX file in a few calls (MLNet.ConvNet.Vision):
//   LoadFromImageFolder (every file checked; unreadable ones left out and reported) -> ConvNetImageClassifier
//   (resize, colour, per-channel normalisation, ConvNet, holdout split) -> Save -> PredictionEngine -> ExportOnnx.
// Without --images, it first writes Fashion-MNIST test images as PNG files into a folder per class.
//
//   dotnet run -c Release --project samples/ImageFolder -- [--images DIR] [--size S] [--gray|--rgb] [--net lenet5] [--epochs 3]
//
// Options: --images DIR (a sub-folder per class; default: write Fashion-MNIST PNGs to --out/images)  --size S (resize to
//          S x S; default: the most common size)  --gray / --rgb (default: gray when every image is grey)
//          --strict (fail on the first unreadable file instead of leaving it out)  --net lenet5|cnn2bn|vgg|resnet
//          --epochs 3  --batch 64  --lr 0.001  --seed 42  --per-class N (Fashion-MNIST PNGs per class, default 600)
//          --out DIR (default image-folder-output)
using System.Diagnostics;
using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ConvNet.Data;
using MLNet.ConvNet.Trainers;
using MLNet.ConvNet.Vision;

var opt = CommandLineArgs.Parse(args, "gray", "rgb", "strict");
string outDir = Path.GetFullPath(opt.Str("out", "image-folder-output"));
int seed = opt.Int("seed", 42);
Directory.CreateDirectory(outDir);
var clock = Stopwatch.StartNew();
string imagesDir = opt.StrOrNull("images") is { } given ? Path.GetFullPath(given) : WriteFashionPngs(Path.Combine(outDir, "images"), opt.Int("per-class", 600));

var ml = new MLContext(seed);
// One row per image that decodes completely (ImagePath, Label = the sub-folder's name, Width, Height, IsGray).
var images = ml.Data.LoadFromImageFolder(imagesDir, new ImageFolderOptions
{
    InvalidImages = opt.Has("strict") ? InvalidImageHandling.Fail : InvalidImageHandling.Skip,
    Log = Console.WriteLine,
});

var model = ml.MulticlassClassification.Trainers.ConvNetImageClassifier(new ImageClassifierOptions
{
    ImageWidth = opt.Int("size", 0), ImageHeight = opt.Int("size", 0),
    ColorMode = opt.Has("gray") ? ImageColorMode.Gray : opt.Has("rgb") ? ImageColorMode.Rgb : ImageColorMode.Auto,
    HoldoutFraction = 0.2,
    Log = Console.WriteLine,
    Trainer = new ConvNetTrainer.Options
    {
        Network = opt.Str("net", "lenet5"), Epochs = opt.Int("epochs", 3), BatchSize = opt.Int("batch", 64),
        LearningRate = opt.Double("lr", 1e-3), Seed = seed,
        OnEpoch = m => Console.WriteLine($"epoch {m.Epoch}: train loss {m.TrainLoss:F4} accuracy {m.TrainAccuracy:F4}, holdout accuracy {m.ValidationAccuracy:F4} ({m.Seconds:F1} s)"),
    },
}).Fit(images.Data);
var metrics = model.HoldoutMetrics!;
Console.WriteLine($"held-out images: accuracy {metrics.MicroAccuracy:F4}, macro accuracy {metrics.MacroAccuracy:F4}, log-loss {metrics.LogLoss:F4}");

string zip = Path.Combine(outDir, "model.zip");
ml.Model.Save(model, images.Data.Schema, zip);
string onnx = Path.Combine(outDir, "model.onnx");
model.ExportOnnx(onnx); // raw 0..255 pixels in; normalisation, network and softmax inside; class names in its metadata
Console.WriteLine($"saved {zip} and {onnx}");

// A new context loads the model and classifies one file by its path. ConvNetModel.Load, not Model.Load: disposing
// this engine then leaves the model working for the next one (a loaded model kept by a web app; docs/deployment.md).
var ml2 = new MLContext();
var loaded = ConvNetModel.Load(ml2, zip, out _);
using var engine = ml2.Model.CreatePredictionEngine<ImageFile, Prediction>(loaded);
var one = images.Report.Images[images.Report.Images.Count / 2];
var p = engine.Predict(new ImageFile { ImagePath = one.Path });
Console.WriteLine($"{Path.GetRelativePath(imagesDir, one.Path)}: predicted {p.PredictedClass} ({p.Score.Max():P1}), folder {one.Label}");
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
}

sealed class Prediction
{
    public float[] Score { get; set; } = [];
    public string PredictedClass { get; set; } = "";
}

