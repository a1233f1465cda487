using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ConvNet.Onnx;
using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Transforms;

/// <summary>
/// An element-wise non-linearity (ReLU, LeakyReLU, ELU, Sigmoid, Tanh) on every value of a vector column; the shape
/// does not change. It is <see cref="Activation.Forward(ActivationKind, Tensor, float?)"/> applied to mini-batches of rows.
/// </summary>
public sealed class ActivationTransformer : TensorTransformer
{
    private const string Name = "Activation";

    internal ActivationTransformer(ActivationEstimator.Options options, Shape inputShape, VectorDataViewType inputType)
        : base(Name, options, inputShape, inputShape, inputType)
    {
        Kind = options.Kind;
        Alpha = options.Alpha ?? Activation.DefaultAlpha(options.Kind);
    }

    /// <summary>The function applied.</summary>
    public ActivationKind Kind { get; }

    /// <summary>The slope (LeakyReLU) or scale (ELU) for negative inputs; unused by the others.</summary>
    public float Alpha { get; }

    private protected override RowRank Rank => RowRank.Any;

    private protected override Tensor Forward(Tensor x) => Activation.Forward(Kind, x, Alpha);

    private protected override string AddOnnxNodes(OnnxGraphBuilder builder, string x) => builder.Activation(x, Kind, Alpha);
}

/// <summary>
/// Estimator for <see cref="ActivationTransformer"/>. Created by
/// <see cref="ConvNetCatalog.ApplyActivation(TransformsCatalog, string, ActivationKind, string, Nullable{float}, int[])"/>.
/// </summary>
/// <remarks>
/// <para>Estimator characteristics:</para>
/// <list type="table">
/// <item><term>Does this estimator need to look at the data to train its parameters?</term><description>No</description></item>
/// <item><term>Input column data type</term><description>Known-size vector of <see cref="float"/>, any dimensions (a flat vector too)</description></item>
/// <item><term>Output column data type</term><description>The input's type: vector of <see cref="float"/> with the same dimensions</description></item>
/// <item><term>Required NuGet in addition to Microsoft.ML</term><description>MLNet.ConvNet.Transforms (to fit and run); Microsoft.ML.OnnxTransformer and ONNX Runtime (to load a saved model)</description></item>
/// <item><term>Exportable to ONNX</term><description>Yes (Relu, LeakyRelu, Elu, Sigmoid, Tanh)</description></item>
/// <item><term>Backends</term><description>Options Backend (Auto, Cpu, Cuda), DeviceIndex, MaxThreads through BackendFactory; the fitted transformer's Backend says which runs</description></item>
/// </list>
/// </remarks>
public sealed class ActivationEstimator : TensorEstimator<ActivationTransformer>
{
    /// <summary>The defaults the options and the catalog method read.</summary>
    public static class Defaults
    {
        /// <summary>Rows per engine call.</summary>
        public const int BatchSize = TensorTransformDefaults.BatchSize;
        /// <summary>ReLU.</summary>
        public const ActivationKind Kind = ActivationKind.ReLU;
    }

    /// <summary>Options of <see cref="ActivationEstimator"/>.</summary>
    public sealed record Options : TensorTransformOptions
    {
        /// <summary>Kind = ReLU.</summary>
        public ActivationKind Kind { get; set; } = Defaults.Kind;
        /// <summary>Alpha = null: 0.01 for LeakyReLU, 1 for ELU (<see cref="Activation.DefaultAlpha"/>); unused by the others.</summary>
        public float? Alpha { get; set; }
    }

    private readonly Options _options;

    /// <summary>Checks the options.</summary>
    public ActivationEstimator(Options options) : base("Activation", options)
    {
        _options = options with { };
        if (!Enum.IsDefined(options.Kind)) throw new ArgumentOutOfRangeException(nameof(options), options.Kind, "Activation: unknown Kind.");
        if (options.Alpha is { } a && !float.IsFinite(a)) throw new ArgumentOutOfRangeException(nameof(options), a, "Activation: Alpha must be finite.");
    }

    /// <summary>Reads the row shape from <paramref name="input"/>'s schema.</summary>
    public override ActivationTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var shape = RowShape(input.Schema, _options, RowRank.Any, out var type);
        return new ActivationTransformer(_options, shape, type);
    }
}
