namespace MLNet.ConvNet.Ops;

/// <summary>Whether the kernel is flipped before it slides over the input.</summary>
public enum ConvolutionMode
{
    /// <summary>True convolution (Knet mode 0, the seed's default): the kernel is flipped in every spatial dimension.</summary>
    Convolution = 0,
    /// <summary>Cross-correlation (Knet mode 1; what PyTorch, ONNX and most frameworks call convolution): no flip.</summary>
    CrossCorrelation = 1,
}

/// <summary>Options of a convolution, a transposed convolution or an im2col.</summary>
public sealed record ConvolutionOptions
{
    /// <summary>Padding = 0: zeros added on both sides of each spatial dimension.</summary>
    public PerAxis Padding { get; init; } = 0;
    /// <summary>Stride = 1: step between consecutive kernel applications.</summary>
    public PerAxis Stride { get; init; } = 1;
    /// <summary>Dilation = 1: spacing between kernel taps (a 3-tap kernel with dilation 2 spans 5 inputs).</summary>
    public PerAxis Dilation { get; init; } = 1;
    /// <summary>Groups = 1: input and output channels are split into this many independent groups.</summary>
    public int Groups { get; init; } = 1;
    /// <summary>Mode = Convolution: flip the kernel (the seed's convention) or not (CrossCorrelation).</summary>
    public ConvolutionMode Mode { get; init; } = ConvolutionMode.Convolution;

    /// <summary>The defaults: no padding, stride 1, dilation 1, one group, kernel flipped.</summary>
    public static ConvolutionOptions Default { get; } = new();
}

/// <summary>
/// The shapes and options of one convolution, checked once and expanded per spatial dimension.
/// Input <c>[N, C, X...]</c>, filter <c>[O, C/groups, K...]</c>, output <c>[N, O, Y...]</c> with
/// <code>Y = 1 + floor((X + 2P - ((K-1)D + 1)) / S)</code>
/// A transposed convolution is described by the geometry of the convolution whose input-gradient it is
/// (<see cref="ForTransposed"/>), so both share one set of kernels.
/// </summary>
public sealed class ConvGeometry
{
    private ConvGeometry(Shape input, Shape filter, Shape output, int[] padding, int[] stride, int[] dilation, int groups, ConvolutionMode mode)
    {
        Input = input; Filter = filter; Output = output;
        Padding = padding; Stride = stride; Dilation = dilation; Groups = groups; Mode = mode;
    }

    /// <summary>Input shape <c>[N, C, X...]</c>.</summary>
    public Shape Input { get; }
    /// <summary>Filter shape <c>[O, C/groups, K...]</c>.</summary>
    public Shape Filter { get; }
    /// <summary>Output shape <c>[N, O, Y...]</c>.</summary>
    public Shape Output { get; }
    public int[] Padding { get; }
    public int[] Stride { get; }
    public int[] Dilation { get; }
    public int Groups { get; }
    public ConvolutionMode Mode { get; }

    /// <summary>Number of spatial dimensions (1, 2 or 3).</summary>
    public int SpatialRank => Input.Rank - 2;
    public int BatchSize => Input[0];
    public int InChannels => Input[1];
    public int OutChannels => Output[1];
    public int InChannelsPerGroup => InChannels / Groups;
    public int OutChannelsPerGroup => OutChannels / Groups;
    public int[] InputSize => Input.Spatial;
    public int[] KernelSize => Filter.Spatial;
    public int[] OutputSize => Output.Spatial;
    /// <summary>Product of the kernel's spatial sizes.</summary>
    public int KernelVolume => Filter.SizeFrom(2);
    /// <summary>Product of the input's spatial sizes.</summary>
    public int InputVolume => Input.SizeFrom(2);
    /// <summary>Product of the output's spatial sizes.</summary>
    public int OutputVolume => Output.SizeFrom(2);

