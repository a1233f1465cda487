using MLNet.ConvNet.Data;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace MLNet.ConvNet.Trainers;

/// <summary>
/// Reads the label and feature columns of an IDataView once into an <see cref="InMemoryDataset"/>, checking every row.
/// </summary>
/// <remarks>
/// Why in memory: training visits the rows in a new seeded random order every epoch, and an IDataView cursor
/// only reads in order (a shuffling cursor's order is not ours to seed and replay on resume), and re-running the
/// upstream pipeline every epoch would decode images again; ImageAnalytics' in-memory images cannot even be read
/// twice. The cost is <c>rows x features x 4</c> bytes (Fashion-MNIST's 60,000 x 784: 188 MB), plus the same again
/// for a moment while the chunks read are joined into one array.
/// </remarks>
internal static class DataViewReader
{
    private const int ChunkRows = 4096;

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

    /// <summary>
    /// Reads every row of <paramref name="data"/>. Labels become class indices: with <paramref name="classes"/> null they
    /// are found here (the training set), else they must be classes of <paramref name="classes"/> (validation).
    /// Throws naming the column and the row (0-based) for a missing or NaN label, a label that is not a class index,
    /// a NaN or infinite feature, or no rows at all.
    /// </summary>
    public static (InMemoryDataset Data, LabelClasses Classes) Read(IDataView data, string labelName, string featureName,
        Shape sampleShape, LabelClasses? classes, string what, CancellationToken cancellation)
    {
        var label = LabelColumn(data.Schema, labelName);
        var feature = FeatureColumn(data.Schema, featureName);
        if (classes is not null && !SameLabelType(label.Type, classes.LabelType))
            throw new ArgumentOutOfRangeException("LabelColumnName", label.Type.ToString(),
                $"Label column '{labelName}' of the {what} data has type {label.Type} but the training data's is {classes.LabelType}.");
        int size = ((VectorDataViewType)feature.Type).Size;
        if (size != sampleShape.Length)
            throw new ArgumentException($"Feature column '{featureName}' of the {what} data holds {size} values per row but the network takes samples {sampleShape} ({sampleShape.Length} values).", "FeatureColumnName");

        var chunks = new List<float[]>();
        var labels = new List<int>();
        var numbers = new List<double>();
        bool isKey = label.Type is KeyDataViewType;
        ulong keyCount = (label.Type as KeyDataViewType)?.Count ?? 0;
        using (var cursor = data.GetRowCursor([label, feature]))
        {
            var readKey = isKey ? LabelClasses.KeyReader(cursor, label) : null;
            var readNumber = isKey ? null : LabelClasses.NumberReader(cursor, label);
            var getFeatures = cursor.GetGetter<VBuffer<float>>(feature);
            VBuffer<float> buffer = default;
            float[] chunk = [];
            long row = 0;
            while (cursor.MoveNext())
            {
                if ((row & 1023) == 0) cancellation.ThrowIfCancellationRequested();
                if (isKey)
                {
                    ulong key = readKey!();
                    if (key == 0 || key > keyCount)
                        throw new InvalidDataException($"Label column '{labelName}' is missing (key value {key}, outside 1..{keyCount}) in row {row} of the {what} data; filter such rows out (mlContext.Data.FilterRowsByMissingValues).");
                    labels.Add((int)(key - 1));
                }
                else
                {
                    double v = readNumber!();
                    if (double.IsNaN(v))
                        throw new InvalidDataException($"Label column '{labelName}' is NaN in row {row} of the {what} data; filter such rows out (mlContext.Data.FilterRowsByMissingValues).");
                    if (v < 0 || v != Math.Floor(v) || v >= LabelClasses.MaxClasses)
                        throw new InvalidDataException($"Label column '{labelName}' holds {v} in row {row} of the {what} data; a numeric label must be a class index, a whole number in [0, {LabelClasses.MaxClasses}). Map other labels to keys with MapValueToKey.");
                    numbers.Add(v);
                    labels.Add((int)v);
                }
                getFeatures(ref buffer);
                int slot = (int)(row % ChunkRows);
                if (slot == 0) chunks.Add(chunk = new float[ChunkRows * size]);
                var dst = chunk.AsSpan(slot * size, size);
                buffer.CopyTo(dst);
                int bad = FirstNonFinite(dst);
                if (bad >= 0)
                    throw new InvalidDataException($"Feature column '{featureName}' holds {dst[bad]} at slot {bad} of row {row} of the {what} data; features must be finite (replace missing values first, e.g. mlContext.Transforms.ReplaceMissingValues).");
                row++;
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

        var features = new float[(long)n * size];
        for (int c = 0; c < chunks.Count; c++)
        {
            int rows = Math.Min(ChunkRows, n - c * ChunkRows);
            chunks[c].AsSpan(0, rows * size).CopyTo(features.AsSpan((int)((long)c * ChunkRows * size)));
        }
        return (new InMemoryDataset(features, labels.ToArray(), sampleShape, classes.Count), classes);
    }

    private static int FirstNonFinite(ReadOnlySpan<float> values)
    {
        for (int i = 0; i < values.Length; i++) if (!float.IsFinite(values[i])) return i;
        return -1;
    }

    private static bool SameLabelType(DataViewType a, DataViewType b) =>
        a is KeyDataViewType ka && b is KeyDataViewType kb ? ka.Count == kb.Count : a.Equals(b);

    /// <summary>
    /// Splits <paramref name="data"/> into training and validation parts: a seeded random <paramref name="fraction"/> of
    /// the rows (at least one, leaving at least one) becomes validation; both keep the original row order.
    /// </summary>
    public static (InMemoryDataset Train, InMemoryDataset Validation) Split(InMemoryDataset data, double fraction, ulong seed)
    {
        int n = data.Count;
        int held = (int)Math.Round(n * fraction);
        if (n < 2 || held < 1 || held >= n)
            throw new ArgumentOutOfRangeException("ValidationFraction", fraction, $"ConvNetTrainer option ValidationFraction = {fraction} of {n} rows leaves {held} validation and {n - held} training rows; both need at least one.");
        var order = new Rng(seed).Permutation(n);
        var isValidation = new bool[n];
        for (int i = 0; i < held; i++) isValidation[order[i]] = true;
        return (Subset(data, isValidation, false), Subset(data, isValidation, true));
    }

    private static InMemoryDataset Subset(InMemoryDataset data, bool[] mask, bool keep)
    {
        int len = data.SampleShape.Length, count = mask.Count(m => m == keep), j = 0;
        var features = new float[(long)count * len];
        var labels = new int[count];
        for (int i = 0; i < mask.Length; i++)
        {
            if (mask[i] != keep) continue;
            data.Features.Slice(i * len, len).CopyTo(features.AsSpan(j * len, len));
            labels[j++] = data.Labels[i];
        }
        return new InMemoryDataset(features, labels, data.SampleShape, data.ClassCount);
    }
}
