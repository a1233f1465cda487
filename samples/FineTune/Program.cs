// Transfer learning from an ONNX file: a ResNet-18 exported by PyTorch (made by a script, random weights: nothing is
// downloaded) is imported into the engine, checked against ONNX Runtime, then fine-tuned on a Fashion-MNIST subset
// through the ML.NET trainer: first its new 10-class head alone (everything else frozen), then all of it from that
// run's checkpoint with a 10x smaller body learning rate. Each stage is evaluated; the last is saved and reloaded.
//
//   /usr/bin/python3 scripts/export-onnx-test-models.py /tmp/finetune --keep-weights      # /tmp/finetune/resnet18.onnx
//   dotnet run -c Release --project samples/FineTune -- --model /tmp/finetune/resnet18.onnx
//
// Options: --model FILE.onnx  --data DIR (else $FASHION_MNIST_DIR, else /usr/share/datasets/fashion-mnist)
//          --train 1000  --test 500 (images)  --size 32 (images are padded to size x size, 3 channels)
//          --head-epochs 2  --all-epochs 1  --lr 0.001  --seed 1  --out DIR (default finetune-output)
using System.Diagnostics;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.OnnxRuntime;
using MLNet.ConvNet;
using MLNet.ConvNet.Data;
using MLNet.ConvNet.Onnx;
using MLNet.ConvNet.Trainers;

var opt = CommandLineArgs.Parse(args);
string modelPath = opt.Str("model", "resnet18.onnx"), outDir = opt.Str("out", "finetune-output");
int size = opt.Int("size", 32), seed = opt.Int("seed", 1);
if (!File.Exists(modelPath))
{
    Console.Error.WriteLine($"No model '{modelPath}'. Make one with: /usr/bin/python3 scripts/export-onnx-test-models.py DIR --keep-weights, then --model DIR/resnet18.onnx");
    return 1;
}
Directory.CreateDirectory(outDir);
var clock = Stopwatch.StartNew();

// 1. Import and check: our engine and ONNX Runtime on the same random images.
var sample = new Shape(3, size, size);
var imported = OnnxImporter.Import(modelPath, sampleShape: sample);
var network = imported.Network;
Console.WriteLine($"Imported {modelPath} (opset {imported.Opset}): {network.Layers.Count} top-level layers, {network.ParameterCount:N0} parameters, output {network.OutputShape}");
var rng = new Random(seed);
var x = Enumerable.Range(0, 2 * sample.Length).Select(_ => (float)rng.NextDouble()).ToArray();
var ours = network.Forward(Tensor.FromHost(x, new Shape([2, .. sample.AsSpan()])), training: false).ToHost();
using (var session = new InferenceSession(modelPath))
using (var input = OrtValue.CreateTensorValueFromMemory(x, [2, 3, size, size]))
using (var outputs = session.Run(new RunOptions(), [imported.InputName], [input], [imported.OutputName]))
{
    var ort = outputs[0].GetTensorDataAsSpan<float>().ToArray();
    double scale = ort.Max(Math.Abs), error = ours.Zip(ort).Max(p => Math.Abs(p.First - p.Second));
    Console.WriteLine($"Check against ONNX Runtime: largest difference {error:g3}, {error / scale:g3} of the output's scale {scale:g3}");
}

// 2. Fashion-MNIST rows as 3 x size x size colour images with pixels in [0, 1] (the grey image in every channel,
//    centred); the trainer's InputMean/InputStd normalise them inside the network.
string dataDir = FashionMnist.FindDirectory(opt.StrOrNull("data"));
var ml = new MLContext(seed);
var keys = ml.Transforms.Conversion.MapValueToKey("Label", keyData: ml.Data.LoadFromEnumerable(FashionMnist.ClassNames.Select(n => new ClassName { Label = n })));
var schema = SchemaDefinition.Create(typeof(Row));
schema["Features"].ColumnType = new VectorDataViewType(NumberDataViewType.Single, 3, size, size);   // the size is known only at run time
IDataView View(InMemoryDataset d)
{
    var view = ml.Data.LoadFromEnumerable(Row.From(d, size), schema);
    return keys.Fit(view).Transform(view);
}
var train = View(FashionMnist.LoadTrain(dataDir, opt.Int("train", 1000), normalize: false));
var test = View(FashionMnist.LoadTest(dataDir, opt.Int("test", 500), normalize: false));
Console.WriteLine($"Fashion-MNIST from {dataDir}: features {train.Schema["Features"].Type}");

