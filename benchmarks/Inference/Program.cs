// Inference speed of a fitted ConvNet pipeline against ONNX Runtime on the exported graph, on the 10,000
// Fashion-MNIST test images. Trains the network for 1 epoch first (speed does not depend on the weights, but the
// pipeline is a real fitted one), warms every method up once, then times --runs rounds, each round running every
// method once (so load from other processes falls on all alike), and reports images per second from the medians:
//   source_only      a cursor reading Features of the unscored IDataView (the floor of any ML.NET pipeline)
//   pipeline         (a) model.Transform(test) and a cursor reading Score for every row (the engine)
//   engine_b256      Network.Forward + softmax directly on batches of 256, each layer's loop parallel
//   ort_b1000/10000  (b) an InferenceSession on ExportOnnx's graph (any batch size), ORT's default session options
//                    (intra-op threads = cores)
//   loaded_pipeline  (c) Model.Save then Model.Load in a new MLContext: Transform + cursor (ONNX Runtime one row at
//                    a time through ML.NET's OnnxTransformer: the deployment path)
//   predict_*        (d) PredictionEngine.Predict on one image, fitted and loaded: median and p99 over --calls calls
//                    after 2 s of warm-up calls (at least 200)
//   ort_b1*          (e) InferenceSession.Run on one image, default threads and one intra-op thread: median
// Prints RESULT key = value lines (inference.<net>.<what>) and the process's peak working set.
//
//   dotnet run -c Release --project benchmarks/Inference -- --net lenet5
//
// Options: --net lenet5|cnn2bn|all (default lenet5)  --runs 5  --calls 2000  --limit 10000 (training images;
//          0 = all 60,000)  --data DIR (else $FASHION_MNIST_DIR, else /usr/share/datasets/fashion-mnist)
//          --profile (also: the engine alone at several batch sizes and thread counts, the scorer with several
//          chunk sizes, milliseconds per layer, GC counts)
using System.Diagnostics;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.OnnxRuntime;
using MLNet.ConvNet;
using MLNet.ConvNet.Data;
using MLNet.ConvNet.Trainers;

string netOption = "lenet5", dataOption = "";
int runs = 5, calls = 2000, limit = 10000;
bool profile = false;
for (int i = 0; i < args.Length; i++)
{
    string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value.");
    switch (args[i])
    {
        case "--net": netOption = Next(); break;
        case "--runs": runs = int.Parse(Next()); break;
        case "--calls": calls = int.Parse(Next()); break;
        case "--limit": limit = int.Parse(Next()); break;
        case "--data": dataOption = Next(); break;
        case "--profile": profile = true; break;
        default: Console.Error.WriteLine($"unknown option {args[i]}"); return 2;
    }
}
string[] nets = netOption == "all" ? ["lenet5", "cnn2bn"] : [netOption];

Console.WriteLine($".NET {Environment.Version}, {Environment.ProcessorCount} logical CPUs, load average {LoadAverage()}; " +
                  $"median of {runs} runs after a warm-up; {calls} PredictionEngine calls");
string dir = FashionMnist.FindDirectory(dataOption == "" ? null : dataOption);
var trainSet = FashionMnist.LoadTrain(dir, limit > 0 ? limit : null);
var testSet = FashionMnist.LoadTest(dir);
int n = testSet.Count;
var testX = testSet.Features.ToArray();
var ml = new MLContext(seed: 1);
var labelToKey = ml.Transforms.Conversion.MapValueToKey("Label", keyData: ml.Data.LoadFromEnumerable(FashionMnist.ClassNames.Select(c => new ClassName { Label = c })));
var trainView = ml.Data.LoadFromEnumerable(ImageRow.From(trainSet));
var train = labelToKey.Fit(trainView).Transform(trainView);
var inputs = Enumerable.Range(0, n).Select(i => new ImageInput { Features = testSet.Features.Slice(i * 784, 784).ToArray() }).ToArray();
var test = ml.Data.LoadFromEnumerable(inputs);

