// The seed's exercises (Knet's CNN tutorial, "Exercises") on real Fashion-MNIST images, as ML.NET pipelines:
// PNG files -> LoadImages -> ExtractPixels -> our transforms. Each result is printed, checked, and written as a PNG to
// samples/Filters/output/ for a person to look at. Exit code 1 if a check fails.
using Microsoft.ML;
using Microsoft.ML.Transforms.Image;
using MLNet.ConvNet;
using MLNet.ConvNet.Ops;
using MLNet.ConvNet.Transforms;

string output = Path.Combine(AppContext.BaseDirectory, "../../../output");
if (args.Length > 0) output = args[0];
Directory.CreateDirectory(output);
output = Path.GetFullPath(output);
var ml = new MLContext(seed: 1);
int failures = 0;
void Check(string what, bool ok) { Console.WriteLine($"  check: {what}: {(ok ? "ok" : "FAILED")}"); if (!ok) failures++; }

// ---- the images: four Fashion-MNIST test images as PNG files ----
var fashion = Images.FashionMnist(4);
for (int i = 0; i < fashion.Length; i++)
    Images.WriteGrey(Path.Combine(output, $"input{i}.png"), fashion[i].Select(b => (float)b).ToArray(), 28, 28);
var files = ml.Data.LoadFromEnumerable(Enumerable.Range(0, fashion.Length).Select(i => new Images.Files { Path = $"input{i}.png" }));
// One grey plane per image: ExtractPixels needs a known size (ResizeImages to the files' own size changes nothing) and
// gives Vector<Single, 1, 28, 28> for the red channel, values 0..255.
var pixels = ml.Transforms.LoadImages("Image", output, "Path")
    .Append(ml.Transforms.ResizeImages("Image", 28, 28, "Image"))
    .Append(ml.Transforms.ExtractPixels("Pixels", "Image", colorsToExtract: ImagePixelExtractingEstimator.ColorBits.Red));
Console.WriteLine($"Wrote {fashion.Length} Fashion-MNIST test images to {output}/input*.png");

// ---- 1. A filter that shifts an image one pixel to the right ----
// In true convolution (the seed's default mode) a kernel holding a single 1 at offset (0, +1) from its centre moves
// every pixel by (0, +1): y[h, w] = x[h, w - 1]. Padding 1 keeps the size; column 0 receives the padding's 0.
Console.WriteLine();
Console.WriteLine("1. Shift right by one pixel: 3x3 kernel [0 0 0; 0 0 1; 0 0 0], convolution mode, padding 1");
var shift = Tensor.FromHost([0f, 0, 0, 0, 0, 1, 0, 0, 0], 1, 1, 3, 3);
var shifted = pixels.Append(ml.Transforms.ApplyConvolution("Shifted", shift, inputColumnName: "Pixels", options: new ConvolutionOptions { Padding = 1 }))
    .Fit(files).Transform(files);
var x0 = Images.Read(shifted, "Pixels");
var s0 = Images.Read(shifted, "Shifted");
Images.Print("  input rows 12-15, columns 6-17:", x0[0], 28, 12, 6, 4, 12);
Images.Print("  shifted:", s0[0], 28, 12, 6, 4, 12);
bool shiftOk = true;
for (int i = 0; i < x0.Length; i++)
    for (int h = 0; h < 28; h++)
        for (int w = 0; w < 28; w++)
            shiftOk &= s0[i][h * 28 + w] == (w == 0 ? 0 : x0[i][h * 28 + w - 1]);
Check("y[h, w] = x[h, w - 1] on every image", shiftOk);
for (int i = 0; i < s0.Length; i++) Images.WriteGrey(Path.Combine(output, $"shifted{i}.png"), s0[i], 28, 28);

// ---- 2. An edge filter: 0 on uniform regions, not 0 on edges ----
// The Laplacian [0 1 0; 1 -4 1; 0 1 0] sums to 0, so on a uniform patch it gives exactly 0; where the colour changes it
// does not. Flipping does not matter (the kernel is symmetric).
Console.WriteLine();
Console.WriteLine("2. Edges: Laplacian [0 1 0; 1 -4 1; 0 1 0], padding 1");
var laplacian = Tensor.FromHost([0f, 1, 0, 1, -4, 1, 0, 1, 0], 1, 1, 3, 3);
var edges = Images.Read(pixels.Append(ml.Transforms.ApplyConvolution("Edges", laplacian, inputColumnName: "Pixels", options: new ConvolutionOptions { Padding = 1 }))
    .Fit(files).Transform(files), "Edges");
