using MLNet.ConvNet.Ops;
using Onnx;

namespace MLNet.ConvNet.Onnx;

// Our ops as ONNX nodes. Each method checks its shapes with the engine's own geometry, adds the weights as
// initializers and one node, and returns the node's output. The mapping, op by op:
//   Convolution             Conv            kernel flipped in every spatial dim when Mode = Convolution
//   TransposedConvolution   ConvTranspose   same weight layout [Cx, Cy/g, K...]; flipped likewise
//   Pooling                 MaxPool / AveragePool (count_include_pad 1 or 0)
//   Lrn                     LRN             size, alpha, beta, bias = K (the same formula)
//   BatchNormInference      BatchNormalization (inference form)
//   Activation              Relu / LeakyRelu / Elu / Sigmoid / Tanh
//   Dense                   [Flatten +] Gemm with transB = 1
//   Softmax                 Softmax (axis 1)

public sealed partial class OnnxGraphBuilder
{
    /// <summary>
    /// <see cref="Ops.Convolution.Forward(Tensor, Tensor, Tensor?, ConvolutionOptions?)"/> as an ONNX <c>Conv</c>: <paramref name="x"/> <c>[N, C, X...]</c>
    /// (1-D, 2-D or 3-D), <paramref name="w"/> <c>[O, C/groups, K...]</c>, <paramref name="bias"/> <c>[O]</c> or null;
    /// output <c>[N, O, Y...]</c>.
    /// </summary>
    /// <remarks>
    /// ONNX <c>Conv</c> is a cross-correlation, so in <see cref="ConvolutionMode.Convolution"/> mode (the default)
    /// the exported kernel is <paramref name="w"/> flipped in every spatial dimension. Pads are written as
    /// <c>[begin..., end...]</c> with our symmetric padding on both sides; strides, dilations and group map one to one.
    /// </remarks>
    public string Convolution(string x, Tensor w, Tensor? bias = null, ConvolutionOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(w);
        var xDims = FloatInput(x, "Convolution", 3, 5);
        var g = ConvGeometry.Create(Proxy(xDims), w.Shape, options);
        Ops.Convolution.CheckBias(bias, g.OutChannels, "Convolution");
        return Track(AddConvolutionNode("Conv", x, w, bias, g), WithBatch(g.Output, xDims));
    }

    /// <summary>
    /// <see cref="TransposedConvolution.Forward"/> as an ONNX <c>ConvTranspose</c>: <paramref name="x"/> <c>[N, Cx, X...]</c>,
    /// <paramref name="w"/> <c>[Cx, Cy/groups, K...]</c> (ONNX's layout too), <paramref name="bias"/> <c>[Cy]</c> or null;
    /// output <c>[N, Cy, Y...]</c> with <c>Y = (X - 1)S + (K - 1)D + 1 - 2P</c> (no output_padding).
    /// </summary>
    /// <remarks>
    /// Ours is the input-gradient of the convolution with the same options; ONNX's is the input-gradient of its
    /// cross-correlation. In <see cref="ConvolutionMode.Convolution"/> mode the exported kernel is therefore flipped.
    /// </remarks>
    public string TransposedConvolution(string x, Tensor w, Tensor? bias = null, ConvolutionOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(w);
        var xDims = FloatInput(x, "TransposedConvolution", 3, 5);
        var g = ConvGeometry.ForTransposed(Proxy(xDims), w.Shape, options);
        Ops.Convolution.CheckBias(bias, g.InChannels, "TransposedConvolution");
        // g describes the convolution from y back to x: g.Input is this op's output.
        return Track(AddConvolutionNode("ConvTranspose", x, w, bias, g), WithBatch(g.Input, xDims));
    }

    /// <summary>
    /// <see cref="Ops.Pooling.Forward(Tensor, PoolingOptions?)"/> as an ONNX <c>MaxPool</c> or <c>AveragePool</c> on <paramref name="x"/>
    /// <c>[N, C, X...]</c>; output <c>[N, C, Y...]</c> with <c>Y = 1 + floor((X + 2P - W) / S)</c> (ceil_mode 0).
    /// </summary>
    /// <remarks>
    /// ONNX's MaxPool ignores padded cells, as ours does (they act as -infinity). AverageExcludingPadding is
    /// <c>count_include_pad = 0</c>, AverageIncludingPadding is <c>count_include_pad = 1</c>.
    /// </remarks>
    public string Pooling(string x, PoolingOptions? options = null)
    {
        var xDims = FloatInput(x, "Pooling", 3, 5);
        var g = PoolGeometry.Create(Proxy(xDims), options);
        var attributes = new List<AttributeProto>
        {
            OnnxProto.Ints("kernel_shape", g.Window),
            OnnxProto.Ints("pads", [.. g.Padding, .. g.Padding]),
            OnnxProto.Ints("strides", g.Stride),
        };
        string opType = g.Mode == PoolingMode.Max ? "MaxPool" : "AveragePool";
        if (g.Mode != PoolingMode.Max)
            attributes.Add(OnnxProto.Int("count_include_pad", g.Mode == PoolingMode.AverageIncludingPadding ? 1 : 0));
        return Track(AddNode(NewNodeName(opType), opType, [x], attributes), WithBatch(g.Output, xDims));
    }

