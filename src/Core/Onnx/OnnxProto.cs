using System.Runtime.InteropServices;
using Google.Protobuf;
using Onnx;

namespace MLNet.ConvNet.Onnx;

/// <summary>
/// Small constructors for the ONNX protobuf messages (OnnxSharp's generated classes): attributes, constant
/// tensors and typed value descriptions. Kept apart so <see cref="OnnxGraphBuilder"/> reads as a list of ops.
/// </summary>
internal static class OnnxProto
{
    /// <summary>An INT attribute.</summary>
    public static AttributeProto Int(string name, long value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

    /// <summary>A FLOAT attribute.</summary>
    public static AttributeProto Float(string name, float value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = value };

    /// <summary>An INTS attribute.</summary>
    public static AttributeProto Ints(string name, IEnumerable<int> values)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        foreach (int v in values) a.Ints.Add(v);
        return a;
    }

    /// <summary>An INTS attribute from 64-bit values.</summary>
    public static AttributeProto Longs(string name, IEnumerable<long> values)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        a.Ints.AddRange(values);
        return a;
    }

    /// <summary>A STRINGS attribute (UTF-8).</summary>
    public static AttributeProto Strings(string name, IEnumerable<string> values)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Strings };
        foreach (string v in values) a.Strings.Add(ByteString.CopyFromUtf8(v));
        return a;
    }

    /// <summary>A float32 constant with the given dimensions, stored as little-endian raw bytes.</summary>
    public static TensorProto FloatTensor(string name, ReadOnlySpan<float> data, ReadOnlySpan<int> dims)
    {
        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float };
        foreach (int d in dims) t.Dims.Add(d);
        // ONNX raw_data is little-endian; on a big-endian host the typed field keeps the values right.
        if (BitConverter.IsLittleEndian) t.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(data));
        else foreach (float v in data) t.FloatData.Add(v);
        return t;
    }

    /// <summary>An int64 constant with the given dimensions.</summary>
    public static TensorProto Int64Tensor(string name, ReadOnlySpan<long> data, ReadOnlySpan<int> dims)
    {
        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Int64 };
        foreach (int d in dims) t.Dims.Add(d);
        foreach (long v in data) t.Int64Data.Add(v);
        return t;
    }

    /// <summary>A string constant with the given dimensions (UTF-8).</summary>
    public static TensorProto StringTensor(string name, IEnumerable<string> data, ReadOnlySpan<int> dims)
    {
        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.String };
        foreach (int d in dims) t.Dims.Add(d);
        foreach (string v in data) t.StringData.Add(ByteString.CopyFromUtf8(v));
        return t;
    }

    /// <summary>
    /// A graph input or output: a tensor of <paramref name="elementType"/>; with <paramref name="dims"/> its shape,
    /// where -1 is a dimension named <paramref name="dynamicName"/> (ONNX dim_param); without, the shape is left to inference.
    /// </summary>
    public static ValueInfoProto Value(string name, TensorProto.Types.DataType elementType, ReadOnlySpan<int> dims, bool hasShape, string dynamicName)
    {
        var tensor = new TypeProto.Types.Tensor { ElemType = (int)elementType };
        if (hasShape)
        {
            tensor.Shape = new TensorShapeProto();
            foreach (int d in dims)
                tensor.Shape.Dim.Add(d == -1
                    ? new TensorShapeProto.Types.Dimension { DimParam = dynamicName }
                    : new TensorShapeProto.Types.Dimension { DimValue = d });
        }
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = tensor } };
    }
}
