using Microsoft.ML;
using Microsoft.ML.Data;

namespace MLNet.ConvNet.Transforms;

/// <summary>
/// How a vector-of-Single column is read as one tensor row <c>[C, X...]</c>, and the checks that name the column
/// and both shapes when it does not fit. Shared by every transform of this project.
/// </summary>
/// <remarks>
/// The row shape comes from the column type's dimensions (<c>ExtractPixels</c> gives <c>Vector&lt;Single, C, H, W&gt;</c>)
/// or, when given, from the transform's <c>InputShape</c> option, whose product must equal the vector's size (this is
/// how a flat <c>Vector&lt;Single, 784&gt;</c> becomes <c>[1, 28, 28]</c>). Dimensions are read as <c>[C, X...]</c>:
/// channels first, as <c>ExtractPixels</c> gives them by default (not with <c>interleavePixelColors: true</c>, whose
/// <c>[H, W, C]</c> cannot be told apart by its type).
/// </remarks>
internal static class TensorColumn
{
    /// <summary>The per-row shape <c>[C, X...]</c> of <paramref name="column"/> in <paramref name="schema"/>.</summary>
    public static Shape RowShape(DataViewSchema schema, string column, int[]? inputShape, RowRank rank, string transform)
    {
        var col = schema.GetColumnOrNull(column)
            ?? throw new ArgumentOutOfRangeException(nameof(schema),
                $"{transform}: input column '{column}' is not in the schema (columns: {string.Join(", ", schema.Where(c => !c.IsHidden).Select(c => $"'{c.Name}'"))}).");
        return RowShape(col.Type, column, inputShape, rank, transform);
    }

    /// <summary>The per-row shape <c>[C, X...]</c> of a column named <paramref name="column"/> of type <paramref name="type"/>.</summary>
    public static Shape RowShape(DataViewType type, string column, int[]? inputShape, RowRank rank, string transform)
    {
        var vector = CheckType(type, column, transform);
        if (inputShape is not null)
        {
            var given = CheckGivenShape(inputShape, rank, transform);
            if (given.Length != vector.Size)
                throw new ArgumentException($"{transform}: column '{column}' holds {vector.Size} values per row ({vector}) but InputShape {given} holds {given.Length}.", nameof(inputShape));
            return given;
        }
        var dims = vector.Dimensions.ToArray();
        if (dims.Length < rank.Min)
            throw new ArgumentException(
                $"{transform}: column '{column}' is {vector}, {(dims.Length == 1 ? "a flat vector" : $"rank {dims.Length}")}, but {transform} needs {rank.Describe()} per row; " +
                $"set InputShape (for example [1, 28, 28] for 784 grey pixels) or give the column those dimensions.", nameof(inputShape));
        if (dims.Length > rank.Max)
            throw new ArgumentException($"{transform}: column '{column}' is {vector} (rank {dims.Length}) but {transform} takes {rank.Describe()} per row; set InputShape.", nameof(inputShape));
        return new Shape(dims);
    }

    /// <summary>Checks that <paramref name="type"/> is a known-size vector of Single.</summary>
    public static VectorDataViewType CheckType(DataViewType type, string column, string transform)
    {
        if (type is not VectorDataViewType vector || vector.ItemType != NumberDataViewType.Single)
            throw new ArgumentOutOfRangeException(nameof(type),
                $"{transform}: column '{column}' has type {type}; expected a known-size vector of Single (Vector<Single, C, ...>, as ExtractPixels gives).");
        if (!vector.IsKnownSize)
            throw new ArgumentOutOfRangeException(nameof(type),
                $"{transform}: column '{column}' has type {type}, a vector of unknown size; expected a known-size vector of Single (resize images before ExtractPixels).");
        return vector;
    }

    /// <summary>The same check on the schema shape an estimator sees before fitting (no dimensions there).</summary>
    public static SchemaShape.Column CheckShape(SchemaShape inputSchema, string column, string transform)
    {
        var col = Find(inputSchema, column);
        if (col.Name is null)
            throw new ArgumentOutOfRangeException(nameof(inputSchema),
                $"{transform}: input column '{column}' is not in the schema (columns: {string.Join(", ", inputSchema.Select(c => $"'{c.Name}'"))}).");
        if (col.Kind != SchemaShape.Column.VectorKind.Vector || col.ItemType != NumberDataViewType.Single || col.IsKey)
            throw new ArgumentOutOfRangeException(nameof(inputSchema),
                $"{transform}: column '{column}' is {Describe(col)}; expected a known-size vector of Single (Vector<Single, C, ...>, as ExtractPixels gives).");
        return col;
    }

    /// <summary>The output column type: a vector of Single whose dimensions are the output row shape, so transforms chain.</summary>
    public static VectorDataViewType VectorType(Shape rowShape) => new(NumberDataViewType.Single, rowShape.ToArray());

    private static Shape CheckGivenShape(int[] inputShape, RowRank rank, string transform)
    {
        if (inputShape.Length < rank.Min || inputShape.Length > rank.Max || inputShape.Any(d => d < 1))
            throw new ArgumentException($"{transform}: InputShape {Format(inputShape)} is not {rank.Describe()} with every size at least 1.", nameof(inputShape));
        return new Shape(inputShape);
    }

    /// <summary>The column named <paramref name="name"/>, or default (Name null) when there is none.</summary>
    public static SchemaShape.Column Find(SchemaShape schema, string name) => schema.LastOrDefault(c => c.Name == name);

    /// <summary>Prints dimensions as <c>[1, 28, 28]</c>.</summary>
    public static string Format(IEnumerable<int> dims) => "[" + string.Join(", ", dims) + "]";

    private static string Describe(SchemaShape.Column c) => c.Kind switch
    {
        SchemaShape.Column.VectorKind.Scalar => $"a scalar {c.ItemType}{(c.IsKey ? " key" : "")}",
        SchemaShape.Column.VectorKind.VariableVector => $"a vector of {c.ItemType} of unknown size",
        _ => $"a vector of {c.ItemType}{(c.IsKey ? " keys" : "")}",
    };
}

/// <summary>The ranks a transform accepts for one row <c>[C, X...]</c> (channels plus spatial dimensions).</summary>
internal readonly record struct RowRank(int Min, int Max)
{
    /// <summary><c>[C, X]</c>, <c>[C, H, W]</c> or <c>[C, D, H, W]</c>: convolution, pooling, LRN.</summary>
    public static RowRank Spatial { get; } = new(2, 4);
    /// <summary>Also <c>[F]</c>: per-feature batch normalization.</summary>
    public static RowRank ChannelsOrSpatial { get; } = new(1, 4);
    /// <summary>Any shape: element-wise transforms.</summary>
    public static RowRank Any { get; } = new(1, 8);

    public string Describe() => (Min, Max) switch
    {
        (2, 4) => "[C, X], [C, H, W] or [C, D, H, W]",
        (1, 4) => "[F], [C, X], [C, H, W] or [C, D, H, W]",
        _ => $"a shape of rank {Min} to {Max}",
    };
}