foreach (string net in nets)
{
    string key = $"inference.{net}";
    var clock = Stopwatch.StartNew();
    var model = ml.MulticlassClassification.Trainers.ConvNet(new ConvNetTrainer.Options { Network = net, Epochs = 1, Seed = 1 }).Fit(train);
    Console.WriteLine($"{net}: trained 1 epoch on {trainSet.Count:N0} images in {clock.Elapsed.TotalSeconds:F1} s; scoring {n:N0} test images");

    if (profile) Profile(key, model.Network, net, testX, runs);

    // (b) needs a session, (c) the saved model loaded in a new MLContext (ONNX Runtime one row at a time).
    var onnx = new MemoryStream();
    model.ExportOnnx(onnx);
    using var session = new InferenceSession(onnx.ToArray());
    var ortBatches = new[] { 1000, 10000 }.ToDictionary(b => b, b => Enumerable.Range(0, (n + b - 1) / b).Select(i =>
    {
        int count = Math.Min(b, n - i * b);
        return OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, testX.AsMemory(i * b * 784, count * 784), [count, 1, 28, 28]);
    }).ToArray());
    using var runOptions = new RunOptions();
    var zip = new MemoryStream();
    ml.Model.Save(model, train.Schema, zip);
    zip.Position = 0;
    var ml2 = new MLContext(seed: 1);
    var loaded = ml2.Model.Load(zip, out _);
    var test2 = ml2.Data.LoadFromEnumerable(inputs);
    var network = model.Network;

    // Round-robin: run r of every method before run r + 1 of any, so load from other processes falls on all alike.
    Throughput(key, n, runs, new (string, Action)[]
    {
        // Reading the features of the source view alone: what every pipeline pays before scoring.
        ("source_only", () => ReadFeatures(test, n)),
        // (a) The fitted pipeline: Transform + a cursor over Score.
        ("pipeline", () => ReadScores(model.Transform(test), n)),
        // The engine alone on the same batches of 256, to see what the cursor adds.
        ("engine_b256", () => EngineOnly(network, testX, 256, n)),
        // (b) ONNX Runtime directly on the exported batch graph.
        ("ort_b1000", () => RunOrt(session, runOptions, ortBatches[1000])),
        ("ort_b10000", () => RunOrt(session, runOptions, ortBatches[10000])),
        // (c) The loaded model through Transform + cursor.
        ("loaded_pipeline", () => ReadScores(loaded.Transform(test2), n)),
    });
    foreach (var b in ortBatches.Values.SelectMany(v => v)) b.Dispose();

    // (d) PredictionEngine latency, one image per call.
    using (var fitted = ml.Model.CreatePredictionEngine<ImageInput, ImagePrediction>(model))
        Latency($"{key}.predict_fitted", fitted, inputs, calls);
    using (var reloaded = ml2.Model.CreatePredictionEngine<ImageInput, ImagePrediction>(loaded))
        Latency($"{key}.predict_loaded", reloaded, inputs, calls);
    // (e) ONNX Runtime alone on one image (no ML.NET around it), with its default threads and with one intra-op thread:
    // how much of the loaded PredictionEngine's time is ORT's own, and how much its thread pool buys at batch 1.
    OrtLatency($"{key}.ort_b1", session, testX, calls);
    using (var oneThread = new SessionOptions { IntraOpNumThreads = 1 })
    using (var session1 = new InferenceSession(onnx.ToArray(), oneThread))
        OrtLatency($"{key}.ort_b1_1thread", session1, testX, calls);
    if (profile) OrtNodeTimes($"{key}.profile.ort_b1_1thread_us", onnx.ToArray(), testX, calls);
}
Report("inference.peak_working_set_mb", Process.GetCurrentProcess().PeakWorkingSet64 / (1024.0 * 1024.0));
Console.WriteLine($"load average at the end {LoadAverage()}");
return 0;

