namespace MLNet.ConvNet.Ops;

// Pooling family (Knet's pool / unpool):
//   Pooling.Forward          y = pool(x)                  [N,C,X...] -> [N,C,Y...]
//   Pooling.Backward         dx from x, y, dy
//   Pooling.ForwardRelu      y = maxpool(relu(x)) in one pass   (a ReLU layer followed by a max Pool)
//   Pooling.BackwardRelu     dx of that pair from x, y, dy
//   Pooling.Unpool           each value spread over its window (the inverse of average pooling)
//   Pooling.UnpoolBackward   dx from dy: the sum over each window
// Shapes and options are checked once by PoolGeometry (Ops/Geometry/PoolGeometry.cs).

/// <summary>Max and average pooling over 1-D, 2-D and 3-D windows, channel by channel.</summary>
public static class Pooling
{
    /// <summary>
    /// Summarises each window of <paramref name="x"/> <c>[N, C, X...]</c>; output <c>[N, C, Y...]</c> with
    /// <code>Y = 1 + floor((X + 2P - W) / S)</code>
    /// Options (<see cref="PoolingOptions"/>): Window = 2, Padding = 0 (must be &lt; Window), Stride = Window,
    /// Mode = Max (padded cells never win: cuDNN's rule), AverageIncludingPadding (divide by the window volume)
    /// or AverageExcludingPadding (divide by the number of cells inside the input).
    /// NaN: a max over a window holding a NaN is NaN (as in PyTorch); an average with a NaN is NaN.
    /// </summary>
    /// <example>
    /// The seed's examples on x = [1..6] as <c>[1,1,6]</c>: default [2,4,6]; Window = 3: [3,6];
    /// Padding = 1: Max [1,3,5,6], AverageIncludingPadding [0.5,2.5,4.5,3], AverageExcludingPadding [1,2.5,4.5,6].
    /// x = [1..10], Stride = 4: [2,6,10]. 2-D, 4x4 of 1..16 (Knet column-major): [6 14; 8 16].
    /// </example>
    public static Tensor Forward(Tensor x, PoolingOptions? options = null)
    {
        var g = PoolGeometry.Create(x.Shape, options);
        var y = x.Backend.Allocate(g.Output);
        Forward(g, x, y);
        return y;
    }

    /// <summary>
    /// <see cref="Forward(Tensor, PoolingOptions?)"/> into <paramref name="y"/> (shape <c>g.Output</c>) with the geometry
    /// made once by <see cref="PoolGeometry.Create"/>: what a training loop calls to allocate nothing.
    /// </summary>
    public static void Forward(PoolGeometry g, Tensor x, Tensor y)
    {
        ArgumentNullException.ThrowIfNull(g);
        Convolution.CheckTensor(x, g.Input, "Pooling", nameof(x));
        Outputs.Check(y, g.Output, x.Backend, "Pooling", nameof(y), x);
        x.Backend.PoolingForward(g, x, y);
    }

    /// <summary>
    /// Gradient with respect to x given x, y = Forward(x) and dy (both of the output's shape), with the
    /// options of the forward call.
    /// Max sends each dy to the first maximal in-input cell of its window in scan order (row-major within
    /// the window), summing where windows overlap; a window holding a NaN sends its dy to its first NaN
    /// (the forward result there is NaN). The averages spread dy / divisor over the window's in-input cells.
    /// </summary>
    public static Tensor Backward(Tensor x, Tensor y, Tensor dy, PoolingOptions? options = null)
    {
        var g = PoolGeometry.Create(x.Shape, options);
        var dx = x.Backend.Allocate(g.Input);
        Backward(g, x, y, dy, dx);
        return dx;
    }

    /// <summary><see cref="Backward(Tensor, Tensor, Tensor, PoolingOptions?)"/> into <paramref name="dx"/> (shape <c>g.Input</c>).</summary>
    public static void Backward(PoolGeometry g, Tensor x, Tensor y, Tensor dy, Tensor dx)
    {
        ArgumentNullException.ThrowIfNull(g);
        Convolution.CheckTensor(x, g.Input, "Pooling.Backward", nameof(x));
        ArgumentNullException.ThrowIfNull(y);
        if (y.Shape != g.Output)
            throw new ArgumentException($"Pooling.Backward: y has shape {y.Shape} but pooling x {x.Shape} gives {g.Output}.", nameof(y));
        Convolution.CheckGradient(dy, g.Output, "Pooling.Backward");
        Outputs.Check(dx, g.Input, x.Backend, "Pooling.Backward", nameof(dx), x, y, dy);
        x.Backend.PoolingBackward(g, x, y, dy, dx);
    }

    /// <summary>
    /// A ReLU followed by max pooling in one backend call: <c>y = maxpool(max(0, x))</c> into <paramref name="y"/>
    /// (shape <c>g.Output</c>), every value the one <see cref="Activation.Forward(ActivationKind, Tensor, Tensor, float?)"/>
    /// then <see cref="Forward(PoolGeometry, Tensor, Tensor)"/> give (NaN stays NaN), without writing the ReLU's
    /// output: a network runs a ReLU layer and the max Pool after it this way. Max mode only; the ReLU is monotone, so
    /// this is also <c>max(0, maxpool(x))</c>.
    /// </summary>
    /// <example>x = [-3, -1, 2, -5] as <c>[1,1,4]</c>, Window = 2: relu gives [0, 0, 2, 0], so y = [0, 2].</example>
    public static void ForwardRelu(PoolGeometry g, Tensor x, Tensor y)
    {
        CheckRelu(g, "Pooling.ForwardRelu");
        Convolution.CheckTensor(x, g.Input, "Pooling.ForwardRelu", nameof(x));
        Outputs.Check(y, g.Output, x.Backend, "Pooling.ForwardRelu", nameof(y), x);
        x.Backend.PoolingReluForward(g, x, y);
    }

