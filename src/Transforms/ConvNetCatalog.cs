using Microsoft.ML;
using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Transforms;

/// <summary>
/// Catalog methods for the convolutional-network transforms: <c>mlContext.Transforms.ApplyConvolution(...)</c> and the
/// others chain with ML.NET's own transforms (<c>LoadImages</c>, <c>ResizeImages</c>, <c>ExtractPixels</c>, ...).
/// </summary>
/// <remarks>
/// Every method reads a known-size vector-of-Single column whose dimensions give the row shape <c>[C, X...]</c> (or a
/// flat vector plus <c>inputShape</c>) and writes a vector column whose dimensions are the new row shape, so the
/// transforms chain. <c>inputColumnName = null</c> reads and replaces <c>outputColumnName</c>.
/// Runnable examples: docs/transforms/*.md.
/// </remarks>
public static class ConvNetCatalog
{
    /// <summary>
    /// Convolves each row with <paramref name="filter"/> <c>[O, C/groups, K...]</c> (plus <paramref name="bias"/> <c>[O]</c>):
    /// rows <c>[C, X...]</c> become <c>[O, Y...]</c> with <c>Y = 1 + floor((X + 2P - ((K-1)D + 1)) / S)</c>.
    /// </summary>
    /// <param name="catalog">The transforms catalog.</param>
    /// <param name="outputColumnName">The column to write.</param>
    /// <param name="filter">The filter bank (copied); in the default Convolution mode it is flipped as it slides, as in the seed.</param>
    /// <param name="bias">Bias per output channel, or null.</param>
    /// <param name="inputColumnName">The column to read; null reads <paramref name="outputColumnName"/>.</param>
    /// <param name="options">Padding, stride, dilation, groups and mode; null for the defaults (none, 1, 1, 1, Convolution).</param>
    /// <param name="inputShape">The row shape <c>[C, X...]</c> of a flat vector column; null to use the column type's dimensions.</param>
    /// <example>docs/transforms/Convolution.md</example>
    public static ConvolutionEstimator ApplyConvolution(this TransformsCatalog catalog, string outputColumnName, Tensor filter,
        Tensor? bias = null, string? inputColumnName = null, ConvolutionOptions? options = null, int[]? inputShape = null)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        return new ConvolutionEstimator(new ConvolutionEstimator.Options
        {
            OutputColumnName = outputColumnName, InputColumnName = inputColumnName, InputShape = inputShape,
            Filter = filter, Bias = bias, Convolution = options ?? ConvolutionEstimator.Defaults.Convolution,
        });
    }

    /// <summary>Convolution with every option, batch size included.</summary>
    public static ConvolutionEstimator ApplyConvolution(this TransformsCatalog catalog, ConvolutionEstimator.Options options)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        return new ConvolutionEstimator(options);
    }

    /// <summary>
    /// Max or average pooling of each row, channel by channel: <c>[C, X...]</c> becomes <c>[C, Y...]</c> with
    /// <c>Y = 1 + floor((X + 2P - W) / S)</c>.
    /// </summary>
    /// <param name="catalog">The transforms catalog.</param>
    /// <param name="outputColumnName">The column to write.</param>
    /// <param name="inputColumnName">The column to read; null reads <paramref name="outputColumnName"/>.</param>
    /// <param name="options">Window, padding, stride and mode; null for window 2, stride 2, no padding, max.</param>
    /// <param name="inputShape">The row shape <c>[C, X...]</c> of a flat vector column; null to use the column type's dimensions.</param>
    /// <example>docs/transforms/Pooling.md</example>
    public static PoolingEstimator ApplyPooling(this TransformsCatalog catalog, string outputColumnName, string? inputColumnName = null,
        PoolingOptions? options = null, int[]? inputShape = null)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        return new PoolingEstimator(new PoolingEstimator.Options
        {
            OutputColumnName = outputColumnName, InputColumnName = inputColumnName, InputShape = inputShape,
            Pooling = options ?? PoolingEstimator.Defaults.Pooling,
        });
    }

    /// <summary>Pooling with every option, batch size included.</summary>
    public static PoolingEstimator ApplyPooling(this TransformsCatalog catalog, PoolingEstimator.Options options)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        return new PoolingEstimator(options);
    }

    /// <summary>
    /// Cross-channel local response normalization of each row <c>[C, X...]</c>:
    /// <c>y = x / (K + Alpha/Size * sum of x^2 over Size neighbouring channels)^Beta</c>; the shape does not change.
    /// </summary>
    /// <param name="catalog">The transforms catalog.</param>
    /// <param name="outputColumnName">The column to write.</param>
    /// <param name="inputColumnName">The column to read; null reads <paramref name="outputColumnName"/>.</param>
    /// <param name="options">Size, Alpha, Beta, K; null for 5, 1e-4, 0.75, 2.</param>
    /// <param name="inputShape">The row shape <c>[C, X...]</c> of a flat vector column; null to use the column type's dimensions.</param>
    /// <example>docs/transforms/LocalResponseNormalization.md</example>
    public static LrnEstimator NormalizeLocalResponse(this TransformsCatalog catalog, string outputColumnName, string? inputColumnName = null,
        LrnOptions? options = null, int[]? inputShape = null)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        return new LrnEstimator(new LrnEstimator.Options
        {
            OutputColumnName = outputColumnName, InputColumnName = inputColumnName, InputShape = inputShape,
            Lrn = options ?? LrnEstimator.Defaults.Lrn,
        });
    }

    /// <summary>Local response normalization with every option, batch size included.</summary>
    public static LrnEstimator NormalizeLocalResponse(this TransformsCatalog catalog, LrnEstimator.Options options)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        return new LrnEstimator(options);
    }

    /// <summary>
    /// Batch normalization for inference, per channel: <c>y = scale (x - mean) / sqrt(variance + epsilon) + bias</c>.
    /// With <paramref name="mean"/> and <paramref name="variance"/> null, <c>Fit</c> computes them from the data.
    /// </summary>
    /// <param name="catalog">The transforms catalog.</param>
    /// <param name="outputColumnName">The column to write.</param>
    /// <param name="inputColumnName">The column to read; null reads <paramref name="outputColumnName"/>.</param>
    /// <param name="mean">Per-channel means (from a trained network), or null to fit them.</param>
    /// <param name="variance">Per-channel variances, or null to fit them.</param>
    /// <param name="scale">Per-channel gamma; null for 1.</param>
    /// <param name="bias">Per-channel beta; null for 0.</param>
    /// <param name="epsilon">Added to the variance.</param>
    /// <param name="inputShape">The row shape (<c>[C, X...]</c>, or <c>[F]</c> for per-feature statistics) of a flat vector column; null to use the column type's dimensions.</param>
    /// <example>docs/transforms/BatchNormalization.md</example>
    public static BatchNormEstimator ApplyBatchNormalization(this TransformsCatalog catalog, string outputColumnName, string? inputColumnName = null,
        float[]? mean = null, float[]? variance = null, float[]? scale = null, float[]? bias = null,
        float epsilon = BatchNormEstimator.Defaults.Epsilon, int[]? inputShape = null)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        return new BatchNormEstimator(new BatchNormEstimator.Options
        {
            OutputColumnName = outputColumnName, InputColumnName = inputColumnName, InputShape = inputShape,
            Mean = mean, Variance = variance, Scale = scale, Bias = bias, Epsilon = epsilon,
        });
    }

    /// <summary>Batch normalization with every option, batch size included.</summary>
    public static BatchNormEstimator ApplyBatchNormalization(this TransformsCatalog catalog, BatchNormEstimator.Options options)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        return new BatchNormEstimator(options);
    }

    /// <summary>An element-wise non-linearity on every value; the shape does not change.</summary>
    /// <param name="catalog">The transforms catalog.</param>
    /// <param name="outputColumnName">The column to write.</param>
    /// <param name="kind">ReLU, LeakyReLU, ELU, Sigmoid or Tanh.</param>
    /// <param name="inputColumnName">The column to read; null reads <paramref name="outputColumnName"/>.</param>
    /// <param name="alpha">LeakyReLU's slope or ELU's scale for negative inputs; null for 0.01 and 1.</param>
    /// <param name="inputShape">A row shape to give the output column; null to keep the input's dimensions.</param>
    /// <example>docs/transforms/Activation.md</example>
    public static ActivationEstimator ApplyActivation(this TransformsCatalog catalog, string outputColumnName,
        ActivationKind kind = ActivationEstimator.Defaults.Kind, string? inputColumnName = null, float? alpha = null, int[]? inputShape = null)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        return new ActivationEstimator(new ActivationEstimator.Options
        {
            OutputColumnName = outputColumnName, InputColumnName = inputColumnName, InputShape = inputShape, Kind = kind, Alpha = alpha,
        });
    }

    /// <summary>An activation with every option, batch size included.</summary>
    public static ActivationEstimator ApplyActivation(this TransformsCatalog catalog, ActivationEstimator.Options options)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        return new ActivationEstimator(options);
    }
}
