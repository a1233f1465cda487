using MLNet.ConvNet.Backends;

namespace MLNet.ConvNet.Ops;

// Convolution family (Knet's conv4 / deconv4):
//   Convolution.Forward            y = w * x (+ b)            [N,C,X...] * [O,C/g,K...] -> [N,O,Y...]
//   Convolution.BackwardData       dx from w, dy              (this is TransposedConvolution.Forward)
//   Convolution.BackwardFilter     dw from x, dy
//   Convolution.BackwardBias       db from dy
//   TransposedConvolution.*        the same three kernels with the roles of x and y swapped
// Shapes and options are checked once by ConvGeometry (Ops/Geometry/ConvGeometry.cs).

/// <summary>N-d convolution (1-D, 2-D, 3-D) with padding, stride, dilation, groups, and kernel flip or not.</summary>
public static class Convolution
{
    /// <summary>
    /// Convolves <paramref name="x"/> <c>[N, C, X...]</c> with the filter bank <paramref name="w"/>
    /// <c>[O, C/groups, K...]</c>, adding <paramref name="bias"/> <c>[O]</c> when given. Output <c>[N, O, Y...]</c>:
    /// <code>
    /// Y = 1 + floor((X + 2P - ((K-1)D + 1)) / S)
    /// y[n,o,i] = b[o] + sum_{c in group(o), k} w[o,c,k] * x[n,c, i*S - P + k'*D]   (k' = K-1-k when flipped, else k)
    /// </code>
    /// Options (<see cref="ConvolutionOptions"/>): Padding = 0, Stride = 1, Dilation = 1, Groups = 1,
    /// Mode = Convolution (kernel flipped, the seed's default) or CrossCorrelation.
    /// Padded cells are zeros that take part in the products, so a NaN anywhere reaches every sum it enters.
    /// </summary>
    /// <example>
    /// The seed's 1-D example: w = [1,2,3], x = [1..7] as <c>[1,1,3]</c> and <c>[1,1,7]</c>:
    /// <c>Forward(x, w)</c> = [10,16,22,28,34]; with Padding = 1: [4,10,16,22,28,34,32];
    /// with Padding = 1, Stride = 3: [4,22,32]. 2-D: Knet's w = reshape(1:4, (2,2,1,1)) and
    /// x = reshape(1:9, (3,3,1,1)) are, in the same memory, our <c>[1,1,2,2]</c> filled 1..4 and <c>[1,1,3,3]</c>
    /// filled 1..9; the result is Knet's [23 53; 33 63], memory [23,33,53,63].
    /// A matrix product as a convolution: W = [1 3 5; 2 4 6] as a filter bank <c>[2,1,3]</c> (one filter per
    /// row), x = [1,2,3] as <c>[1,1,3]</c>, Mode = CrossCorrelation: y = W x = [22,28] as <c>[1,2,1]</c>.
    /// </example>
    public static Tensor Forward(Tensor x, Tensor w, Tensor? bias = null, ConvolutionOptions? options = null)
    {
        var g = ConvGeometry.Create(x.Shape, w.Shape, options);
        var y = x.Backend.Allocate(g.Output);
        Forward(g, x, w, bias, y);
        return y;
    }

    /// <summary>
    /// <see cref="Forward(Tensor, Tensor, Tensor?, ConvolutionOptions?)"/> into <paramref name="y"/> (shape <c>g.Output</c>),
    /// with the geometry made once by <see cref="ConvGeometry.Create"/>: what a training loop calls to allocate nothing.
    /// An inference pass gives its layer's <paramref name="cache"/>, where the backend keeps work that depends on w alone
    /// (the same result, bit for bit; see <see cref="FilterCache"/>).
    /// </summary>
    public static void Forward(ConvGeometry g, Tensor x, Tensor w, Tensor? bias, Tensor y, FilterCache? cache = null)
    {
        ArgumentNullException.ThrowIfNull(g);
        CheckTensor(x, g.Input, "Convolution", nameof(x));
        CheckTensor(w, g.Filter, "Convolution", nameof(w));
        CheckBias(bias, g.OutChannels, "Convolution");
        Outputs.Check(y, g.Output, x.Backend, "Convolution", nameof(y), x, w, bias);
        if (cache is null) x.Backend.ConvolutionForward(g, x, w, bias, y);
        else x.Backend.ConvolutionForward(g, x, w, bias, y, cache);
    }