int uniform = 0, uniformZero = 0, edgeCells = 0;
for (int i = 0; i < x0.Length; i++)
    for (int h = 0; h < 28; h++)
        for (int w = 0; w < 28; w++)
        {
            // The four neighbours the kernel reads (0 outside the image, as the padding).
            float Px(int y, int x) => y < 0 || y >= 28 || x < 0 || x >= 28 ? 0 : x0[i][y * 28 + x];
            float c = Px(h, w);
            bool flat = Px(h - 1, w) == c && Px(h + 1, w) == c && Px(h, w - 1) == c && Px(h, w + 1) == c;
            float e = edges[i][h * 28 + w];
            if (flat) { uniform++; if (e == 0) uniformZero++; }
            else if (e != 0) edgeCells++;
        }
Console.WriteLine($"  {uniform} cells lie in uniform patches, {uniformZero} of them give 0; {edgeCells} cells on edges give a non-zero value");
Check("0 on every uniform patch", uniform == uniformZero && uniform > 0);
Check("non-zero on edges", edgeCells > 0);
for (int i = 0; i < edges.Length; i++)
    Images.WriteGrey(Path.Combine(output, $"edges{i}.png"), edges[i].Select(MathF.Abs).ToArray(), 28, 28, scale: 0.5f);

// ---- 3. Motion detection from two consecutive frames ----
// Two frames of a 48 x 28 "video": image 0 at column 6, then at column 10 (it moved 4 pixels right). Stacked as a
// 2-channel image [frame1, frame2], a 1x1 filter bank of two filters, [-1, 1] and [1, -1], followed by ReLU gives
// where the object arrived (channel 0) and where it left (channel 1); both are 0 wherever nothing moved.
Console.WriteLine();
Console.WriteLine("3. Motion: two frames stacked as 2 channels, filters [-1, 1] and [1, -1], then ReLU");
const int frameWidth = 48;
float[] Frame(int left) => Enumerable.Range(0, 28 * frameWidth)
    .Select(k => { int y = k / frameWidth, x = k % frameWidth - left; return x >= 0 && x < 28 ? (float)fashion[0][y * 28 + x] : 0f; }).ToArray();
var (frame1, frame2) = (Frame(6), Frame(10));
Images.WriteGrey(Path.Combine(output, "frame1.png"), frame1, 28, frameWidth);
Images.WriteGrey(Path.Combine(output, "frame2.png"), frame2, 28, frameWidth);
var framePair = ml.Data.LoadFromEnumerable([new Images.Files { Path = "frame1.png", Next = "frame2.png" }]);
// Concatenate gives a flat Vector<Single, 2688>; InputShape [2, 28, 48] tells the convolution its channels.
var motion = ml.Transforms.LoadImages("Image1", output, "Path")
    .Append(ml.Transforms.LoadImages("Image2", output, "Next"))
    .Append(ml.Transforms.ResizeImages("Image1", frameWidth, 28, "Image1"))
    .Append(ml.Transforms.ResizeImages("Image2", frameWidth, 28, "Image2"))
    .Append(ml.Transforms.ExtractPixels("Frame1", "Image1", colorsToExtract: ImagePixelExtractingEstimator.ColorBits.Red))
    .Append(ml.Transforms.ExtractPixels("Frame2", "Image2", colorsToExtract: ImagePixelExtractingEstimator.ColorBits.Red))
    .Append(ml.Transforms.Concatenate("Frames", "Frame1", "Frame2"))
    .Append(ml.Transforms.ApplyConvolution("Difference", Tensor.FromHost([-1f, 1, 1, -1], 2, 2, 1, 1), inputColumnName: "Frames", inputShape: [2, 28, frameWidth]))
    .Append(ml.Transforms.ApplyActivation("Motion", ActivationKind.ReLU, "Difference"));
