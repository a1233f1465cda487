// Data larger than memory: makes a synthetic image dataset of --gigabytes of 8-bit pixels on disk, streams it
// through an ML.NET IDataView (one row at a time, as floats 0..255, as ExtractPixels gives them unscaled) into
// the ConvNet trainer with a disk cache, trains --epochs epoch(s), and reports the process's peak working set
// against --bound-mb. The dataset and the cache are deleted at the end (docs/scale.md has the figures).
//
//   dotnet run -c Release --project benchmarks/LargeData -- --gigabytes 2 --image 3x64x64 --bound-mb 500
//
// Options: --gigabytes G (2)  --image CxHxW (3x64x64)  --classes K (10)  --epochs N (1)  --batch B (64)
//          --cache auto|memory|disk (disk)  --dir DIR (the temporary folder)  --bound-mb M (500)
// The last line is "RESULT peak_working_set_mb=... bound_mb=... within_bound=true|false".
using System.Diagnostics;
using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ConvNet.Data;
using MLNet.ConvNet.Layers;
using PoolingOptions = MLNet.ConvNet.Ops.PoolingOptions;
using PoolingMode = MLNet.ConvNet.Ops.PoolingMode;
using MLNet.ConvNet.Trainers;

var opt = CommandLineArgs.Parse(args);
double gigabytes = opt.Double("gigabytes", 2);
int[] dims = opt.Str("image", "3x64x64").Split('x').Select(int.Parse).ToArray();
int classes = opt.Int("classes", 10), boundMb = opt.Int("bound-mb", 500);
int len = dims.Aggregate(1, (a, d) => a * d);
int count = (int)Math.Ceiling(gigabytes * 1e9 / len);
string dir = Path.Combine(opt.Str("dir", Path.GetTempPath()), $"convnet-largedata-{Environment.ProcessId}");
Directory.CreateDirectory(dir);
string pixels = Path.Combine(dir, "pixels.u8");
var clock = Stopwatch.StartNew();
void Say(string s) => Console.WriteLine($"[{clock.Elapsed.TotalSeconds,7:F1} s, peak {Peak()} MB] {s}");
static long Peak() { using var p = Process.GetCurrentProcess(); p.Refresh(); return p.PeakWorkingSet64 / 1_000_000; }

try
{
    // 1. The dataset on disk: image i of class i % K is noise in 0..127 plus 100 on a class-dependent horizontal band of
    //    its first channel (learnable after pooling), written in blocks; its label is in a second file.
    var labels = new byte[count];
    using (var file = new FileStream(pixels, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
    {
        var image = new byte[len];
        var noise = new Random(1);
        int bandRows = Math.Max(1, dims[1] / classes), width = dims[^1];
        for (int i = 0; i < count; i++)
        {
            int k = labels[i] = (byte)(i % classes);
            noise.NextBytes(image);
            for (int j = 0; j < len; j++) image[j] >>= 1;
            for (int r = k * bandRows; r < Math.Min(dims[1], (k + 1) * bandRows); r++)
                for (int c = 0; c < width; c++) image[r * width + c] += 100;
            file.Write(image);
        }
    }
    Say($"wrote {count:N0} images of {string.Join("x", dims)} bytes: {count * (long)len / 1e9:F2} GB of pixels in {pixels}");

    // 2. The rows as an IDataView that reads the file as it goes (nothing held beyond the current row).
    IEnumerable<Row> Rows()
    {
        using var file = new FileStream(pixels, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        var image = new byte[len];
        for (int i = 0; i < count; i++)
        {
            file.ReadExactly(image);
            var features = new float[len];
            for (int j = 0; j < len; j++) features[j] = image[j];
            yield return new Row { Features = features, Label = labels[i] };
        }
    }
    var ml = new MLContext(0);
    var schema = SchemaDefinition.Create(typeof(Row));
    schema["Features"].ColumnType = new VectorDataViewType(NumberDataViewType.Single, dims);
    var data = ml.Data.LoadFromEnumerable(Rows(), schema);

    // 3. Train: a small network that averages 4x4 blocks first, so the run measures the data path more than the maths.
    var options = new ConvNetTrainer.Options
    {
        NetworkFactory = (k, backend) => new Network(
        [
            new Pool(new PoolingOptions { Window = 4, Mode = PoolingMode.AverageIncludingPadding }),
            new Conv(8, 3), new BatchNorm(), Activation.Relu(), new Pool(), new Flatten(), new Dense(k),
        ], backend),
        Epochs = opt.Int("epochs", 1), BatchSize = opt.Int("batch", 64), Seed = 1,
        DataCache = Enum.Parse<SampleStorage>(opt.Str("cache", "disk"), ignoreCase: true), DataCacheDirectory = dir,
        Log = Say, ProgressInterval = 500,
        OnBatch = p => Say($"epoch {p.Epoch} batch {p.Batch}/{p.BatchCount}: loss {p.Loss:F3}, accuracy {p.Accuracy:F3}"),
        OnEpoch = m => Say($"epoch {m.Epoch}: loss {m.TrainLoss:F4}, accuracy {m.TrainAccuracy:F4}, {m.Seconds:F1} s ({count / m.Seconds:F0} images/s)"),
    };
    var model = ml.MulticlassClassification.Trainers.ConvNet(options).Fit(data);
    Say($"fit done; files left in the cache folder: {Directory.GetFiles(dir).Length - 1} (besides the dataset)");
}
finally
{
    Directory.Delete(dir, recursive: true);
}
long peak = Peak();
Console.WriteLine($"RESULT peak_working_set_mb={peak} bound_mb={boundMb} within_bound={(peak <= boundMb).ToString().ToLowerInvariant()} images={count} pixels_gb={count * (long)len / 1e9:F2}");
return peak <= boundMb ? 0 : 1;

sealed class Row
{
    public float[] Features { get; set; } = [];
    public float Label { get; set; }
}