    /// <summary>Gradient with respect to the input: <c>dx[N, C, X...]</c> from <c>w</c> and <c>dy[N, O, Y...]</c>.</summary>
    public static Tensor BackwardData(Shape xShape, Tensor w, Tensor dy, ConvolutionOptions? options = null)
    {
        var g = ConvGeometry.Create(xShape, w.Shape, options);
        var dx = w.Backend.Allocate(g.Input);
        BackwardData(g, w, dy, dx);
        return dx;
    }

    /// <summary><see cref="BackwardData(Shape, Tensor, Tensor, ConvolutionOptions?)"/> into <paramref name="dx"/> (shape <c>g.Input</c>).</summary>
    public static void BackwardData(ConvGeometry g, Tensor w, Tensor dy, Tensor dx)
    {
        ArgumentNullException.ThrowIfNull(g);
        CheckTensor(w, g.Filter, "Convolution.BackwardData", nameof(w));
        CheckGradient(dy, g.Output, "Convolution.BackwardData");
        Outputs.Check(dx, g.Input, w.Backend, "Convolution.BackwardData", nameof(dx), w, dy);
        w.Backend.ConvolutionBackwardData(g, w, dy, dx);
    }

    /// <summary>Gradient with respect to the filter: <c>dw[O, C/groups, K...]</c> from <c>x</c> and <c>dy</c>.</summary>
    public static Tensor BackwardFilter(Tensor x, Shape wShape, Tensor dy, ConvolutionOptions? options = null)
    {
        var g = ConvGeometry.Create(x.Shape, wShape, options);
        var dw = x.Backend.Allocate(g.Filter);
        BackwardFilter(g, x, dy, dw);
        return dw;
    }

    /// <summary><see cref="BackwardFilter(Tensor, Shape, Tensor, ConvolutionOptions?)"/> into <paramref name="dw"/> (shape <c>g.Filter</c>; overwritten, not accumulated).</summary>
    public static void BackwardFilter(ConvGeometry g, Tensor x, Tensor dy, Tensor dw)
    {
        ArgumentNullException.ThrowIfNull(g);
        CheckTensor(x, g.Input, "Convolution.BackwardFilter", nameof(x));
        CheckGradient(dy, g.Output, "Convolution.BackwardFilter");
        Outputs.Check(dw, g.Filter, x.Backend, "Convolution.BackwardFilter", nameof(dw), x, dy);
        x.Backend.ConvolutionBackwardFilter(g, x, dy, dw);
    }

    /// <summary>Gradient with respect to the bias: <c>db[o] = sum over n and positions of dy[n, o, ...]</c>.</summary>
    public static Tensor BackwardBias(Tensor dy)
    {
        if (dy.Rank < 2) throw new ArgumentException($"Convolution.BackwardBias: dy {dy.Shape} must be [N, O, ...].", nameof(dy));
        var db = dy.Backend.Allocate(new Shape(dy.Shape[1]));
        BackwardBias(dy, db);
        return db;
    }

    /// <summary><see cref="BackwardBias(Tensor)"/> into <paramref name="db"/> <c>[O]</c> (overwritten, not accumulated).</summary>
    public static void BackwardBias(Tensor dy, Tensor db)
    {
        ArgumentNullException.ThrowIfNull(dy);
        ArgumentNullException.ThrowIfNull(db);
        if (dy.Rank < 2) throw new ArgumentException($"Convolution.BackwardBias: dy {dy.Shape} must be [N, O, ...].", nameof(dy));
        if (db.Rank != 1 || db.Shape[0] != dy.Shape[1])
            throw new ArgumentException($"Convolution.BackwardBias: db has shape {db.Shape} but dy {dy.Shape} has {dy.Shape[1]} channels.", nameof(db));
        Outputs.Check(db, db.Shape, dy.Backend, "Convolution.BackwardBias", nameof(db), dy);
        dy.Backend.SumPerChannel(dy, db);
    }

