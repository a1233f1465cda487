using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ConvNet.Onnx;
using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Transforms;

/// <summary>
/// Convolves each row <c>[C, X...]</c> of a vector column with a given filter bank <c>[O, C/groups, K...]</c> (plus an
/// optional bias <c>[O]</c>), writing rows <c>[O, Y...]</c>:
/// <code>Y = 1 + floor((X + 2P - ((K-1)D + 1)) / S)</code>
/// It is <see cref="Ops.Convolution.Forward(Tensor, Tensor, Tensor?, ConvolutionOptions?)"/> applied to mini-batches of rows; see that method for the formula.
/// </summary>
public sealed class ConvolutionTransformer : TensorTransformer
{
    private const string Name = "Convolution";
    private readonly Tensor _filter;
    private readonly Tensor? _bias;

    internal ConvolutionTransformer(ConvolutionEstimator.Options options, float[] filter, Shape filterShape, float[]? bias, Shape inputShape, VectorDataViewType inputType)
        : base(Name, options, inputShape, OutputRowShape(options.SourceColumnName, inputShape, filterShape, options.Convolution), inputType)
    {
        _filter = OnBackend(filter, filterShape);
        _bias = bias is null ? null : OnBackend(bias, new Shape(bias.Length));
        Convolution = options.Convolution;
    }

    /// <summary>Padding, stride, dilation, groups and mode.</summary>
    public ConvolutionOptions Convolution { get; }

    /// <summary>The filter bank's shape <c>[O, C/groups, K...]</c>.</summary>
    public Shape FilterShape => _filter.Shape;

    /// <summary>A copy of the filter bank, row-major <c>[O, C/groups, K...]</c>.</summary>
    public float[] GetFilter() => _filter.ToHost();

    /// <summary>A copy of the bias <c>[O]</c>, or null when there is none.</summary>
    public float[]? GetBias() => _bias?.ToHost();

    private protected override RowRank Rank => RowRank.Spatial;

    private protected override Tensor Forward(Tensor x) => Ops.Convolution.Forward(x, _filter, _bias, Convolution);

    // The builder flips the kernel in Convolution mode: ONNX Conv is a cross-correlation.
    private protected override string AddOnnxNodes(OnnxGraphBuilder builder, string x) => builder.Convolution(x, _filter, _bias, Convolution);

    private static Shape OutputRowShape(string column, Shape inputShape, Shape filter, ConvolutionOptions options)
    {
        try
        {
            var g = ConvGeometry.Create(new Shape([1, .. inputShape.AsSpan()]), filter, options);
            return new Shape(g.Output.ToArray()[1..]);
        }
        catch (ArgumentException e) { throw ShapeError(Name, column, inputShape, e); }
    }
}

/// <summary>
/// Estimator for <see cref="ConvolutionTransformer"/>: convolution of image-like rows with a given filter bank
/// (hand-designed filters, or weights taken from a trained network). Created by
/// <see cref="ConvNetCatalog.ApplyConvolution(TransformsCatalog, string, Tensor, Tensor, string, ConvolutionOptions, int[])"/>.
/// </summary>
/// <remarks>
/// <para>Estimator characteristics:</para>
/// <list type="table">
/// <item><term>Does this estimator need to look at the data to train its parameters?</term><description>No (only the schema, for the row shape)</description></item>
/// <item><term>Input column data type</term><description>Known-size vector of <see cref="float"/>, rows <c>[C, X]</c>, <c>[C, H, W]</c> or <c>[C, D, H, W]</c></description></item>
/// <item><term>Output column data type</term><description>Known-size vector of <see cref="float"/> with dimensions <c>[O, Y...]</c></description></item>
/// <item><term>Required NuGet in addition to Microsoft.ML</term><description>MLNet.ConvNet.Transforms (to fit and run); Microsoft.ML.OnnxTransformer and ONNX Runtime (to load a saved model)</description></item>
/// <item><term>Exportable to ONNX</term><description>Yes (<see cref="TensorTransformer.ExportOnnx"/>; Conv, kernel flipped in Convolution mode)</description></item>
/// <item><term>Backends</term><description>Options Backend (Auto, Cpu, Cuda), DeviceIndex, MaxThreads through BackendFactory; the fitted transformer's Backend says which runs</description></item>
/// </list>
/// <para>The filter's dimension 1 must equal the input's channels divided by <see cref="ConvolutionOptions.Groups"/>;
/// <see cref="Fit"/> checks that and the spatial sizes and throws naming the column and both shapes.</para>
/// </remarks>
public sealed class ConvolutionEstimator : TensorEstimator<ConvolutionTransformer>
{
    /// <summary>The defaults the options and the catalog method read.</summary>
    public static class Defaults
    {
        /// <summary>Rows per engine call.</summary>
        public const int BatchSize = TensorTransformDefaults.BatchSize;
        /// <summary>No padding, stride 1, dilation 1, one group, kernel flipped (the seed's convention).</summary>
        public static ConvolutionOptions Convolution => ConvolutionOptions.Default;
    }