/// <summary>
/// --profile: the engine alone at several batch sizes (also on a one-thread copy of the network), the pipeline's
/// scorer with several chunk sizes (256: no chunks, the whole batch with parallel layers), milliseconds per layer for
/// a batch of 256 (each layer timed on its own), and GC counts.
/// </summary>
static void Profile(string key, MLNet.ConvNet.Layers.Network network, string net, float[] x, int runs)
{
    int n = x.Length / 784;
    var single = MLNet.ConvNet.Layers.Presets.ByName(net, 10, new MLNet.ConvNet.Backends.Cpu.CpuBackend(maxThreads: 1)).Build(new Shape(1, 28, 28));
    MLNet.ConvNet.Training.Checkpoint.Capture(network).Restore(single);
    var methods = new List<(string, Action)>
    {
        ("profile.engine_b1", () => EngineOnly(network, x, 1, n)),
    };
    foreach (int batch in new[] { 1, 4 }) methods.Add(($"profile.engine_b{batch}_1thread", () => EngineOnly(single, x, batch, n)));
    foreach (int batch in new[] { 64, 256 }) methods.Add(($"profile.engine_b{batch}", () => EngineOnly(network, x, batch, n)));
    // The scorer behind the pipeline with other chunk sizes (rows per forward pass on a one-thread copy; 256: none).
    var batches = Enumerable.Range(0, (n + 255) / 256).Select(b => x[(b * 256 * 784)..(Math.Min(n, (b + 1) * 256) * 784)]).ToArray();
    foreach (int chunk in new[] { 1, 2, 4, 5, 8, 16, 256 })
    {
        var scorer = new NetworkScorer(network, chunkRows: chunk);
        var p = new float[256 * 10];
        var predicted = new int[256];
        methods.Add(($"profile.scorer_chunk{chunk}", () =>
        {
            foreach (var batch in batches) scorer.Score(batch, batch.Length / 784, p, predicted);
        }));
    }
    Throughput(key, n, runs, methods.ToArray());
    LayerTimes($"{key}.profile.b256", network, x, 256, runs, repeats: 1);
    // What a scorer's replica runs: batch norm folded, one thread, DefaultChunkRows images per pass (microseconds per image).
    var folded = MLNet.ConvNet.Layers.BatchNormFolding.Fold(single);
    folded.ReuseBuffers = true;
    LayerTimes($"{key}.profile.folded_1thread_b{NetworkScorer.DefaultChunkRows}_per_image_us", folded, x, NetworkScorer.DefaultChunkRows, runs, repeats: 200,
        scale: 1000.0 / NetworkScorer.DefaultChunkRows);
    // What a PredictionEngine call runs: the same replica on one image (microseconds).
    LayerTimes($"{key}.profile.folded_1thread_b1_us", folded, x, 1, runs, repeats: 1000, scale: 1000.0);
    var folded2 = MLNet.ConvNet.Layers.BatchNormFolding.Fold(network);
    folded2.ReuseBuffers = true;
    LayerTimes($"{key}.profile.folded_b1_us", folded2, x, 1, runs, repeats: 1000, scale: 1000.0);
    Console.WriteLine($"GC collections so far: gen0 {GC.CollectionCount(0)}, gen1 {GC.CollectionCount(1)}, gen2 {GC.CollectionCount(2)}; " +
                      $"allocated {GC.GetTotalAllocatedBytes() / 1048576.0:N0} MB");
}

/// <summary>
/// Milliseconds (times <paramref name="scale"/>) per forward pass of each layer, on its own, for a batch of
/// <paramref name="batch"/> images: the median over --runs rounds of <paramref name="repeats"/> passes each.
/// </summary>
static void LayerTimes(string prefix, MLNet.ConvNet.Layers.Network network, float[] x, int batch, int runs, int repeats, double scale = 1)
{
    var input = Tensor.FromHost(x.AsSpan(0, batch * 784), new Shape(batch, 1, 28, 28), network.Backend);
    var layers = network.Layers;
    for (int i = 0; i < layers.Count; i++)
    {
        // Network.Forward's steps in inference: a ReLU and the max pool after it run as one call, reported under both names.
        var (current, first, layer) = (input, i, layers[i]);
        int span = 1; // how many layers the step ran, as ForwardAt reports it
        Func<Tensor> run = () => { var h = current; span = network.ForwardAt(first, ref h, training: false); return h; };
        input = run();
        var ms = new double[runs];
        for (int r = 0; r < runs; r++)
        {
            long t0 = Stopwatch.GetTimestamp();
            for (int k = 0; k < repeats; k++) run();
            ms[r] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds / repeats * scale;
        }
        i += span - 1;
        Report($"{prefix}.{(span > 1 ? layer.Name + "+" + layers[i].Name : layer.Name)}{(scale == 1 ? "_ms" : "")}", MedianOf(ms));
    }
}

