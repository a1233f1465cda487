using Microsoft.ML;
using Microsoft.ML.Data;

// Usage: MLNet.ConvNet.ModelConsumer <model.zip> <input.bin> <output.bin> <input column> <output column>
// input.bin: int32 rows, int32 rank, rank x int32 dims, then rows x prod(dims) float32 (little-endian).
// output.bin: int32 rows, int32 rank, rank x int32 dims of the output column, then the values.
// Prints the assemblies loaded, so the caller can check none of MLNet.ConvNet's was needed.
if (args.Length != 5)
{
    Console.Error.WriteLine("usage: MLNet.ConvNet.ModelConsumer <model.zip> <input.bin> <output.bin> <input column> <output column>");
    return 2;
}
var (modelPath, inputPath, outputPath, inputColumn, outputColumn) = (args[0], args[1], args[2], args[3], args[4]);

var (rows, dims) = Read(inputPath);
var ml = new MLContext(seed: 1);
var model = ml.Model.Load(modelPath, out _);
var schema = new DataViewSchema.Builder();
schema.AddColumn(inputColumn, new VectorDataViewType(NumberDataViewType.Single, dims));
var data = new RowsView(schema.ToSchema(), rows);
var output = model.Transform(data);
var column = output.Schema[outputColumn];
var outDims = ((VectorDataViewType)column.Type).Dimensions.ToArray();
var results = new List<float[]>();
using (var cursor = output.GetRowCursor([column]))
{
    var getter = cursor.GetGetter<VBuffer<float>>(column);
    VBuffer<float> value = default;
    while (cursor.MoveNext())
    {
        getter(ref value);
        results.Add(value.DenseValues().ToArray());
    }
}
Write(outputPath, results, outDims);
Console.WriteLine($"model: {model.GetType().FullName}");
foreach (var a in AppDomain.CurrentDomain.GetAssemblies().Select(a => a.GetName().Name).Order())
    Console.WriteLine($"assembly: {a}");
return 0;

static (List<float[]> rows, int[] dims) Read(string path)
{
    using var r = new BinaryReader(File.OpenRead(path));
    int n = r.ReadInt32(), rank = r.ReadInt32();
    var dims = new int[rank];
    for (int i = 0; i < rank; i++) dims[i] = r.ReadInt32();
    int size = dims.Aggregate(1, (a, b) => a * b);
    var rows = new List<float[]>(n);
    for (int i = 0; i < n; i++)
    {
        var row = new float[size];
        for (int j = 0; j < size; j++) row[j] = r.ReadSingle();
        rows.Add(row);
    }
    return (rows, dims);
}

static void Write(string path, List<float[]> rows, int[] dims)
{
    using var w = new BinaryWriter(File.Create(path));
    w.Write(rows.Count); w.Write(dims.Length);
    foreach (int d in dims) w.Write(d);
    foreach (var row in rows) foreach (float v in row) w.Write(v);
}

/// <summary>An in-memory view over float rows with one vector column (no typed class, so any dimensions work).</summary>
sealed class RowsView(DataViewSchema schema, List<float[]> rows) : IDataView
{
    public List<float[]> Rows { get; } = rows;
    public DataViewSchema Schema { get; } = schema;
    public bool CanShuffle => false;
    public long? GetRowCount() => Rows.Count;
    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null) => new Cursor(this);
    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) => [new Cursor(this)];

    private sealed class Cursor(RowsView view) : DataViewRowCursor
    {
        private int _index = -1;
        public override DataViewSchema Schema => view.Schema;
        public override long Position => _index;
        public override long Batch => 0;
        public override bool MoveNext() => ++_index < view.Rows.Count;
        public override bool IsColumnActive(DataViewSchema.Column column) => true;
        public override ValueGetter<DataViewRowId> GetIdGetter() => (ref DataViewRowId id) => id = new DataViewRowId((ulong)_index, 0);
        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            ValueGetter<VBuffer<float>> getter = (ref VBuffer<float> dst) => dst = new VBuffer<float>(view.Rows[_index].Length, (float[])view.Rows[_index].Clone());
            return (ValueGetter<TValue>)(Delegate)getter;
        }
    }
}
