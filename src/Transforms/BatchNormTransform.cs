using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ConvNet.Onnx;
using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Transforms;

/// <summary>
/// Inference-mode batch normalization of each row, per channel: for rows <c>[C, X...]</c> every position of channel c,
/// for flat rows <c>[F]</c> each feature on its own:
/// <code>y = scale[c] (x - mean[c]) / sqrt(variance[c] + epsilon) + bias[c]</code>
/// It is <see cref="BatchNorm.ForwardInference(Tensor, Tensor, Tensor, Tensor, Tensor, float)"/> applied to mini-batches of rows; the shape does not change.
/// </summary>
/// <remarks>
/// The saved model runs ONNX Runtime's BatchNormalization, which folds the statistics into <c>x * a + b</c>. When a
/// channel's mean is large against its spread, that form loses digits the engine keeps (it subtracts the mean first):
/// the error is about one float32 ulp of <c>x * a</c>, for example 2e-5 on outputs near 1 for inputs near 200 with
/// standard deviation 0.6. Center such data first (or compare with a tolerance relative to the input's magnitude).
/// </remarks>
public sealed class BatchNormTransformer : TensorTransformer
{
    private const string Name = "BatchNormalization";
    private readonly Tensor _mean, _variance, _scale, _bias;

    internal BatchNormTransformer(BatchNormEstimator.Options options, float[] mean, float[] variance, Shape inputShape, VectorDataViewType inputType)
        : base(Name, options, inputShape, inputShape, inputType)
    {
        int c = inputShape[0];
        var shape = new Shape(c);
        _mean = OnBackend(mean, shape);
        _variance = OnBackend(variance, shape);
        _scale = OnBackend(options.Scale ?? Enumerable.Repeat(1f, c).ToArray(), shape);
        _bias = OnBackend(options.Bias ?? new float[c], shape);
        Epsilon = options.Epsilon;
    }

    /// <summary>Added to the variance before the square root.</summary>
    public float Epsilon { get; }

    /// <summary>A copy of the per-channel means (given, or fitted from the data).</summary>
    public float[] GetMean() => _mean.ToHost();

    /// <summary>A copy of the per-channel variances (given, or fitted from the data: the biased variance).</summary>
    public float[] GetVariance() => _variance.ToHost();

    /// <summary>A copy of the per-channel scales (gamma).</summary>
    public float[] GetScale() => _scale.ToHost();

    /// <summary>A copy of the per-channel offsets (beta).</summary>
    public float[] GetBias() => _bias.ToHost();

    private protected override RowRank Rank => RowRank.ChannelsOrSpatial;

    private protected override Tensor Forward(Tensor x) => BatchNorm.ForwardInference(x, _scale, _bias, _mean, _variance, Epsilon);

    private protected override string AddOnnxNodes(OnnxGraphBuilder builder, string x) =>
        builder.BatchNormInference(x, _scale, _bias, _mean, _variance, Epsilon);
}

/// <summary>
/// Estimator for <see cref="BatchNormTransformer"/>: batch normalization for inference, with given statistics (from a
/// trained network) or statistics fitted per channel from the data. Created by
/// <see cref="ConvNetCatalog.ApplyBatchNormalization(TransformsCatalog, string, string, float[], float[], float[], float[], float, int[])"/>.
/// </summary>
/// <remarks>
/// <para>Estimator characteristics:</para>
/// <list type="table">
/// <item><term>Does this estimator need to look at the data to train its parameters?</term><description>Only when Mean and Variance are not given: one pass computes them per channel</description></item>
/// <item><term>Input column data type</term><description>Known-size vector of <see cref="float"/>, rows <c>[F]</c>, <c>[C, X]</c>, <c>[C, H, W]</c> or <c>[C, D, H, W]</c></description></item>
/// <item><term>Output column data type</term><description>The input's type: vector of <see cref="float"/> with the same dimensions</description></item>
/// <item><term>Required NuGet in addition to Microsoft.ML</term><description>MLNet.ConvNet.Transforms (to fit and run); Microsoft.ML.OnnxTransformer and ONNX Runtime (to load a saved model)</description></item>
/// <item><term>Exportable to ONNX</term><description>Yes (BatchNormalization, inference form)</description></item>
/// <item><term>Backends</term><description>Options Backend (Auto, Cpu, Cuda), DeviceIndex, MaxThreads through BackendFactory; the fitted transformer's Backend says which runs</description></item>
/// </list>
/// <para>Fitted statistics are the mean and the biased (population) variance of channel c over every row and position,
/// accumulated in double, so the fitted transform maps the training data to mean 0 and variance 1 per channel (before
/// Scale and Bias). A NaN or infinite value met while fitting throws, naming the column and the row: it would make
/// the channel's statistics, and so every output of that channel, NaN.</para>
/// </remarks>
public sealed class BatchNormEstimator : TensorEstimator<BatchNormTransformer>
{
    /// <summary>The defaults the options and the catalog method read.</summary>
    public static class Defaults
    {
        /// <summary>Rows per engine call.</summary>
        public const int BatchSize = TensorTransformDefaults.BatchSize;
        /// <summary>1e-5 (Knet, PyTorch, cuDNN).</summary>
        public const float Epsilon = BatchNorm.DefaultEpsilon;
    }

