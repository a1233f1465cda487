namespace MLNet.ConvNet.Ops;

/// <summary>
/// im2col and col2im: convolution as a matrix product, and back (the seed's "convolution vs matrix
/// multiplication" section).
/// </summary>
/// <remarks>
/// For each image, every patch the kernel meets becomes one column:
/// <code>
///   cols[n] : [C*prod(K), prod(Y)]     row (c, k) = tap k of channel c, column = output position
///   conv(x, w)[n] = w.Reshape(O, C*prod(K))  x  cols[n]          ([O, C*K] x [C*K, Y] = [O, Y])
/// </code>
/// In Convolution mode (kernel flipped) tap k reads the flipped position, so the same product holds in both modes.
/// With groups, the rows of group g are the contiguous block of its channels and the product is taken per group
/// (the backends do this inside their convolution kernels; this public op takes one group).
/// </remarks>
public static class Im2Col
{
    /// <summary>
    /// Stretches every patch of <paramref name="x"/> <c>[N, C, X...]</c> met by a kernel of spatial size
    /// <paramref name="kernelSize"/> into a column: result <c>[N, C*prod(K), prod(Y)]</c> (0 where the patch is in padding).
    /// </summary>
    /// <example>
    /// The seed's x = [1..7], K = 3, CrossCorrelation: cols[0] = [1 2 3 4 5; 2 3 4 5 6; 3 4 5 6 7], and
    /// [1 2 3] x cols = [14 20 26 32 38]. In Convolution mode (the default) the rows come flipped,
    /// [3 4 5 6 7; 2 3 4 5 6; 1 2 3 4 5], and [1 2 3] x cols = [10 16 22 28 34], the seed's convolution.
    /// </example>
    public static Tensor Forward(Tensor x, int[] kernelSize, ConvolutionOptions? options = null)
    {
        var g = ConvGeometry.ForIm2Col(x.Shape, kernelSize, options);
        var cols = x.Backend.Allocate(ColumnsShape(g));
        x.Backend.Im2Col(g, x, cols);
        return cols;
    }

    /// <summary>col2im, the adjoint of <see cref="Forward"/>: sums each column entry back onto its input cell, giving <c>[N, C, X...]</c>.</summary>
    public static Tensor Backward(Tensor cols, Shape xShape, int[] kernelSize, ConvolutionOptions? options = null)
    {
        var g = ConvGeometry.ForIm2Col(xShape, kernelSize, options);
        var expected = ColumnsShape(g);
        if (cols.Shape != expected)
            throw new ArgumentException($"Col2Im: cols has shape {cols.Shape} but input {xShape} with kernel {Shape.Format(kernelSize)} needs {expected}.", nameof(cols));
        var x = cols.Backend.Allocate(xShape);
        cols.Backend.Col2Im(g, cols, x);
        return x;
    }

    /// <summary>The shape of the column matrix: <c>[N, C*prod(K), prod(Y)]</c>.</summary>
    public static Shape ColumnsShape(ConvGeometry g) => new(g.BatchSize, g.InChannels * g.KernelVolume, g.OutputVolume);
}
