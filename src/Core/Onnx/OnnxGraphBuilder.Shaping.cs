using DataType = Onnx.TensorProto.Types.DataType;

namespace MLNet.ConvNet.Onnx;

// Nodes that reshape or relabel rather than compute: Flatten, Reshape, ArgMax, and the ONNX-ML LabelEncoder
// that ML.NET's OnnxTransformer reads as the SlotNames annotation of an output column.

public sealed partial class OnnxGraphBuilder
{
    /// <summary>ONNX <c>Flatten</c> (axis 1): <c>[N, D1, D2, ...]</c> to <c>[N, D1 * D2 * ...]</c>.</summary>
    public string Flatten(string x)
    {
        var xDims = FloatInput(x, "Flatten", 1);
        int rest = 1;
        for (int i = 1; i < xDims.Length; i++) rest *= xDims[i];
        return Track(AddNode(NewNodeName("Flatten"), "Flatten", [x], [OnnxProto.Int("axis", 1)]), [xDims[0], rest]);
    }

    /// <summary>
    /// ONNX <c>Reshape</c> of <paramref name="x"/> to <paramref name="shape"/>, where 0 copies the input's dimension
    /// at that position and one -1 is inferred (ONNX's rules, allowzero = 0).
    /// </summary>
    /// <remarks>
    /// With a dynamic batch, <paramref name="shape"/> either keeps it (first entry 0 or -1, the rest positive and
    /// holding one row's values) or is fully positive and holds exactly one row: the latter is what ML.NET's
    /// OnnxTransformer wants (it runs one row at a time; reshaping <c>[N, K]</c> scores to <c>[K]</c> gives a
    /// <c>Vector&lt;Single, K&gt;</c> column) and fails at run time for a batch above 1.
    /// </remarks>
    public string Reshape(string x, long[] shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        var info = Get(x, nameof(x));
        var dims = ReshapeDims(info.Dims, shape, x);
        string node = NewNodeName("Reshape");
        string target = Constant(node, "Shape", shape, [shape.Length]);
        return Track(AddNode(node, "Reshape", [x, target], []), dims, info.Type);
    }

    /// <summary>
    /// ONNX <c>ArgMax</c> along <paramref name="axis"/>: the int64 index of the first maximum (select_last_index 0).
    /// With <paramref name="keepDims"/> false (the default) that dimension is removed: <c>[N, K]</c> gives <c>[N]</c>.
    /// </summary>
    public string ArgMax(string x, int axis = 1, bool keepDims = false)
    {
        var xDims = FloatInput(x, "ArgMax", 1);
        if (axis < -xDims.Length || axis >= xDims.Length)
            throw new ArgumentOutOfRangeException(nameof(axis), axis, $"ArgMax: '{x}' {Format(xDims)} has no dimension {axis}.");
        int a = axis < 0 ? axis + xDims.Length : axis;
        int[] dims = keepDims ? [.. xDims[..a], 1, .. xDims[(a + 1)..]] : [.. xDims[..a], .. xDims[(a + 1)..]];
        var attributes = new[] { OnnxProto.Int("axis", axis), OnnxProto.Int("keepdims", keepDims ? 1 : 0) };
        return Track(AddNode(NewNodeName("ArgMax"), "ArgMax", [x], attributes), dims, DataType.Int64);
    }

    /// <summary>
    /// ONNX-ML <c>LabelEncoder</c> (domain <c>ai.onnx.ml</c>) from strings to int64: each string of <paramref name="x"/>
    /// equal to <c>keys[i]</c> becomes <c>values[i]</c>, any other string <paramref name="defaultValue"/>.
    /// The node is named <paramref name="nodeName"/> when given (it must be new).
    /// </summary>
    public string LabelEncoder(string x, IReadOnlyList<string> keys, IReadOnlyList<long> values, long defaultValue = -1, string? nodeName = null)
    {
        ArgumentNullException.ThrowIfNull(keys);
        ArgumentNullException.ThrowIfNull(values);
        var info = Get(x, nameof(x));
        if (info.Type != DataType.String)
            throw new ArgumentException($"LabelEncoder: '{x}' holds {info.Type} values; this encoder maps strings to int64.", nameof(x));
        if (keys.Count != values.Count)
            throw new ArgumentException($"LabelEncoder: {keys.Count} keys but {values.Count} values; give one value per key.", nameof(values));
        if (keys.Count == 0) throw new ArgumentException("LabelEncoder: give at least one key.", nameof(keys));
        if (keys.Distinct(StringComparer.Ordinal).Count() != keys.Count)
            throw new ArgumentException("LabelEncoder: the keys must be distinct.", nameof(keys));
        string node = nodeName is null ? NewNodeName("LabelEncoder") : Claim(nodeName, nameof(nodeName));
        var attributes = new[]
        {
            OnnxProto.Strings("keys_strings", keys),
            OnnxProto.Longs("values_int64s", values),
            OnnxProto.Int("default_int64", defaultValue),
        };
        _usesMlDomain = true;
        return Track(AddNode(node, "LabelEncoder", [x], attributes, domain: MlDomain), info.Dims, DataType.Int64);
    }