    /// <summary>
    /// Gradient of <see cref="ForwardRelu"/> with respect to its x (the ReLU's input), given its output
    /// <paramref name="y"/> and dy: the values <see cref="Backward(PoolGeometry, Tensor, Tensor, Tensor, Tensor)"/> on the
    /// ReLU's output followed by <see cref="Activation.Backward(ActivationKind, Tensor, Tensor, Tensor, Tensor, float?)"/>
    /// give: dy goes to the first maximal cell of max(0, x) in each window, then times the ReLU's slope at x (1 above
    /// 0, 0 at or below, NaN at NaN). Into <paramref name="dx"/> (shape <c>g.Input</c>, overwritten).
    /// </summary>
    /// <example>The example above with dy = [5, 7]: the first window's ReLU outputs tie at 0, its first cell wins and
    /// the slope there is 0, so dx = [0, 0, 7, 0].</example>
    public static void BackwardRelu(PoolGeometry g, Tensor x, Tensor y, Tensor dy, Tensor dx)
    {
        CheckRelu(g, "Pooling.BackwardRelu");
        Convolution.CheckTensor(x, g.Input, "Pooling.BackwardRelu", nameof(x));
        ArgumentNullException.ThrowIfNull(y);
        if (y.Shape != g.Output)
            throw new ArgumentException($"Pooling.BackwardRelu: y has shape {y.Shape} but pooling x {x.Shape} gives {g.Output}; pass the output of ForwardRelu.", nameof(y));
        Convolution.CheckGradient(dy, g.Output, "Pooling.BackwardRelu");
        Outputs.Check(dx, g.Input, x.Backend, "Pooling.BackwardRelu", nameof(dx), x, y, dy);
        x.Backend.PoolingReluBackward(g, x, y, dy, dx);
    }

    private static void CheckRelu(PoolGeometry g, string op)
    {
        ArgumentNullException.ThrowIfNull(g);
        if (g.Mode != PoolingMode.Max)
            throw new ArgumentException($"{op}: the ReLU is fused into max pooling only, but the geometry's mode is {g.Mode} (run the ReLU and the pooling as two ops).", nameof(g));
    }

    /// <summary>
    /// Unpooling (Knet's unpool): copies each value of <paramref name="x"/> into every cell of its window,
    /// summing where windows overlap. Output size per dimension <c>(X - 1)S + W - 2P</c>.
    /// <see cref="PoolingOptions.Mode"/> is not used. Unpooling inverts pooling when windows do not overlap
    /// (Stride = Window): <c>Forward(Unpool(x))</c> gives back x in Max and AverageExcludingPadding mode, and in
    /// AverageIncludingPadding mode too when there is no padding (padded cells are dropped by Unpool but
    /// counted by that average). Values equal x up to float32 rounding (Unpool scales by the window volume
    /// and divides again).
    /// </summary>
    public static Tensor Unpool(Tensor x, PoolingOptions? options = null)
    {
        var g = Average(PoolGeometry.ForUnpool(x.Shape, options));
        var y = x.Backend.Allocate(g.Input);
        // Average pooling's backward spreads dy/W over each window; scaling by W makes it a plain copy.
        var scaled = x.Backend.Allocate(x.Shape);
        x.Backend.Scale(x, g.WindowVolume, scaled);
        // Average pooling's backward reads neither its x nor its y argument; still, no kernel call passes one tensor
        // as both an input and an output, so a zero tensor of the input's shape stands in for x, and x (of the pooled
        // shape, never written) for y.
        var unused = x.Backend.Allocate(g.Input);
        x.Backend.PoolingBackward(g, unused, x, scaled, y);
        return y;
    }

    /// <summary>
    /// Gradient of <see cref="Unpool"/>: the sum of dy over the in-input cells of each window. dy must have the
    /// shape that <see cref="Unpool"/> gives with the same options.
    /// </summary>
    public static Tensor UnpoolBackward(Tensor dy, PoolingOptions? options = null)
    {
        ConvGeometry.CheckRank(dy.Shape, nameof(dy), "UnpoolBackward");
        var g0 = PoolGeometry.Create(dy.Shape, (options ?? PoolingOptions.Default) with { Mode = PoolingMode.AverageIncludingPadding }, "UnpoolBackward");
        // Pooling floors (X + 2P - W) / S, so several sizes pool to the same Y; only one of them is Unpool's output.
        var unpooled = PoolGeometry.ForUnpool(g0.Output, options).Input;
        if (unpooled != dy.Shape)
            throw new ArgumentException($"UnpoolBackward: dy has shape {dy.Shape} but Unpool's output with these options is {unpooled} (from x {g0.Output}).", nameof(dy));
        var mean = dy.Backend.Allocate(g0.Output);
        dy.Backend.PoolingForward(g0, dy, mean);
        var dx = dy.Backend.Allocate(g0.Output);
        dy.Backend.Scale(mean, g0.WindowVolume, dx); // into a separate tensor: no kernel call aliases an input with an output
        return dx;
    }

    private static PoolGeometry Average(PoolGeometry g) =>
        PoolGeometry.Create(g.Input, new PoolingOptions { Window = g.Window, Padding = g.Padding, Stride = g.Stride, Mode = PoolingMode.AverageIncludingPadding }, "Unpool");
}
