using MLNet.ConvNet.Data;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace MLNet.ConvNet.Trainers;

/// <summary>
/// Reads the label and feature columns of an IDataView once, checking every row, into Core's <see cref="SampleStore"/>:
/// an <see cref="InMemoryDataset"/> or a <see cref="DiskSampleCache"/> (option DataCache).
/// </summary>
/// <remarks>
/// Why read once: training visits the rows in a new seeded random order every epoch, and an IDataView cursor
/// only reads in order (a shuffling cursor's order is not ours to seed and replay on resume), and re-running the
/// upstream pipeline every epoch would decode images again; ImageAnalytics' in-memory images cannot even be read
/// twice. Rows stream through one row's buffer into the store: in memory they cost <c>rows x features x 4</c> bytes
/// (Fashion-MNIST's 60,000 x 784: 188 MB; when the view does not know its row count, the same again for a moment
/// while the chunks read are joined into one array); in a disk cache, only the labels stay in memory.
/// </remarks>
internal static class DataViewReader
{

    /// <summary>The feature column, checked to be a known-size vector of Single; throws naming it otherwise.</summary>
    public static DataViewSchema.Column FeatureColumn(DataViewSchema schema, string name, string role = "Feature")
    {
        var column = schema.GetColumnOrNull(name)
            ?? throw new ArgumentOutOfRangeException("FeatureColumnName", name, $"{role} column '{name}' is not in the data; its columns are: {string.Join(", ", schema.Where(c => !c.IsHidden).Select(c => c.Name))}.");
        if (column.Type is not VectorDataViewType { ItemType: var item, IsKnownSize: true } || item != NumberDataViewType.Single)
            throw new ArgumentOutOfRangeException("FeatureColumnName", column.Type.ToString(),
                $"{role} column '{name}' has type {column.Type}; expected a known-size vector of Single (Vector<Single, n> or Vector<Single, C, H, W> from ExtractPixels).");
        return column;
    }

    /// <summary>The label column, checked to be a key or a number; throws naming it otherwise.</summary>
    public static DataViewSchema.Column LabelColumn(DataViewSchema schema, string name)
    {
        var column = schema.GetColumnOrNull(name)
            ?? throw new ArgumentOutOfRangeException("LabelColumnName", name, $"Label column '{name}' is not in the data; its columns are: {string.Join(", ", schema.Where(c => !c.IsHidden).Select(c => c.Name))}.");
        LabelClasses.CheckLabelType(column);
        return column;
    }

    /// <summary>Where and how <see cref="Read"/> keeps the rows (options DataCache, DataCacheDirectory, KeepDataCache).</summary>
    public sealed record Storage(SampleStorage Kind, long MemoryLimitBytes, string Directory, bool KeepFile);

