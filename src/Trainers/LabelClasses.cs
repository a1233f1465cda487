using Microsoft.ML;
using Microsoft.ML.Data;

namespace MLNet.ConvNet.Trainers;

/// <summary>
/// The classes a network predicts, as read from the training label column: how many, their values and their
/// names (the values as text: Score's SlotNames and PredictedLabel's KeyValues).
/// </summary>
/// <remarks>
/// A key label of K values gives K classes, class i being key i + 1; the values are the key's KeyValues annotation
/// when it has one, else the class indices as text ("0", "1", ...). A numeric label holds class indices: it must
/// be a whole number &gt;= 0, there are (largest label + 1) classes, and the values are 0, 1, ... in the label's own type
/// (so MulticlassClassification.Evaluate, which reads a Single label as a class index, agrees).
/// </remarks>
public sealed class LabelClasses
{
    /// <summary>Labels above this index are refused (a sign of a column that is not a class index; use MapValueToKey).</summary>
    public const int MaxClasses = 1 << 16;

    private LabelClasses(DataViewType labelType, DataViewType valueType, Array values)
    {
        LabelType = labelType; ValueType = valueType; Values = values;
        Names = values.Cast<object>().Select(v => v?.ToString() ?? "").ToArray();
    }

    /// <summary>The number of classes (the network's outputs).</summary>
    public int Count => Values.Length;

    /// <summary>The label column's type at training time.</summary>
    public DataViewType LabelType { get; }

    /// <summary>The item type of <see cref="Values"/>: text for keys with text KeyValues, the label's type for numbers.</summary>
    public DataViewType ValueType { get; }

    /// <summary>One value per class, a <c>T[]</c> of <see cref="ValueType"/>'s raw type (strings for text).</summary>
    public Array Values { get; }

    /// <summary>The classes' names (the values as text), used as Score's SlotNames.</summary>
    public IReadOnlyList<string> Names { get; }

    /// <summary>True for a key label.</summary>
    public bool IsKey => LabelType is KeyDataViewType;

    /// <summary>Checks the label column's type; throws naming the column when it is neither a key nor a number.</summary>
    internal static void CheckLabelType(DataViewSchema.Column column)
    {
        bool ok = column.Type is KeyDataViewType k ? k.Count > 0 : IsNumber(column.Type);
        if (!ok)
            throw new ArgumentOutOfRangeException("LabelColumnName", column.Type.ToString(),
                $"Label column '{column.Name}' has type {column.Type}; expected a key (use mlContext.Transforms.Conversion.MapValueToKey) or a number holding class indices 0, 1, 2, ...");
    }

    internal static bool IsNumber(DataViewType t) => t is NumberDataViewType;

    /// <summary>The classes of a key label: its KeyValues, or "0".."K-1" without them.</summary>
    internal static LabelClasses FromKey(DataViewSchema.Column column)
    {
        var key = (KeyDataViewType)column.Type;
        if (key.Count < 2 || key.Count > MaxClasses)
            throw new ArgumentOutOfRangeException("LabelColumnName", key.Count,
                $"Label column '{column.Name}' is a key of {key.Count} values; a classifier needs 2 to {MaxClasses} classes.");
        int k = (int)key.Count;
        var kvColumn = column.Annotations.Schema.GetColumnOrNull("KeyValues");
        if (kvColumn is { Type: VectorDataViewType { ItemType: var itemType } vt } && vt.Size == k)
        {
            var values = (Array)typeof(LabelClasses).GetMethod(nameof(ReadKeyValues), System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)!
                .MakeGenericMethod(itemType.RawType).Invoke(null, [column])!;
            if (itemType is TextDataViewType)
                values = values.Cast<ReadOnlyMemory<char>>().Select(m => m.ToString()).ToArray();
            return new LabelClasses(column.Type, itemType, values);
        }
        return new LabelClasses(column.Type, TextDataViewType.Instance, Enumerable.Range(0, k).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray());
    }

    private static T[] ReadKeyValues<T>(DataViewSchema.Column column)
    {
        VBuffer<T> kv = default;
        column.GetKeyValues(ref kv);
        return kv.DenseValues().ToArray();
    }

    /// <summary>The classes of a numeric label whose largest value is <paramref name="largest"/>: 0..largest in the label's type.</summary>
    internal static LabelClasses FromNumbers(DataViewSchema.Column column, long largest)
    {
        if (largest < 1)
            throw new ArgumentException($"Label column '{column.Name}' holds only class 0; a classifier needs at least 2 classes.", "LabelColumnName");
        var raw = column.Type.RawType;
        var values = Array.CreateInstance(raw, largest + 1);
        for (int i = 0; i <= largest; i++) values.SetValue(Convert.ChangeType(i, raw, System.Globalization.CultureInfo.InvariantCulture), i);
        return new LabelClasses(column.Type, column.Type, values);
    }

    /// <summary>A reader of a numeric label of <paramref name="row"/> as a double (NaN stays NaN; the caller checks it is a class index).</summary>
    internal static Func<double> NumberReader(DataViewRow row, DataViewSchema.Column column)
    {
        Func<double> Make<T>(Func<T, double> convert)
        {
            var getter = row.GetGetter<T>(column);
            T value = default!;
            return () => { getter(ref value); return convert(value); };
        }
        return column.Type.RawType switch
        {
            var t when t == typeof(float) => Make<float>(v => v),
            var t when t == typeof(double) => Make<double>(v => v),
            var t when t == typeof(sbyte) => Make<sbyte>(v => v),
            var t when t == typeof(byte) => Make<byte>(v => v),
            var t when t == typeof(short) => Make<short>(v => v),
            var t when t == typeof(ushort) => Make<ushort>(v => v),
            var t when t == typeof(int) => Make<int>(v => v),
            var t when t == typeof(uint) => Make<uint>(v => v),
            var t when t == typeof(long) => Make<long>(v => v),
            var t when t == typeof(ulong) => Make<ulong>(v => v),
            var t => throw new ArgumentOutOfRangeException("LabelColumnName", t.Name, $"Label column '{column.Name}' has raw type {t.Name}, which is not read as a number."),
        };
    }

    /// <summary>A reader of a key label's raw value (0 = missing, else class index + 1).</summary>
    internal static Func<ulong> KeyReader(DataViewRow row, DataViewSchema.Column column)
    {
        Func<ulong> Make<T>(Func<T, ulong> convert)
        {
            var getter = row.GetGetter<T>(column);
            T value = default!;
            return () => { getter(ref value); return convert(value); };
        }
        return column.Type.RawType switch
        {
            var t when t == typeof(byte) => Make<byte>(v => v),
            var t when t == typeof(ushort) => Make<ushort>(v => v),
            var t when t == typeof(uint) => Make<uint>(v => v),
            var t when t == typeof(ulong) => Make<ulong>(v => v),
            var t => throw new ArgumentOutOfRangeException("LabelColumnName", t.Name, $"Label column '{column.Name}' is a key over {t.Name}, which is not supported."),
        };
    }
}