/// <summary>Warms each method up once, times --runs rounds of all of them; reports images per second from each median.</summary>
static void Throughput(string key, int images, int runs, (string Name, Action Run)[] methods)
{
    foreach (var m in methods) m.Run();
    var seconds = methods.Select(_ => new double[runs]).ToArray();
    for (int r = 0; r < runs; r++)
        for (int i = 0; i < methods.Length; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            methods[i].Run();
            seconds[i][r] = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        }
    for (int i = 0; i < methods.Length; i++) Report($"{key}.{methods[i].Name}_img_per_s", images / MedianOf(seconds[i]));
}

static double MedianOf(double[] values)
{
    var v = values.Order().ToArray();
    return v.Length % 2 == 1 ? v[v.Length / 2] : (v[v.Length / 2 - 1] + v[v.Length / 2]) / 2;
}

/// <summary>Network.Forward + softmax on <paramref name="rows"/> images from <paramref name="first"/> in batches of <paramref name="batch"/>.</summary>
static void EngineOnly(MLNet.ConvNet.Layers.Network network, float[] x, int batch, int rows, int first = 0)
{
    for (int start = 0; start < rows; start += batch)
    {
        int count = Math.Min(batch, rows - start);
        var t = Tensor.FromHost(x.AsSpan((first + start) * 784, count * 784), new Shape(count, 1, 28, 28), network.Backend);
        MLNet.ConvNet.Ops.Softmax.Forward(network.Forward(t, training: false)).ToHost();
    }
}

static void RunOrt(InferenceSession session, RunOptions options, OrtValue[] batches)
{
    foreach (var input in batches)
    {
        using var outputs = session.Run(options, ["Features"], [input], ["Score"]);
        _ = outputs[0].GetTensorDataAsSpan<float>()[0];
    }
}

static void Report(string key, double value) => Console.WriteLine($"RESULT {key} = {value:F1}");

/// <summary>Reads Score of every row through a cursor (what Evaluate or GetColumn do).</summary>
static void ReadScores(IDataView scored, int expected)
{
    var column = scored.Schema["Score"];
    using var cursor = scored.GetRowCursor([column]);
    var get = cursor.GetGetter<VBuffer<float>>(column);
    VBuffer<float> v = default;
    int rows = 0;
    while (cursor.MoveNext()) { get(ref v); rows++; }
    if (rows != expected) throw new InvalidOperationException($"{rows} rows scored, expected {expected}.");
}

/// <summary>Reads Features of every row of the unscored view.</summary>
static void ReadFeatures(IDataView data, int expected)
{
    var column = data.Schema["Features"];
    using var cursor = data.GetRowCursor([column]);
    var get = cursor.GetGetter<VBuffer<float>>(column);
    VBuffer<float> v = default;
    int rows = 0;
    while (cursor.MoveNext()) { get(ref v); rows++; }
    if (rows != expected) throw new InvalidOperationException($"{rows} rows read, expected {expected}.");
}

/// <summary>Median and 99th-percentile microseconds of one Predict call, after 2 s of warm-up calls (at least 200).</summary>
static void Latency(string key, PredictionEngine<ImageInput, ImagePrediction> engine, ImageInput[] images, int calls)
{
    // At least 200 calls and 2 seconds: the JIT's tiering recompiles hot methods about 100 ms after their 30th call
    // and in the background, so 200 calls of ~100 us each would time code that is still being optimised.
    var warm = Stopwatch.StartNew();
    for (int i = 0; i < 200 || warm.Elapsed.TotalSeconds < 2; i++) engine.Predict(images[i % images.Length]);
    var us = new double[calls];
    for (int i = 0; i < calls; i++)
    {
        long t0 = Stopwatch.GetTimestamp();
        engine.Predict(images[i % images.Length]);
        us[i] = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
    }
    Array.Sort(us);
    Report($"{key}_median_us", us[calls / 2]);
    Report($"{key}_p99_us", us[(int)Math.Ceiling(0.99 * calls) - 1]);
}

