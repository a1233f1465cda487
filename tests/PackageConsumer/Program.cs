// A consumer of the MLNet.ConvNet packages as a user's application would be: tests/Trainers.Tests/PackageTests.cs packs
// the libraries to a local feed, copies this file into a temporary folder beside a project that references only the
// package MLNet.ConvNet.Trainers (Microsoft.ML and ONNX Runtime come with it), builds it from that feed, and runs it.
// It is not part of the solution.
//
// Usage: PackageConsumer <model.zip> <rows.bin> <scores.bin>
//   rows.bin: int32 n, then n images of 1x28x28 float32; scores.bin: int32 n, int32 k, then n x k float32 scores.
// It loads the model with ConvNetModel.Load, scores the rows from several threads through a ThreadSafePredictor, and
// prints the MLNet.ConvNet assembly it ran with.
using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ConvNet.Trainers;

if (args.Length != 3)
{
    Console.Error.WriteLine("usage: PackageConsumer <model.zip> <rows.bin> <scores.bin>");
    return 2;
}
var ml = new MLContext();
var model = ConvNetModel.Load(ml, args[0], out _);

Image[] images;
using (var r = new BinaryReader(File.OpenRead(args[1])))
{
    images = new Image[r.ReadInt32()];
    for (int i = 0; i < images.Length; i++)
        images[i] = new Image { Features = Enumerable.Range(0, 784).Select(_ => r.ReadSingle()).ToArray() };
}

var scores = new float[images.Length][];
using (var predictor = model.CreatePredictor<Image, Scored>())
    Parallel.For(0, images.Length, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i => scores[i] = predictor.Predict(images[i]).Score);

using (var w = new BinaryWriter(File.Create(args[2])))
{
    w.Write(scores.Length);
    w.Write(scores[0].Length);
    foreach (var row in scores) foreach (float v in row) w.Write(v);
}
var assembly = typeof(ConvNetModel).Assembly;
Console.WriteLine($"assembly: {assembly.GetName().Name} from {assembly.Location}");
return 0;

sealed class Image
{
    [VectorType(1, 28, 28)]
    public float[] Features { get; set; } = [];
}

sealed class Scored
{
    public float[] Score { get; set; } = [];
}