double Accuracy(ITransformer model) => ml.MulticlassClassification.Evaluate(model.Transform(test)).MicroAccuracy;
void Epoch(MLNet.ConvNet.Training.EpochMetrics m) => Console.WriteLine($"  epoch {m.Epoch}: loss {m.TrainLoss:F4}, train accuracy {m.TrainAccuracy:F4}, {m.Seconds:F1} s");

// 3. The new head alone: every layer before it frozen (its batch norms in inference mode).
string checkpoints = Path.Combine(outDir, "checkpoints");
Console.WriteLine("Stage 1: the head alone");
var headOnly = ml.MulticlassClassification.Trainers.ConvNet(new ConvNetTrainer.Options
{
    PretrainedModel = modelPath, FreezeThrough = "body", InputMean = [FashionMnist.Mean, FashionMnist.Mean, FashionMnist.Mean],
    InputStd = [FashionMnist.StdDev, FashionMnist.StdDev, FashionMnist.StdDev], Epochs = opt.Int("head-epochs", 2),
    LearningRate = opt.Double("lr", 1e-3), Seed = seed, CheckpointDirectory = checkpoints, Log = Console.WriteLine, OnEpoch = Epoch,
}).Fit(train);
Console.WriteLine($"  test accuracy after the head: {Accuracy(headOnly):F4}");

// 4. All of it, from stage 1's checkpoint (its architecture holds the Normalize layer and the new head).
Console.WriteLine("Stage 2: all layers, the body at 0.1 x the head's learning rate");
var all = ml.MulticlassClassification.Trainers.ConvNet(new ConvNetTrainer.Options
{
    PretrainedModel = Path.Combine(checkpoints, ConvNetTrainer.Defaults.CheckpointFileName), ReplaceHead = false, BodyLearningRateScale = 0.1,
    Epochs = opt.Int("all-epochs", 1), LearningRate = opt.Double("lr", 1e-3), Seed = seed, OnEpoch = Epoch,
}).Fit(train);
double accuracy = Accuracy(all);

// 5. Save, reload in a new context, evaluate again.
string zip = Path.Combine(outDir, "model.zip");
ml.Model.Save(all, train.Schema, zip);
var reloaded = new MLContext(seed).Model.Load(zip, out _);
Console.WriteLine($"Saved {zip}; reloaded test accuracy {ml.MulticlassClassification.Evaluate(reloaded.Transform(test)).MicroAccuracy:F4}");
Console.WriteLine($"Total {clock.Elapsed.TotalSeconds:F0} s");
Console.WriteLine($"test accuracy: {accuracy:F4}");
return 0;

/// <summary>A class name: the rows that fix the label keys' order.</summary>
sealed class ClassName { public string Label { get; set; } = ""; }

/// <summary>A Fashion-MNIST image as a 3-channel size x size image, and its class name.</summary>
sealed class Row
{
    [VectorType]
    public float[] Features { get; set; } = [];
    public string Label { get; set; } = "";

    public static IEnumerable<Row> From(InMemoryDataset d, int size)
    {
        int side = FashionMnist.Side, offset = (size - side) / 2;
        if (offset < 0) throw new ArgumentException($"--size {size} is below Fashion-MNIST's {side}.");
        for (int i = 0; i < d.Count; i++)
        {
            var f = new float[3 * size * size];
            var image = d.Features.Slice(i * side * side, side * side);
            for (int c = 0; c < 3; c++)
                for (int y = 0; y < side; y++)
                    for (int x = 0; x < side; x++) f[(c * size + y + offset) * size + x + offset] = image[y * side + x];
            yield return new Row { Features = f, Label = FashionMnist.ClassNames[d.Labels[i]] };
        }
    }
}