    /// <summary>
    /// Attaches slot names to the output column <paramref name="columnName"/> the way ML.NET's OnnxTransformer
    /// reads them: a LabelEncoder node named <c>mlnet.{columnName}.SlotNames</c> whose <c>keys_strings</c> are
    /// <paramref name="slotNames"/> (e.g. the class names on "Score"). Returns the node's name.
    /// </summary>
    /// <remarks>
    /// The node maps a constant <c>[1, 1]</c> string tensor to slot indices; its output is used by nothing and is not a
    /// graph output, so ONNX Runtime may drop the node, while the model file keeps it for ML.NET to read.
    /// This follows the convention of ML.NET's own ONNX exporter.
    /// </remarks>
    public string SlotNames(string columnName, IReadOnlyList<string> slotNames)
    {
        ArgumentException.ThrowIfNullOrEmpty(columnName);
        ArgumentNullException.ThrowIfNull(slotNames);
        string nodeName = $"mlnet.{columnName}.SlotNames";
        if (_names.Contains(nodeName))
            throw new ArgumentException($"Slot names for '{columnName}' were already added (node '{nodeName}').", nameof(columnName));
        string input = Fresh($"mlnet.{columnName}.unusedInput");
        _graph.Initializer.Add(OnnxProto.StringTensor(input, ["one"], [1, 1]));
        Track(input, [1, 1], DataType.String);
        var values = Enumerable.Range(0, slotNames.Count).Select(i => (long)i).ToArray();
        LabelEncoder(input, slotNames, values, nodeName: nodeName);
        return nodeName;
    }

    /// <summary>The output dimensions of a Reshape, following ONNX's rules and the dynamic-batch cases above.</summary>
    private static int[] ReshapeDims(int[] input, long[] shape, string x)
    {
        string Where() => $"Reshape: '{x}' {Format(input)} to {Shape.Format(shape.Select(s => (int)s).ToArray())}";
        if (shape.Length == 0) throw new ArgumentException($"{Where()}: give at least one dimension.", nameof(shape));
        if (shape.Any(s => s < -1 || s > int.MaxValue)) throw new ArgumentException($"{Where()}: entries must be -1, 0 or positive.", nameof(shape));
        if (shape.Count(s => s == -1) > 1) throw new ArgumentException($"{Where()}: at most one entry may be -1.", nameof(shape));
        if (shape.Select((s, i) => s == 0 && i >= input.Length).Any(b => b))
            throw new ArgumentException($"{Where()}: 0 copies the input's dimension at that position, which does not exist.", nameof(shape));

        long row = 1;
        for (int i = 1; i < input.Length; i++) row *= input[i];
        var dims = shape.Select((s, i) => s == 0 ? input[i] : (int)s).ToArray();
        if (input[0] == -1)
        {
            // Dynamic batch: either the batch stays in front, or the result is exactly one row.
            bool keepsBatch = (shape[0] == 0 || shape[0] == -1) && dims.Skip(1).All(d => d > 0);
            long rest = dims.Skip(1).Aggregate(1L, (p, d) => p * d);
            if (keepsBatch && rest == row) { dims[0] = -1; return dims; }
            if (dims.All(d => d > 0) && rest * dims[0] == row) return dims;
            throw new ArgumentException($"{Where()}: with a dynamic batch the shape must be [0 or -1, ...] holding {row} values per row, or fully given and holding {row} values (one row).", nameof(shape));
        }
        long total = row * input[0];
        long known = dims.Where(d => d != -1).Aggregate(1L, (p, d) => p * d);
        int inferred = Array.IndexOf(dims, -1);
        if (inferred >= 0)
        {
            if (total % known != 0) throw new ArgumentException($"{Where()}: {total} values do not divide into the given dimensions ({known}).", nameof(shape));
            dims[inferred] = (int)(total / known);
        }
        else if (known != total)
            throw new ArgumentException($"{Where()}: the new shape holds {known} values but the input holds {total}.", nameof(shape));
        return dims;
    }
}
