using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ConvNet.Onnx;
using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Transforms;

/// <summary>
/// Cross-channel local response normalization of each row <c>[C, X...]</c> (AlexNet; cuDNN's and ONNX's formula):
/// <code>y[c,i] = x[c,i] / (K + Alpha/Size * sum of x[c',i]^2 over the Size channels around c)^Beta</code>
/// It is <see cref="Lrn.Forward(Tensor, LrnOptions?)"/> applied to mini-batches of rows; the shape does not change.
/// </summary>
/// <remarks>
/// An even <see cref="LrnOptions.Size"/> runs, but cannot be saved: ONNX Runtime's LRN, which runs the saved model,
/// accepts odd sizes only, so <c>Model.Save</c> throws <see cref="NotSupportedException"/> saying so.
/// </remarks>
public sealed class LrnTransformer : TensorTransformer
{
    private const string Name = "LocalResponseNormalization";

    internal LrnTransformer(LrnEstimator.Options options, Shape inputShape, VectorDataViewType inputType)
        : base(Name, options, inputShape, inputShape, inputType)
    {
        Lrn = options.Lrn;
    }

    /// <summary>Size, Alpha, Beta and K.</summary>
    public LrnOptions Lrn { get; }

    private protected override RowRank Rank => RowRank.Spatial;

    private protected override Tensor Forward(Tensor x) => Ops.Lrn.Forward(x, Lrn);

    // ONNX's LRN allows an even size (its window is floor/ceil of (size-1)/2 either side, as ours), but ONNX Runtime's
    // CPU kernel (1.31) refuses one when the session starts, so a saved model with an even size would never load.
    private protected override string? UnsavableBecause => Lrn.Size % 2 == 0
        ? $"Size = {Lrn.Size} is even and ONNX Runtime's LRN, which runs the saved model, accepts odd sizes only. Use an odd Size to save the pipeline (the transformer itself runs with any size; ExportOnnx still writes the graph)."
        : null;

    private protected override string AddOnnxNodes(OnnxGraphBuilder builder, string x)
    {
        // ONNX Runtime's CPU LRN takes [N, C, H, W] only. LRN mixes channels at one position and never positions,
        // so [1, C, X...] can be read as [1, C, 1, prod(X)].
        if (InputShape.Rank != 3) x = builder.Reshape(x, [1, InputShape[0], 1, InputShape.SizeFrom(1)]);
        return builder.Lrn(x, Lrn);
    }
}

/// <summary>
/// Estimator for <see cref="LrnTransformer"/>: cross-channel local response normalization. Created by
/// <see cref="ConvNetCatalog.NormalizeLocalResponse(TransformsCatalog, string, string, LrnOptions, int[])"/>.
/// </summary>
/// <remarks>
/// <para>Estimator characteristics:</para>
/// <list type="table">
/// <item><term>Does this estimator need to look at the data to train its parameters?</term><description>No (only the schema, for the row shape)</description></item>
/// <item><term>Input column data type</term><description>Known-size vector of <see cref="float"/>, rows <c>[C, X]</c>, <c>[C, H, W]</c> or <c>[C, D, H, W]</c></description></item>
/// <item><term>Output column data type</term><description>The input's type: vector of <see cref="float"/> with the same dimensions</description></item>
/// <item><term>Required NuGet in addition to Microsoft.ML</term><description>MLNet.ConvNet.Transforms (to fit and run); Microsoft.ML.OnnxTransformer and ONNX Runtime (to load a saved model)</description></item>
/// <item><term>Exportable to ONNX</term><description>Yes (LRN with bias = K, on a 4-D view)</description></item>
/// <item><term>Backends</term><description>Options Backend (Auto, Cpu, Cuda), DeviceIndex, MaxThreads through BackendFactory; the fitted transformer's Backend says which runs</description></item>
/// </list>
/// </remarks>
public sealed class LrnEstimator : TensorEstimator<LrnTransformer>
{
    /// <summary>The defaults the options and the catalog method read.</summary>
    public static class Defaults
    {
        /// <summary>Rows per engine call.</summary>
        public const int BatchSize = TensorTransformDefaults.BatchSize;
        /// <summary>Size 5, Alpha 1e-4, Beta 0.75, K 2 (cuDNN's defaults).</summary>
        public static LrnOptions Lrn => LrnOptions.Default;
    }

    /// <summary>Options of <see cref="LrnEstimator"/>.</summary>
    public sealed record Options : TensorTransformOptions
    {
        /// <summary>Lrn = <see cref="Defaults.Lrn"/>: Size (1..16), Alpha, Beta and K.</summary>
        public LrnOptions Lrn { get; set; } = Defaults.Lrn;
    }

    private readonly Options _options;

    /// <summary>Checks the options.</summary>
    public LrnEstimator(Options options) : base("LocalResponseNormalization", options)
    {
        _options = options with { };
        var lrn = options.Lrn ?? throw new ArgumentNullException(nameof(options), "LocalResponseNormalization: Options.Lrn is null; leave it at its default.");
        lrn.Validate();
    }

    /// <summary>Reads the row shape from <paramref name="input"/>'s schema.</summary>
    public override LrnTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var shape = RowShape(input.Schema, _options, RowRank.Spatial, out var type);
        return new LrnTransformer(_options, shape, type);
    }
}