/// <summary>Median microseconds of one InferenceSession.Run on one image, after 2 s of warm-up calls (at least 200).</summary>
static void OrtLatency(string key, InferenceSession session, float[] x, int calls)
{
    int images = x.Length / 784;
    var values = Enumerable.Range(0, Math.Min(images, 256))
        .Select(i => OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, x.AsMemory(i * 784, 784), [1, 1, 28, 28])).ToArray();
    using var options = new RunOptions();
    var warm = Stopwatch.StartNew();
    for (int i = 0; i < 200 || warm.Elapsed.TotalSeconds < 2; i++) RunOrt(session, options, [values[i % values.Length]]);
    var us = new double[calls];
    for (int i = 0; i < calls; i++)
    {
        long t0 = Stopwatch.GetTimestamp();
        RunOrt(session, options, [values[i % values.Length]]);
        us[i] = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
    }
    foreach (var v in values) v.Dispose();
    Array.Sort(us);
    Report($"{key}_median_us", us[calls / 2]);
}

/// <summary>
/// --profile: ONNX Runtime's own profiler on a one-thread session scoring one image per call: the median microseconds of
/// each graph node over <paramref name="calls"/> calls (after warm-up), to set beside our per-layer times at batch 1.
/// </summary>
static void OrtNodeTimes(string prefix, byte[] model, float[] x, int calls)
{
    string profilePrefix = Path.Combine(Path.GetTempPath(), $"ort-profile-{Environment.ProcessId}");
    var durations = new Dictionary<string, List<double>>();
    using (var options = new SessionOptions { IntraOpNumThreads = 1, EnableProfiling = true, ProfileOutputPathPrefix = profilePrefix })
    {
        using var session = new InferenceSession(model, options);
        using var input = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, x.AsMemory(0, 784), [1, 1, 28, 28]);
        using var runOptions = new RunOptions();
        for (int i = 0; i < 200 + calls; i++) RunOrt(session, runOptions, [input]);
        string file = session.EndProfiling();
        using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(file));
        File.Delete(file);
        foreach (var e in json.RootElement.EnumerateArray())
        {
            if (!e.TryGetProperty("cat", out var cat) || cat.GetString() != "Node") continue;
            string name = e.GetProperty("name").GetString() ?? "";
            if (!name.EndsWith("_kernel_time")) continue;
            string op = e.TryGetProperty("args", out var a) && a.TryGetProperty("op_name", out var o) ? o.GetString() ?? "" : "";
            string node = $"{name[..^"_kernel_time".Length]}({op})";
            (durations.TryGetValue(node, out var list) ? list : durations[node] = []).Add(e.GetProperty("dur").GetDouble());
        }
    }
    double total = 0;
    foreach (var (node, list) in durations)
    {
        var tail = list.Skip(200).ToArray(); // the warm-up calls are in the profile too
        double median = MedianOf(tail.Length > 0 ? tail : list.ToArray());
        total += median;
        Report($"{prefix}.{node}", median);
    }
    Report($"{prefix}.sum_of_nodes", total);
}

static string LoadAverage() => File.Exists("/proc/loadavg") ? string.Join(" ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "n/a";

sealed class ClassName { public string Label { get; set; } = ""; }

sealed class ImageRow
{
    [VectorType(1, 28, 28)]
    public float[] Features { get; set; } = [];
    public string Label { get; set; } = "";

    public static IEnumerable<ImageRow> From(InMemoryDataset d) => Enumerable.Range(0, d.Count).Select(i => new ImageRow
    {
        Features = d.Features.Slice(i * 784, 784).ToArray(),
        Label = FashionMnist.ClassNames[d.Labels[i]],
    });
}

sealed class ImageInput
{
    [VectorType(1, 28, 28)]
    public float[] Features { get; set; } = [];
}

sealed class ImagePrediction
{
    public float[] Score { get; set; } = [];
    public uint PredictedLabel { get; set; }
}