    /// <summary>
    /// Reads every row of <paramref name="data"/> into a dataset kept as <paramref name="storage"/> says (a
    /// <see cref="DiskSampleCache"/> is the caller's to dispose; <c>Reason</c> says where the rows went and why).
    /// Labels become class indices: with <paramref name="classes"/> null they
    /// are found here (the training set), else they must be classes of <paramref name="classes"/> (validation).
    /// Throws naming the column and the row (0-based) for a missing or NaN label, a label that is not a class index,
    /// a NaN or infinite feature, or no rows at all.
    /// </summary>
    public static (IDataset Data, int[] Labels, LabelClasses Classes, string Reason) Read(IDataView data, string labelName, string featureName,
        Shape sampleShape, LabelClasses? classes, string what, Storage storage, CancellationToken cancellation)
    {
        var label = LabelColumn(data.Schema, labelName);
        var feature = FeatureColumn(data.Schema, featureName);
        if (classes is not null && !SameLabelType(label.Type, classes.LabelType))
            throw new ArgumentOutOfRangeException("LabelColumnName", label.Type.ToString(),
                $"Label column '{labelName}' of the {what} data has type {label.Type} but the training data's is {classes.LabelType}.");
        int size = ((VectorDataViewType)feature.Type).Size;
        if (size != sampleShape.Length)
            throw new ArgumentException($"Feature column '{featureName}' of the {what} data holds {size} values per row but the network takes samples {sampleShape} ({sampleShape.Length} values).", "FeatureColumnName");

        using var store = new SampleStore(sampleShape, storage.Kind, storage.MemoryLimitBytes, storage.Directory, what,
            data.GetRowCount() is long rows && rows > 0 ? rows : null, storage.KeepFile);
        var row = new float[size];
        var labels = new List<int>();
        bool isKey = label.Type is KeyDataViewType;
        ulong keyCount = (label.Type as KeyDataViewType)?.Count ?? 0;
        using (var cursor = data.GetRowCursor([label, feature]))
        {
            var readKey = isKey ? LabelClasses.KeyReader(cursor, label) : null;
            var readNumber = isKey ? null : LabelClasses.NumberReader(cursor, label);
            var getFeatures = cursor.GetGetter<VBuffer<float>>(feature);
            VBuffer<float> buffer = default;
            long index = 0;
            while (cursor.MoveNext())
            {
                if ((index & 1023) == 0) cancellation.ThrowIfCancellationRequested();
                if (isKey)
                {
                    ulong key = readKey!();
                    if (key == 0 || key > keyCount)
                        throw new InvalidDataException($"Label column '{labelName}' is missing (key value {key}, outside 1..{keyCount}) in row {index} of the {what} data; filter such rows out (mlContext.Data.FilterRowsByMissingValues).");
                    labels.Add((int)(key - 1));
                }
                else
                {
                    double v = readNumber!();
                    if (double.IsNaN(v))
                        throw new InvalidDataException($"Label column '{labelName}' is NaN in row {index} of the {what} data; filter such rows out (mlContext.Data.FilterRowsByMissingValues).");
                    if (v < 0 || v != Math.Floor(v) || v >= LabelClasses.MaxClasses)
                        throw new InvalidDataException($"Label column '{labelName}' holds {v} in row {index} of the {what} data; a numeric label must be a class index, a whole number in [0, {LabelClasses.MaxClasses}). Map other labels to keys with MapValueToKey.");
                    labels.Add((int)v);
                }
                getFeatures(ref buffer);
                buffer.CopyTo(row);
                int bad = FirstNonFinite(row);
                if (bad >= 0)
                    throw new InvalidDataException($"Feature column '{featureName}' holds {row[bad]} at slot {bad} of row {index} of the {what} data; features must be finite (replace missing values first, e.g. mlContext.Transforms.ReplaceMissingValues).");
                store.Add(row, labels[^1]);
                index++;
            }
        }
        int n = labels.Count;
        if (n == 0) throw new ArgumentException($"The {what} data has no rows.", what == "training" ? "trainData" : "ValidationSet");

        if (classes is null)
            classes = isKey ? LabelClasses.FromKey(label) : LabelClasses.FromNumbers(label, labels.Max());
        else
            for (int i = 0; i < n; i++)
                if (labels[i] >= classes.Count)
                    throw new InvalidDataException($"Label column '{labelName}' holds {labels[i]} in row {i} of the {what} data, but the training data has classes 0..{classes.Count - 1} only.");

        var dataset = store.Build(classes.Count);
        return (dataset, labels.ToArray(), classes, store.Reason);
    }

    private static int FirstNonFinite(ReadOnlySpan<float> values)
    {
        for (int i = 0; i < values.Length; i++) if (!float.IsFinite(values[i])) return i;
        return -1;
    }

    private static bool SameLabelType(DataViewType a, DataViewType b) =>
        a is KeyDataViewType ka && b is KeyDataViewType kb ? ka.Count == kb.Count : a.Equals(b);

    /// <summary>
    /// Splits <paramref name="data"/> (whose labels are <paramref name="labels"/>) into training and validation parts, views
    /// that copy nothing: a seeded random <paramref name="fraction"/> of the rows (at least one, leaving at least one)
    /// becomes validation; both keep the original row order. Also returns the training part's labels.
    /// </summary>
    public static (IDataset Train, int[] TrainLabels, IDataset Validation) Split(IDataset data, int[] labels, double fraction, ulong seed)
    {
        int n = data.Count;
        int held = (int)Math.Round(n * fraction);
        if (n < 2 || held < 1 || held >= n)
            throw new ArgumentOutOfRangeException("ValidationFraction", fraction, $"ConvNetTrainer option ValidationFraction = {fraction} of {n} rows leaves {held} validation and {n - held} training rows; both need at least one.");
        var order = new Rng(seed).Permutation(n);
        var isValidation = new bool[n];
        for (int i = 0; i < held; i++) isValidation[order[i]] = true;
        var train = Enumerable.Range(0, n).Where(i => !isValidation[i]).ToArray();
        var validation = Enumerable.Range(0, n).Where(i => isValidation[i]).ToArray();
        return (new SubsetDataset(data, train), train.Select(i => labels[i]).ToArray(), new SubsetDataset(data, validation));
    }
}
