using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ConvNet.Onnx;
using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Transforms;

/// <summary>
/// Max or average pooling of each row <c>[C, X...]</c> of a vector column, channel by channel, writing rows
/// <c>[C, Y...]</c>:
/// <code>Y = 1 + floor((X + 2P - W) / S)</code>
/// It is <see cref="Ops.Pooling.Forward(Tensor, PoolingOptions?)"/> applied to mini-batches of rows; padded cells never win a max.
/// </summary>
public sealed class PoolingTransformer : TensorTransformer
{
    private const string Name = "Pooling";

    internal PoolingTransformer(PoolingEstimator.Options options, Shape inputShape, VectorDataViewType inputType)
        : base(Name, options, inputShape, OutputRowShape(options.SourceColumnName, inputShape, options.Pooling), inputType)
    {
        Pooling = options.Pooling;
    }

    /// <summary>Window, padding, stride and mode.</summary>
    public PoolingOptions Pooling { get; }

    private protected override RowRank Rank => RowRank.Spatial;

    private protected override Tensor Forward(Tensor x) => Ops.Pooling.Forward(x, Pooling);

    private protected override string AddOnnxNodes(OnnxGraphBuilder builder, string x) => builder.Pooling(x, Pooling);

    private static Shape OutputRowShape(string column, Shape inputShape, PoolingOptions options)
    {
        try
        {
            var g = PoolGeometry.Create(new Shape([1, .. inputShape.AsSpan()]), options);
            return new Shape(g.Output.ToArray()[1..]);
        }
        catch (ArgumentException e) { throw ShapeError(Name, column, inputShape, e); }
    }
}

/// <summary>
/// Estimator for <see cref="PoolingTransformer"/>: max pooling, or average pooling counting or not counting padded
/// cells, over 1-D, 2-D or 3-D windows. Created by
/// <see cref="ConvNetCatalog.ApplyPooling(TransformsCatalog, string, string, PoolingOptions, int[])"/>.
/// </summary>
/// <remarks>
/// <para>Estimator characteristics:</para>
/// <list type="table">
/// <item><term>Does this estimator need to look at the data to train its parameters?</term><description>No (only the schema, for the row shape)</description></item>
/// <item><term>Input column data type</term><description>Known-size vector of <see cref="float"/>, rows <c>[C, X]</c>, <c>[C, H, W]</c> or <c>[C, D, H, W]</c></description></item>
/// <item><term>Output column data type</term><description>Known-size vector of <see cref="float"/> with dimensions <c>[C, Y...]</c></description></item>
/// <item><term>Required NuGet in addition to Microsoft.ML</term><description>MLNet.ConvNet.Transforms (to fit and run); Microsoft.ML.OnnxTransformer and ONNX Runtime (to load a saved model)</description></item>
/// <item><term>Exportable to ONNX</term><description>Yes (MaxPool, or AveragePool with count_include_pad)</description></item>
/// <item><term>Backends</term><description>Options Backend (Auto, Cpu, Cuda), DeviceIndex, MaxThreads through BackendFactory; the fitted transformer's Backend says which runs</description></item>
/// </list>
/// </remarks>
public sealed class PoolingEstimator : TensorEstimator<PoolingTransformer>
{
    /// <summary>The defaults the options and the catalog method read.</summary>
    public static class Defaults
    {
        /// <summary>Rows per engine call.</summary>
        public const int BatchSize = TensorTransformDefaults.BatchSize;
        /// <summary>Window 2, stride = window, no padding, max.</summary>
        public static PoolingOptions Pooling => PoolingOptions.Default;
    }

    /// <summary>Options of <see cref="PoolingEstimator"/>.</summary>
    public sealed record Options : TensorTransformOptions
    {
        /// <summary>Pooling = <see cref="Defaults.Pooling"/>: window, padding (smaller than the window), stride and mode (every engine option).</summary>
        public PoolingOptions Pooling { get; set; } = Defaults.Pooling;
    }

    private readonly Options _options;

    /// <summary>Checks the options.</summary>
    public PoolingEstimator(Options options) : base("Pooling", options)
    {
        _options = options with { };
        var pooling = options.Pooling ?? throw new ArgumentNullException(nameof(options), "Pooling: Options.Pooling is null; leave it at its default.");
        if (!Enum.IsDefined(pooling.Mode)) throw new ArgumentOutOfRangeException(nameof(options), pooling.Mode, "Pooling: unknown Mode.");
    }

    /// <summary>Reads the row shape from <paramref name="input"/>'s schema and checks it against the window.</summary>
    public override PoolingTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var shape = RowShape(input.Schema, _options, RowRank.Spatial, out var type);
        return new PoolingTransformer(_options, shape, type);
    }
}