    /// <summary>
    /// <see cref="Ops.Lrn.Forward(Tensor, LrnOptions?)"/> as an ONNX <c>LRN</c> (cross-channel) on <paramref name="x"/> <c>[N, C, ...]</c>:
    /// <c>y = x / (K + Alpha/Size * sum of x^2 over the channel window)^Beta</c>, ONNX's formula with bias = K.
    /// </summary>
    /// <remarks>ONNX Runtime's CPU kernel (1.31) runs only 4-D input <c>[N, C, H, W]</c> and odd sizes; other models export but fail there.</remarks>
    public string Lrn(string x, LrnOptions? options = null)
    {
        options ??= LrnOptions.Default;
        options.Validate();
        var xDims = FloatInput(x, "Lrn", 2);
        AttributeProto[] attributes =
        [
            OnnxProto.Int("size", options.Size),
            OnnxProto.Float("alpha", options.Alpha),
            OnnxProto.Float("beta", options.Beta),
            OnnxProto.Float("bias", options.K),
        ];
        return Track(AddNode(NewNodeName("LRN"), "LRN", [x], attributes), xDims);
    }

    /// <summary>
    /// <see cref="BatchNorm.ForwardInference(Tensor, Tensor, Tensor, Tensor, Tensor, float)"/> as an ONNX <c>BatchNormalization</c> on <paramref name="x"/>
    /// <c>[N, C, ...]</c> or <c>[N, F]</c>: <c>y = gamma (x - mean) / sqrt(variance + epsilon) + beta</c>, per channel.
    /// </summary>
    public string BatchNormInference(string x, Tensor gamma, Tensor beta, Tensor mean, Tensor variance, float epsilon = BatchNorm.DefaultEpsilon)
    {
        var xDims = FloatInput(x, "BatchNormInference", 2, 5);
        if (!(epsilon > 0)) throw new ArgumentOutOfRangeException(nameof(epsilon), epsilon, "BatchNormInference: epsilon must be > 0.");
        int c = xDims[1];
        (Tensor t, string role)[] vectors = [(gamma, "Scale"), (beta, "B"), (mean, "Mean"), (variance, "Var")];
        foreach (var (t, role) in vectors)
        {
            ArgumentNullException.ThrowIfNull(t, role);
            if (t.Rank != 1 || t.Shape[0] != c)
                throw new ArgumentException($"BatchNormInference: {role} has shape {t.Shape} but '{x}' {Format(xDims)} has {c} channels; expected [{c}].", role);
        }
        string node = NewNodeName("BatchNormalization");
        var inputs = new List<string> { x };
        foreach (var (t, role) in vectors) inputs.Add(Constant(node, role, t.ToHost(), t.Shape.AsSpan()));
        return Track(AddNode(node, "BatchNormalization", inputs, [OnnxProto.Float("epsilon", epsilon)]), xDims);
    }

    /// <summary>
    /// <see cref="Ops.Activation.Forward(ActivationKind, Tensor, float?)"/> as the ONNX op of the same name: ReLU is <c>Relu</c>, LeakyReLU is
    /// <c>LeakyRelu(alpha)</c>, ELU is <c>Elu(alpha)</c>, Sigmoid and Tanh likewise. <paramref name="alpha"/> defaults
    /// to <see cref="Ops.Activation.DefaultAlpha"/>.
    /// </summary>
    public string Activation(string x, ActivationKind kind, float? alpha = null)
    {
        var xDims = FloatInput(x, "Activation", 1);
        float a = alpha ?? Ops.Activation.DefaultAlpha(kind);
        if (!float.IsFinite(a)) throw new ArgumentOutOfRangeException(nameof(alpha), a, $"{kind}: alpha must be finite.");
        var (opType, attributes) = kind switch
        {
            ActivationKind.ReLU => ("Relu", Array.Empty<AttributeProto>()),
            ActivationKind.LeakyReLU => ("LeakyRelu", [OnnxProto.Float("alpha", a)]),
            ActivationKind.ELU => ("Elu", [OnnxProto.Float("alpha", a)]),
            ActivationKind.Sigmoid => ("Sigmoid", []),
            ActivationKind.Tanh => ("Tanh", []),
            _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown activation."),
        };
        return Track(AddNode(NewNodeName(opType), opType, [x], attributes), xDims);
    }

