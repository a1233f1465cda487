namespace MLNet.ConvNet.Ops;

/// <summary>How a pooling window is summarised (Knet/cuDNN modes 0, 1, 2).</summary>
public enum PoolingMode
{
    /// <summary>Maximum of the window; padded cells never win (they act as -infinity, cuDNN's rule).</summary>
    Max = 0,
    /// <summary>Mean over the whole window, padded zeros counted.</summary>
    AverageIncludingPadding = 1,
    /// <summary>Mean over the cells of the window that lie inside the input.</summary>
    AverageExcludingPadding = 2,
}

/// <summary>Options of a pooling or unpooling.</summary>
public sealed record PoolingOptions
{
    /// <summary>Window = 2: the window size per spatial dimension.</summary>
    public PerAxis Window { get; init; } = 2;
    /// <summary>Padding = 0: cells added on both sides of each spatial dimension (must be smaller than the window).</summary>
    public PerAxis Padding { get; init; } = 0;
    /// <summary>Stride = Window when not given.</summary>
    public PerAxis Stride { get; init; }
    /// <summary>Mode = Max.</summary>
    public PoolingMode Mode { get; init; } = PoolingMode.Max;

    /// <summary>Window 2, stride 2, no padding, max.</summary>
    public static PoolingOptions Default { get; } = new();
}

/// <summary>
/// The shapes and options of one pooling, checked once. Input <c>[N, C, X...]</c>, output <c>[N, C, Y...]</c> with
/// <code>Y = 1 + floor((X + 2P - W) / S)</code>
/// </summary>
public sealed class PoolGeometry
{
    private PoolGeometry(Shape input, Shape output, int[] window, int[] padding, int[] stride, PoolingMode mode)
    {
        Input = input; Output = output; Window = window; Padding = padding; Stride = stride; Mode = mode;
    }

    public Shape Input { get; }
    public Shape Output { get; }
    public int[] Window { get; }
    public int[] Padding { get; }
    public int[] Stride { get; }
    public PoolingMode Mode { get; }
    public int SpatialRank => Input.Rank - 2;
    /// <summary>Product of the window sizes.</summary>
    public int WindowVolume => Window.Aggregate(1, (a, b) => a * b);

    /// <summary>Checks <paramref name="input"/> and the options; throws <see cref="ArgumentException"/> naming the option and the shape.</summary>
    public static PoolGeometry Create(Shape input, PoolingOptions? options = null, string op = "Pooling")
    {
        options ??= PoolingOptions.Default;
        ConvGeometry.CheckRank(input, "x", op);
        int rank = input.Rank - 2;
        var (window, padding, stride) = Expand(options, input, op);
        var outDims = input.ToArray();
        for (int i = 0; i < rank; i++)
        {
            int x = input[i + 2];
            if (window[i] > x + 2 * padding[i])
                throw new ArgumentException($"{op}: window {window[i]} in spatial dimension {i} is larger than the padded input {x + 2 * padding[i]} (size {x}, padding {padding[i]}); input {input}.", "window");
            outDims[i + 2] = 1 + (x + 2 * padding[i] - window[i]) / stride[i];
        }
        if (!Enum.IsDefined(options.Mode))
            throw new ArgumentOutOfRangeException("mode", options.Mode, $"{op}: unknown pooling mode.");
        return new PoolGeometry(input, new Shape(outDims), window, padding, stride, options.Mode);
    }

    /// <summary>
    /// The geometry for unpooling <paramref name="input"/> (the pooled size): the pooling whose output is
    /// <paramref name="input"/>, with input size <code>X = (Y - 1)S + W - 2P</code>
    /// </summary>
    public static PoolGeometry ForUnpool(Shape input, PoolingOptions? options = null)
    {
        const string op = "Unpool";
        options ??= PoolingOptions.Default;
        ConvGeometry.CheckRank(input, "x", op);
        int rank = input.Rank - 2;
        var (window, padding, stride) = Expand(options, input, op);
        var dims = input.ToArray();
        for (int i = 0; i < rank; i++)
        {
            dims[i + 2] = (input[i + 2] - 1) * stride[i] + window[i] - 2 * padding[i];
            if (dims[i + 2] < 1)
                throw new ArgumentException($"{op}: output size in spatial dimension {i} would be {dims[i + 2]} (input {input}); padding too large.", "padding");
        }
        var g = Create(new Shape(dims), options with { Window = window, Padding = padding, Stride = stride }, op);
        if (g.Output != input)
            throw new InvalidOperationException($"{op}: internal size mismatch {g.Output} vs {input}.");
        return g;
    }

    private static (int[] window, int[] padding, int[] stride) Expand(PoolingOptions o, Shape input, string op)
    {
        int rank = input.Rank - 2;
        var window = o.Window.Expand(rank, "window");
        var padding = o.Padding.Expand(rank, "padding");
        var stride = o.Stride.IsDefault ? (int[])window.Clone() : o.Stride.Expand(rank, "stride");
        for (int i = 0; i < rank; i++)
        {
            if (window[i] <= 0) throw new ArgumentOutOfRangeException("window", window[i], $"{op}: window must be >= 1 (spatial dimension {i}, input {input}).");
            if (stride[i] <= 0) throw new ArgumentOutOfRangeException("stride", stride[i], $"{op}: stride must be >= 1 (spatial dimension {i}, input {input}).");
            if (padding[i] < 0) throw new ArgumentOutOfRangeException("padding", padding[i], $"{op}: padding must be >= 0 (spatial dimension {i}, input {input}).");
            // With P < W every window overlaps the input, so a max never sees only padding and an
            // average excluding padding never divides by zero.
            if (padding[i] >= window[i])
                throw new ArgumentOutOfRangeException("padding", padding[i], $"{op}: padding {padding[i]} must be smaller than the window {window[i]} (spatial dimension {i}, input {input}); otherwise a window could lie wholly in padding.");
        }
        return (window, padding, stride);
    }

    public override string ToString() =>
        $"pool x{Input} -> y{Output} window {Shape.Format(Window)} pad {Shape.Format(Padding)} stride {Shape.Format(Stride)} {Mode}";
}