    /// <summary>Options of <see cref="BatchNormEstimator"/>.</summary>
    public sealed record Options : TensorTransformOptions
    {
        /// <summary>Mean = null: fitted from the data (give Variance too, or neither); else one value per channel.</summary>
        public float[]? Mean { get; set; }
        /// <summary>Variance = null: fitted from the data (give Mean too, or neither); else one value &gt;= 0 per channel.</summary>
        public float[]? Variance { get; set; }
        /// <summary>Scale = null: 1 for every channel (gamma).</summary>
        public float[]? Scale { get; set; }
        /// <summary>Bias = null: 0 for every channel (beta).</summary>
        public float[]? Bias { get; set; }
        /// <summary>Epsilon = 1e-5: added to the variance; must be &gt; 0.</summary>
        public float Epsilon { get; set; } = Defaults.Epsilon;
    }

    private readonly Options _options;

    /// <summary>Checks the options: Mean and Variance both or neither, equal lengths, finite values, Epsilon &gt; 0; copies the arrays.</summary>
    public BatchNormEstimator(Options options) : base("BatchNormalization", options)
    {
        _options = options with
        {
            Mean = options.Mean?.ToArray(), Variance = options.Variance?.ToArray(),
            Scale = options.Scale?.ToArray(), Bias = options.Bias?.ToArray(),
        };
        if ((options.Mean is null) != (options.Variance is null))
            throw new ArgumentException("BatchNormalization: give both Mean and Variance, or neither to fit them from the data.", nameof(options));
        if (!(options.Epsilon > 0) || float.IsInfinity(options.Epsilon))
            throw new ArgumentOutOfRangeException(nameof(options), options.Epsilon, "BatchNormalization: Epsilon must be finite and > 0.");
        (string name, float[]? values)[] vectors = [("Mean", options.Mean), ("Variance", options.Variance), ("Scale", options.Scale), ("Bias", options.Bias)];
        var given = vectors.Where(v => v.values is not null).ToArray();
        foreach (var (name, values) in given)
        {
            if (values!.Length != given[0].values!.Length)
                throw new ArgumentException($"BatchNormalization: {name} has {values.Length} values but {given[0].name} has {given[0].values!.Length}; give one per channel.", nameof(options));
            if (values.Any(v => !float.IsFinite(v)))
                throw new ArgumentException($"BatchNormalization: {name} holds a NaN or infinite value.", nameof(options));
        }
        if (options.Variance is { } variance && variance.Any(v => v < 0))
            throw new ArgumentOutOfRangeException(nameof(options), "BatchNormalization: Variance holds a negative value.");
    }

    /// <summary>
    /// Reads the row shape from <paramref name="input"/>'s schema, checks the given vectors have one value per channel,
    /// and, when Mean and Variance are not given, computes them from the data in one pass.
    /// </summary>
    public override BatchNormTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var shape = RowShape(input.Schema, _options, RowRank.ChannelsOrSpatial, out var type);
        int c = shape[0];
        foreach (var (name, values) in new[] { ("Mean", _options.Mean), ("Variance", _options.Variance), ("Scale", _options.Scale), ("Bias", _options.Bias) })
            if (values is not null && values.Length != c)
                throw new ArgumentException($"{TransformName}: {name} has {values.Length} values but column '{InputColumnName}' with row shape {shape} has {c} channels.", nameof(input));
        var (mean, variance) = _options.Mean is not null ? (_options.Mean, _options.Variance!) : FitStatistics(input, shape);
        return new BatchNormTransformer(_options, mean, variance, shape, type);
    }

    /// <summary>Per-channel mean and biased variance over every row and position (Core's <see cref="BatchNormStatistics"/>).</summary>
    private (float[] mean, float[] variance) FitStatistics(IDataView input, Shape shape)
    {
        var statistics = new BatchNormStatistics(shape);
        var column = input.Schema[InputColumnName];
        var row = new float[shape.Length];
        int inner = shape.SizeFrom(1);
        VBuffer<float> buffer = default;
        using (var cursor = input.GetRowCursor([column]))
        {
            var getter = cursor.GetGetter<VBuffer<float>>(column);
            while (cursor.MoveNext())
            {
                getter(ref buffer);
                buffer.CopyTo(row);
                // Checked here to name the column and the row in the message.
                int bad = BatchNormStatistics.IndexOfNonFinite(row);
                if (bad >= 0)
                    throw new InvalidOperationException($"{TransformName}: column '{InputColumnName}' row {statistics.Rows} holds {row[bad]} (channel {bad / inner}); fitted statistics would be NaN. Give Mean and Variance, or replace missing values first.");
                statistics.Add(row);
            }
        }
        if (statistics.Rows == 0)
            throw new InvalidOperationException($"{TransformName}: the data has no rows to fit the statistics of column '{InputColumnName}' from; give Mean and Variance.");
        return statistics.Result();
    }
}