    /// <summary>
    /// <see cref="Ops.Dense.Forward(Tensor, Tensor, Tensor?)"/> as an ONNX <c>Gemm</c> with <c>transB = 1</c>: <paramref name="x"/> <c>[N, In...]</c>
    /// (flattened to <c>[N, In]</c> by a <c>Flatten</c> node when its rank is above 2), <paramref name="w"/> <c>[Out, In]</c>,
    /// <paramref name="bias"/> <c>[Out]</c> or null; output <c>[N, Out]</c>: <c>y = x Wᵀ + b</c>.
    /// </summary>
    public string Dense(string x, Tensor w, Tensor? bias = null)
    {
        ArgumentNullException.ThrowIfNull(w);
        var xDims = FloatInput(x, "Dense", 2);
        int inputs = 1;
        for (int i = 1; i < xDims.Length; i++) inputs *= xDims[i];
        if (w.Rank != 2) throw new ArgumentException($"Dense: w has shape {w.Shape}; expected [Out, In].", nameof(w));
        if (w.Shape[1] != inputs)
            throw new ArgumentException($"Dense: '{x}' {Format(xDims)} has {inputs} features per row but w {w.Shape} expects {w.Shape[1]}.", nameof(w));
        int outputs = w.Shape[0];
        Ops.Convolution.CheckBias(bias, outputs, "Dense");
        if (xDims.Length > 2) x = Flatten(x);
        string node = NewNodeName("Gemm");
        var gemmInputs = new List<string> { x, Constant(node, "W", w.ToHost(), w.Shape.AsSpan()) };
        if (bias is not null) gemmInputs.Add(Constant(node, "B", bias.ToHost(), bias.Shape.AsSpan()));
        return Track(AddNode(node, "Gemm", gemmInputs, [OnnxProto.Int("transB", 1)]), [xDims[0], outputs]);
    }

    /// <summary>
    /// <see cref="Ops.Softmax.Forward"/> as an ONNX <c>Softmax</c> over dimension <paramref name="axis"/> (1: the classes
    /// of <c>[N, K]</c> logits): <c>y = exp(x - max) / sum exp(x - max)</c> along that one dimension (opset 13+ semantics).
    /// </summary>
    public string Softmax(string x, int axis = 1)
    {
        var xDims = FloatInput(x, "Softmax", 1);
        if (axis < -xDims.Length || axis >= xDims.Length)
            throw new ArgumentOutOfRangeException(nameof(axis), axis, $"Softmax: '{x}' {Format(xDims)} has no dimension {axis}.");
        return Track(AddNode(NewNodeName("Softmax"), "Softmax", [x], [OnnxProto.Int("axis", axis)]), xDims);
    }

    /// <summary>Adds a Conv or ConvTranspose node for geometry <paramref name="g"/>; returns its output.</summary>
    private string AddConvolutionNode(string opType, string x, Tensor w, Tensor? bias, ConvGeometry g)
    {
        string node = NewNodeName(opType);
        var inputs = new List<string> { x, Constant(node, "W", CrossCorrelationKernel(w, g.Mode), w.Shape.AsSpan()) };
        if (bias is not null) inputs.Add(Constant(node, "B", bias.ToHost(), bias.Shape.AsSpan()));
        AttributeProto[] attributes =
        [
            OnnxProto.Ints("kernel_shape", g.KernelSize),
            OnnxProto.Ints("pads", [.. g.Padding, .. g.Padding]),
            OnnxProto.Ints("strides", g.Stride),
            OnnxProto.Ints("dilations", g.Dilation),
            OnnxProto.Int("group", g.Groups),
        ];
        return AddNode(node, opType, inputs, attributes);
    }

    /// <summary>
    /// The filter's values for ONNX's cross-correlation: as stored in CrossCorrelation mode; flipped in every spatial
    /// dimension in Convolution mode. Flipping every dimension of a row-major <c>K1 x ... x Kd</c> block maps linear
    /// index l to <c>volume - 1 - l</c>, so each <c>[o, c]</c> kernel block is simply reversed.
    /// </summary>
    private static float[] CrossCorrelationKernel(Tensor w, ConvolutionMode mode)
    {
        var data = w.ToHost();
        if (mode == ConvolutionMode.Convolution)
        {
            int volume = w.Shape.SizeFrom(2);
            for (int start = 0; start < data.Length; start += volume)
                data.AsSpan(start, volume).Reverse();
        }
        return data;
    }
}
