using DataType = Onnx.TensorProto.Types.DataType;

namespace MLNet.ConvNet.Onnx;

// Element-wise arithmetic between two values of the graph: what a residual block's sum needs.

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
}