    /// <summary>Options of <see cref="ConvolutionEstimator"/>.</summary>
    public sealed record Options : TensorTransformOptions
    {
        /// <summary>The filter bank <c>[O, C/groups, K...]</c>, one K per spatial dimension of a row. Required; copied.</summary>
        public Tensor? Filter { get; set; }
        /// <summary>Bias = null: none; else <c>[O]</c>, added to every position of output channel o. Copied.</summary>
        public Tensor? Bias { get; set; }
        /// <summary>Convolution = <see cref="Defaults.Convolution"/>: padding, stride, dilation, groups and mode (every engine option).</summary>
        public ConvolutionOptions Convolution { get; set; } = Defaults.Convolution;
    }

    private readonly Options _options;
    private readonly float[] _filter;
    private readonly Shape _filterShape;
    private readonly float[]? _bias;

    /// <summary>Checks the options (filter rank, bias length, option values) and copies the weights.</summary>
    public ConvolutionEstimator(Options options) : base("Convolution", options)
    {
        _options = options with { };
        var filter = options.Filter ?? throw new ArgumentNullException(nameof(options), "Convolution: Options.Filter is required: a filter bank [O, C/groups, K...].");
        if (filter.Rank < 3 || filter.Rank > 5)
            throw new ArgumentException($"Convolution: Filter has shape {filter.Shape}; expected [O, C/groups, K...] with 1 to 3 kernel dimensions.", nameof(options));
        if (options.Bias is { } bias && (bias.Rank != 1 || bias.Shape[0] != filter.Shape[0]))
            throw new ArgumentException($"Convolution: Bias has shape {bias.Shape} but Filter {filter.Shape} has {filter.Shape[0]} output channels; expected [{filter.Shape[0]}].", nameof(options));
        var conv = options.Convolution ?? throw new ArgumentNullException(nameof(options), "Convolution: Options.Convolution is null; leave it at its default.");
        if (!Enum.IsDefined(conv.Mode)) throw new ArgumentOutOfRangeException(nameof(options), conv.Mode, "Convolution: unknown Mode.");
        if (conv.Groups < 1) throw new ArgumentOutOfRangeException(nameof(options), conv.Groups, "Convolution: Groups must be at least 1.");
        // Host copies: the transformer puts them on the backend its options choose when it is fitted.
        _filter = filter.ToHost();
        _filterShape = filter.Shape;
        _bias = options.Bias?.ToHost();
    }

    /// <summary>Reads the row shape from <paramref name="input"/>'s schema and checks it against the filter and options.</summary>
    public override ConvolutionTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var shape = RowShape(input.Schema, _options, RowRank.Spatial, out var type);
        return new ConvolutionTransformer(_options, _filter, _filterShape, _bias, shape, type);
    }
}
