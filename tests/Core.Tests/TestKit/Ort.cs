using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace MLNet.ConvNet.Tests.TestKit;

/// <summary>One output of an ONNX Runtime run, copied out of ORT's memory: float or int64 values and the shape.</summary>
public sealed record OrtOutput(int[] Shape, float[] Floats, long[] Longs);

/// <summary>Runs a serialized ONNX model in ONNX Runtime (CPU execution provider) on one float input.</summary>
public static class Ort
{
    /// <summary>Runs <paramref name="model"/> with <paramref name="x"/> of shape <paramref name="dims"/> as input <paramref name="input"/>; returns the named outputs in order.</summary>
    public static OrtOutput[] Run(byte[] model, string input, float[] x, int[] dims, params string[] outputs)
    {
        // One thread: the test machine is small and shared, and single-op graphs gain nothing from more.
        using var options = new SessionOptions { IntraOpNumThreads = 1, InterOpNumThreads = 1 };
        using var session = new InferenceSession(model, options);
        using var value = OrtValue.CreateTensorValueFromMemory(x, Array.ConvertAll(dims, d => (long)d));
        using var runOptions = new RunOptions();
        using var results = session.Run(runOptions, [input], [value], outputs);
        return results.Select(Copy).ToArray();
    }

    private static OrtOutput Copy(OrtValue v)
    {
        var info = v.GetTensorTypeAndShape();
        var shape = Array.ConvertAll(info.Shape, d => (int)d);
        return info.ElementDataType switch
        {
            TensorElementType.Float => new OrtOutput(shape, v.GetTensorDataAsSpan<float>().ToArray(), []),
            TensorElementType.Int64 => new OrtOutput(shape, [], v.GetTensorDataAsSpan<long>().ToArray()),
            var t => throw new NotSupportedException($"Output of type {t} is not read by these tests."),
        };
    }
}