    /// <summary>
    /// Checks <paramref name="input"/> <c>[N, C, X...]</c> against <paramref name="filter"/> <c>[O, C/groups, K...]</c>
    /// and the options; throws <see cref="ArgumentException"/> naming the parameter and both shapes.
    /// </summary>
    public static ConvGeometry Create(Shape input, Shape filter, ConvolutionOptions? options = null, string op = "Convolution")
    {
        options ??= ConvolutionOptions.Default;
        CheckRank(input, "x", op);
        if (filter.Rank != input.Rank)
            throw new ArgumentException($"{op}: filter {filter} has rank {filter.Rank} but input {input} has rank {input.Rank}; a filter is [O, C/groups, K...] with one K per spatial dimension of the input.", "w");
        int rank = input.Rank - 2;
        var (padding, stride, dilation) = ExpandOptions(options, rank, op);
        if (!Enum.IsDefined(options.Mode))
            throw new ArgumentOutOfRangeException("mode", options.Mode, $"{op}: mode must be Convolution or CrossCorrelation.");
        int groups = options.Groups;
        if (groups <= 0) throw new ArgumentOutOfRangeException("groups", groups, $"{op}: groups must be at least 1.");
        int c = input[1], o = filter[0];
        if (c % groups != 0)
            throw new ArgumentException($"{op}: groups = {groups} does not divide the input's {c} channels (input {input}).", "groups");
        if (o % groups != 0)
            throw new ArgumentException($"{op}: groups = {groups} does not divide the filter's {o} output channels (filter {filter}).", "groups");
        if (filter[1] * groups != c)
            throw new ArgumentException($"{op}: channel mismatch: input {input} has {c} channels but filter {filter} with groups = {groups} expects {filter[1] * groups} (filter dimension 1 is channels per group).", "w");

        var outDims = new int[input.Rank];
        outDims[0] = input[0];
        outDims[1] = o;
        for (int i = 0; i < rank; i++)
        {
            int x = input[i + 2], k = filter[i + 2];
            int span = (k - 1) * dilation[i] + 1;
            if (span > x + 2 * padding[i])
                throw new ArgumentException($"{op}: the kernel spans {span} in spatial dimension {i} (size {k}, dilation {dilation[i]}) but the padded input is only {x + 2 * padding[i]} (size {x}, padding {padding[i]}); input {input}, filter {filter}.", "w");
            outDims[i + 2] = 1 + (x + 2 * padding[i] - span) / stride[i];
        }
        return new ConvGeometry(input, filter, new Shape(outDims), padding, stride, dilation, groups, options.Mode);
    }

    /// <summary>
    /// The geometry for a transposed convolution of <paramref name="input"/> <c>[N, Cx, X...]</c> by
    /// <paramref name="filter"/> <c>[Cx, Cy/groups, K...]</c> (Knet's deconv4). It is the geometry of the
    /// convolution whose input-gradient the transposed convolution computes: that convolution's
    /// <see cref="Input"/> is the transposed convolution's output <c>[N, Cy, Y...]</c>, with
    /// <code>Y = (X - 1)S + (K - 1)D + 1 - 2P</code>
    /// and its <see cref="Output"/> is <paramref name="input"/>.
    /// </summary>
    public static ConvGeometry ForTransposed(Shape input, Shape filter, ConvolutionOptions? options = null)
    {
        const string op = "TransposedConvolution";
        options ??= ConvolutionOptions.Default;
        CheckRank(input, "x", op);
        if (filter.Rank != input.Rank)
            throw new ArgumentException($"{op}: filter {filter} has rank {filter.Rank} but input {input} has rank {input.Rank}; a filter is [Cx, Cy/groups, K...].", "w");
        if (filter[0] != input[1])
            throw new ArgumentException($"{op}: channel mismatch: input {input} has {input[1]} channels but filter {filter} has {filter[0]} in dimension 0 (a transposed-convolution filter is [Cx, Cy/groups, K...]).", "w");
        int rank = input.Rank - 2;
        var (padding, stride, dilation) = ExpandOptions(options, rank, op);
        if (options.Groups <= 0) throw new ArgumentOutOfRangeException("groups", options.Groups, $"{op}: groups must be at least 1.");
        if (input[1] % options.Groups != 0)
            throw new ArgumentException($"{op}: groups = {options.Groups} does not divide the input's {input[1]} channels (input {input}).", "groups");
        var yDims = new int[input.Rank];
        yDims[0] = input[0];
        yDims[1] = filter[1] * options.Groups;
        for (int i = 0; i < rank; i++)
        {
            int y = (input[i + 2] - 1) * stride[i] + (filter[i + 2] - 1) * dilation[i] + 1 - 2 * padding[i];
            if (y < 1)
                throw new ArgumentException($"{op}: output size in spatial dimension {i} would be {y} (input {input}, filter {filter}, stride {stride[i]}, dilation {dilation[i]}, padding {padding[i]}); padding too large.", "padding");
            yDims[i + 2] = y;
        }
        var g = Create(new Shape(yDims), filter, options, op);
        if (g.Output != input)
            throw new InvalidOperationException($"{op}: internal size mismatch {g.Output} vs {input}.");
        return g;
    }

