using DataType = Onnx.TensorProto.Types.DataType;

namespace MLNet.ConvNet.Onnx;

// Element-wise arithmetic between two values of the graph: a residual block's sum, and products for layers written
// outside this project (docs/architecture.md, "Adding a layer type").

public sealed partial class OnnxGraphBuilder
{
    /// <summary>
    /// ONNX <c>Add</c> of two float values of the same shape (a residual block's <c>main + shortcut</c>); no broadcasting,
    /// so a shape mismatch is an error here rather than a silently broadcast sum.
    /// </summary>
    public string Add(string a, string b)
    {
        var aDims = FloatInput(a, "Add", 1);
        var bInfo = Get(b, nameof(b));
        if (bInfo.Type != DataType.Float)
            throw new ArgumentException($"Add: '{b}' holds {bInfo.Type} values; expected float.", nameof(b));
        if (!aDims.AsSpan().SequenceEqual(bInfo.Dims))
            throw new ArgumentException($"Add: '{a}' {Format(aDims)} and '{b}' {Format(bInfo.Dims)} differ in shape; Add does not broadcast.", nameof(b));
        return Track(AddNode(NewNodeName("Add"), "Add", [a, b], []), (int[])aDims.Clone());
    }

    /// <summary>ONNX <c>Mul</c> of two float values of the same shape (element-wise product); no broadcasting, as <see cref="Add"/>.</summary>
    public string Multiply(string a, string b)
    {
        var aDims = FloatInput(a, "Multiply", 1);
        var bInfo = Get(b, nameof(b));
        if (bInfo.Type != DataType.Float)
            throw new ArgumentException($"Multiply: '{b}' holds {bInfo.Type} values; expected float.", nameof(b));
        if (!aDims.AsSpan().SequenceEqual(bInfo.Dims))
            throw new ArgumentException($"Multiply: '{a}' {Format(aDims)} and '{b}' {Format(bInfo.Dims)} differ in shape; Multiply does not broadcast.", nameof(b));
        return Track(AddNode(NewNodeName("Mul"), "Mul", [a, b], []), (int[])aDims.Clone());
    }

    /// <summary>ONNX <c>Mul</c> of a float value by the constant <paramref name="alpha"/> (a scalar initializer, broadcast).</summary>
    public string Scale(string x, float alpha)
    {
        var dims = FloatInput(x, "Scale", 1);
        string node = NewNodeName("Mul");
        string a = Constant(node, "alpha", [alpha], []);
        return Track(AddNode(node, "Mul", [x, a], []), (int[])dims.Clone());
    }

    /// <summary>
    /// ONNX <c>Concat</c> of float values along <paramref name="axis"/> (1: the channels of <c>[N, C, ...]</c>); every other
    /// dimension must agree (a graph block's channel concatenation).
    /// </summary>
    public string Concat(IReadOnlyList<string> values, int axis = 1)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (values.Count < 2) throw new ArgumentException("Concat: give at least two values.", nameof(values));
        var first = FloatInput(values[0], "Concat", 1);
        if (axis < 0 || axis >= first.Length)
            throw new ArgumentOutOfRangeException(nameof(axis), axis, $"Concat: '{values[0]}' {Format(first)} has no dimension {axis}.");
        var dims = (int[])first.Clone();
        foreach (string v in values.Skip(1))
        {
            var d = FloatInput(v, "Concat", first.Length, first.Length);
            for (int i = 0; i < d.Length; i++)
                if (i != axis && d[i] != first[i])
                    throw new ArgumentException($"Concat: '{values[0]}' {Format(first)} and '{v}' {Format(d)} differ outside dimension {axis}.", nameof(values));
            dims[axis] += d[axis];
        }
        return Track(AddNode(NewNodeName("Concat"), "Concat", values, [OnnxProto.Int("axis", axis)]), dims);
    }
}

public sealed partial class OnnxGraphBuilder
{
    /// <summary>
    /// <c>(x - offset) * scale</c> with constants broadcast over the batch: ONNX <c>Sub</c> then <c>Mul</c>, the form of
    /// ML.NET's ExtractPixels (<c>(pixel - offsetImage) * scaleImage</c>) and of its affine normalizers, so the exported
    /// graph rounds as the pipeline does. <paramref name="offset"/> and <paramref name="scale"/> hold one value per
    /// element of <paramref name="constantDims"/>, which must be a suffix-broadcastable shape of one sample: e.g.
    /// <c>[C, 1, 1]</c> (per channel) or <c>[C, H, W]</c> (per pixel) for <paramref name="x"/> of shape <c>[N, C, H, W]</c>.
    /// </summary>
    public string Normalize(string x, ReadOnlySpan<float> offset, ReadOnlySpan<float> scale, int[] constantDims)
    {
        ArgumentNullException.ThrowIfNull(constantDims);
        var dims = FloatInput(x, "Normalize", 2);
        var sample = dims[1..];
        if (constantDims.Length != sample.Length)
            throw new ArgumentException($"Normalize: constants {Format(constantDims)} must have the rank of one sample of '{x}' {Format(dims)}.", nameof(constantDims));
        int count = 1;
        for (int i = 0; i < sample.Length; i++)
        {
            if (constantDims[i] != 1 && constantDims[i] != sample[i])
                throw new ArgumentException($"Normalize: constants {Format(constantDims)} do not broadcast over '{x}' {Format(dims)} (dimension {i + 1}).", nameof(constantDims));
            count *= constantDims[i];
        }
        if (offset.Length != count || scale.Length != count)
            throw new ArgumentException($"Normalize: constants {Format(constantDims)} need {count} values; got {offset.Length} offsets and {scale.Length} scales.", nameof(offset));
        string sub = NewNodeName("Sub");
        string shifted = Track(AddNode(sub, "Sub", [x, Constant(sub, "offset", offset, constantDims)], []), (int[])dims.Clone());
        string mul = NewNodeName("Mul");
        return Track(AddNode(mul, "Mul", [shifted, Constant(mul, "scale", scale, constantDims)], []), (int[])dims.Clone());
    }
}