var moved = Images.Read(motion.Fit(framePair).Transform(framePair), "Motion")[0];
int plane = 28 * frameWidth;
int arrived = moved.Take(plane).Count(v => v > 0), left = moved.Skip(plane).Count(v => v > 0);
var changed = Enumerable.Range(0, plane).Where(k => moved[k] > 0 || moved[plane + k] > 0).ToArray();
Console.WriteLine($"  {arrived} cells got brighter (the object arrived), {left} got darker (it left); columns {changed.Min(k => k % frameWidth)}..{changed.Max(k => k % frameWidth)} changed");
bool motionOk = true;
for (int k = 0; k < plane; k++)
    motionOk &= moved[k] == Math.Max(0, frame2[k] - frame1[k]) && moved[plane + k] == Math.Max(0, frame1[k] - frame2[k]);
Check("channel 0 = max(0, frame2 - frame1), channel 1 = max(0, frame1 - frame2), 0 where nothing moved", motionOk);
Images.WriteRgb(Path.Combine(output, "motion.png"), 28, frameWidth,
    (y, x) => (Images.Clamp(moved[plane + y * frameWidth + x]), Images.Clamp(moved[y * frameWidth + x]), 0));
Console.WriteLine("  motion.png: green where the object arrived, red where it left");

// ---- 4. A matrix-vector product as a convolution ----
// The seed: W = [1 3 5; 2 4 6], x = [1, 2, 3], W x = [22, 28]. Each row of W becomes one filter of width 3 over a
// 1-channel signal of length 3, in cross-correlation mode (no flip): the output [2, 1] is W x.
Console.WriteLine();
Console.WriteLine("4. Matrix-vector product as a convolution (cross-correlation, one filter per row of W)");
var vector = ml.Data.LoadFromEnumerable([new Signal { X = [1, 2, 3] }]);
var seedProduct = Images.Read(ml.Transforms.ApplyConvolution("Wx", Tensor.FromHost([1f, 3, 5, 2, 4, 6], 2, 1, 3), inputColumnName: "X",
    options: new ConvolutionOptions { Mode = ConvolutionMode.CrossCorrelation }, inputShape: [1, 3]).Fit(vector).Transform(vector), "Wx")[0];
Console.WriteLine($"  W x = [{string.Join(", ", seedProduct)}] (seed: [22, 28])");
Check("the seed's W x", seedProduct.SequenceEqual([22f, 28f]));
// On the images: W is 10 x 784 (10 random "templates"), x each image's 784 pixels; a 1x1 convolution over the
// flattened image as 784 channels computes W x for every row, which is W X for the whole data set.
var rng = new Random(1);
var templates = Enumerable.Range(0, 10 * 784).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();
var products = Images.Read(pixels.Append(ml.Transforms.ApplyConvolution("Wx", Tensor.FromHost(templates, 10, 784, 1), inputColumnName: "Pixels",
    inputShape: [784, 1])).Fit(files).Transform(files), "Wx");
double worst = 0;
for (int i = 0; i < x0.Length; i++)
    for (int r = 0; r < 10; r++)
    {
        // Relative to the sum of the terms' sizes: a float32 sum of 784 terms of mixed sign cancels, and its rounding
        // error scales with the terms, not with the (possibly small) result.
        double direct = 0, size = 0;
        for (int k = 0; k < 784; k++) { double t = (double)templates[r * 784 + k] * x0[i][k]; direct += t; size += Math.Abs(t); }
        worst = Math.Max(worst, Math.Abs(products[i][r] - direct) / Math.Max(1, size));
    }
Console.WriteLine($"  W X for 4 images (10 x 784 times 784 x 4): largest difference from a float64 loop, relative to the sum of |terms|, {worst:g2}");
Check("W X within float32 rounding (1e-5)", worst < 1e-5);

Console.WriteLine();
Console.WriteLine(failures == 0 ? "All checks passed." : $"{failures} check(s) FAILED.");
return failures == 0 ? 0 : 1;

sealed class Signal
{
    [Microsoft.ML.Data.VectorType(3)]
    public float[] X { get; set; } = [];
}