    internal static void CheckBias(Tensor? bias, int channels, string op)
    {
        if (bias is not null && (bias.Rank != 1 || bias.Shape[0] != channels))
            throw new ArgumentException($"{op}: bias has shape {bias.Shape} but the output has {channels} channels; expected [{channels}].", nameof(bias));
    }

    internal static void CheckTensor(Tensor t, Shape expected, string op, string name)
    {
        ArgumentNullException.ThrowIfNull(t, name);
        if (t.Shape != expected)
            throw new ArgumentException($"{op}: {name} has shape {t.Shape} but the geometry expects {expected}.", name);
    }

    internal static void CheckGradient(Tensor dy, Shape expected, string op)
    {
        ArgumentNullException.ThrowIfNull(dy);
        if (dy.Shape != expected)
            throw new ArgumentException($"{op}: dy has shape {dy.Shape} but the forward output has shape {expected}.", nameof(dy));
    }
}

/// <summary>
/// Transposed convolution (Knet's deconv4; "deconvolution"): the input-gradient of a convolution used as a
/// forward map. It scatters each input cell through the kernel, upsampling by the stride.
/// </summary>
public static class TransposedConvolution
{
    /// <summary>
    /// Maps <paramref name="x"/> <c>[N, Cx, X...]</c> with <paramref name="w"/> <c>[Cx, Cy/groups, K...]</c>
    /// (the filter of the convolution from y back to x) to <c>[N, Cy, Y...]</c>, adding <paramref name="bias"/> <c>[Cy]</c>:
    /// <code>Y = (X - 1)S + (K - 1)D + 1 - 2P</code>
    /// so that <c>Convolution.Forward(y, w, options)</c> has x's shape. Same options as <see cref="Convolution.Forward(Tensor, Tensor, Tensor?, ConvolutionOptions?)"/>.
    /// </summary>
    /// <example>1-D, w = [1,2,3], x = [1,1] as <c>[1,1,2]</c>, Mode = CrossCorrelation: y = [1,3,5,3].</example>
    public static Tensor Forward(Tensor x, Tensor w, Tensor? bias = null, ConvolutionOptions? options = null)
    {
        var g = ConvGeometry.ForTransposed(x.Shape, w.Shape, options);
        Convolution.CheckBias(bias, g.InChannels, "TransposedConvolution");
        var y = x.Backend.Allocate(g.Input);
        x.Backend.ConvolutionBackwardData(g, w, x, y);
        if (bias is not null) x.Backend.AddChannelBias(y, bias);
        return y;
    }

    /// <summary>Gradient with respect to x: the ordinary convolution of dy with w (no bias).</summary>
    public static Tensor BackwardData(Shape xShape, Tensor w, Tensor dy, ConvolutionOptions? options = null)
    {
        var g = ConvGeometry.ForTransposed(xShape, w.Shape, options);
        Convolution.CheckGradient(dy, g.Input, "TransposedConvolution.BackwardData");
        var dx = w.Backend.Allocate(g.Output);
        w.Backend.ConvolutionForward(g, dy, w, null, dx);
        return dx;
    }

    /// <summary>Gradient with respect to w: the filter gradient of the underlying convolution with input dy and output-gradient x.</summary>
    public static Tensor BackwardFilter(Tensor x, Shape wShape, Tensor dy, ConvolutionOptions? options = null)
    {
        var g = ConvGeometry.ForTransposed(x.Shape, wShape, options);
        Convolution.CheckGradient(dy, g.Input, "TransposedConvolution.BackwardFilter");
        var dw = x.Backend.Allocate(g.Filter);
        x.Backend.ConvolutionBackwardFilter(g, dy, x, dw);
        return dw;
    }

    /// <summary>Gradient with respect to the bias <c>[Cy]</c>.</summary>
    public static Tensor BackwardBias(Tensor dy) => Convolution.BackwardBias(dy);
}