    /// <summary>
    /// The geometry of im2col over <paramref name="input"/> <c>[N, C, X...]</c> with a kernel of spatial size
    /// <paramref name="kernelSize"/> (a single-output-channel, one-group convolution).
    /// </summary>
    public static ConvGeometry ForIm2Col(Shape input, int[] kernelSize, ConvolutionOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(kernelSize);
        CheckRank(input, "x", "Im2Col");
        if (kernelSize.Length != input.Rank - 2)
            throw new ArgumentException($"Im2Col: kernelSize has {kernelSize.Length} entries {Shape.Format(kernelSize)} but input {input} has {input.Rank - 2} spatial dimension(s).", nameof(kernelSize));
        foreach (int k in kernelSize)
            if (k <= 0) throw new ArgumentOutOfRangeException(nameof(kernelSize), $"Im2Col: kernelSize {Shape.Format(kernelSize)} must be positive.");
        if (options is not null && options.Groups != 1)
            throw new ArgumentException($"Im2Col: groups must be 1 (got {options.Groups}); run im2col per group instead.", "groups");
        return Create(input, new Shape([1, input[1], .. kernelSize]), options, "Im2Col");
    }

    internal static void CheckRank(Shape x, string name, string op)
    {
        if (x.Rank < 3 || x.Rank > 5)
            throw new ArgumentException($"{op}: {name} has shape {x} (rank {x.Rank}); expected [N, C, X] (1-D), [N, C, H, W] (2-D) or [N, C, D, H, W] (3-D).", name);
    }

    private static (int[] padding, int[] stride, int[] dilation) ExpandOptions(ConvolutionOptions o, int rank, string op)
    {
        var padding = o.Padding.Expand(rank, "padding");
        var stride = o.Stride.Expand(rank, "stride");
        var dilation = o.Dilation.Expand(rank, "dilation");
        for (int i = 0; i < rank; i++)
        {
            if (padding[i] < 0) throw new ArgumentOutOfRangeException("padding", padding[i], $"{op}: padding must be >= 0 (spatial dimension {i}).");
            if (stride[i] <= 0) throw new ArgumentOutOfRangeException("stride", stride[i], $"{op}: stride must be >= 1 (spatial dimension {i}).");
            if (dilation[i] <= 0) throw new ArgumentOutOfRangeException("dilation", dilation[i], $"{op}: dilation must be >= 1 (spatial dimension {i}).");
        }
        return (padding, stride, dilation);
    }

    public override string ToString() =>
        $"conv x{Input} w{Filter} -> y{Output} pad {Shape.Format(Padding)} stride {Shape.Format(Stride)} dil {Shape.Format(Dilation)} groups {Groups} {Mode}";
}
