// Runs every numeric example of the seed (Knet's CNN tutorial) through the engine and prints it next to
// the seed's answer. Knet arrays are column-major [X..., C, N]; ours are row-major [N, C, X...], so a
// Knet 2-D matrix printed as rows is our matrix transposed. Each line ends in "ok" or "MISMATCH".
using MLNet.ConvNet;
using MLNet.ConvNet.Ops;

int failures = 0;

Tensor Signal(params float[] v) => Tensor.FromHost(v, 1, 1, v.Length);
float[] Range(int n) => Enumerable.Range(1, n).Select(i => (float)i).ToArray();

// Knet's reshape(1:n, (h, w)) read column-major, as our row-major [1, 1, w, h] (the transpose).
Tensor KnetMatrix(int rows, int cols, float[] columnMajor) => Tensor.FromHost(columnMajor, 1, 1, cols, rows);

void Show(string what, Tensor y, float[] expected)
{
    var got = y.ToHost();
    bool ok = got.SequenceEqual(expected);
    if (!ok) failures++;
    Console.WriteLine($"{what,-58} {Fmt(got)}  (seed: {Fmt(expected)}) {(ok ? "ok" : "MISMATCH")}");
}

static string Fmt(float[] v) => "[" + string.Join(", ", v.Select(x => x.ToString("0.###"))) + "]";

Console.WriteLine("Convolution (mode = Convolution: the kernel is flipped)");
var w = Signal(1, 2, 3);
var x = Signal(Range(7));
Show("conv4(w=[1,2,3], x=[1..7])", Convolution.Forward(x, w), [10, 16, 22, 28, 34]);
Show("conv4(w, x; padding=1)", Convolution.Forward(x, w, options: new() { Padding = 1 }), [4, 10, 16, 22, 28, 34, 32]);
Show("conv4(w, x; padding=1, stride=3)", Convolution.Forward(x, w, options: new() { Padding = 1, Stride = 3 }), [4, 22, 32]);

// 2-D: w = reshape(1:4, (2,2)), x = reshape(1:9, (3,3)); Knet prints y = [23 53; 33 63], i.e. column-major
// [23, 33, 53, 63], which is our row-major [1,1,2,2] read in order.
var w2 = KnetMatrix(2, 2, Range(4));
var x2 = KnetMatrix(3, 3, Range(9));
Show("conv4(reshape(1:4,(2,2)), reshape(1:9,(3,3)))  (column-major)", Convolution.Forward(x2, w2), [23, 33, 53, 63]);

Console.WriteLine();
Console.WriteLine("A matrix product as a convolution (mode = CrossCorrelation)");
// w = [1 3 5; 2 4 6] (2x3), x = [1,2,3]: each row of w becomes one filter over a 1x3 "image".
var wDense = Tensor.FromHost([1f, 3, 5, 2, 4, 6], 2, 1, 3);
var xDense = Tensor.FromHost([1f, 2, 3], 1, 1, 3);
Show("conv4(w2, x2; mode=1) = w * x", Convolution.Forward(xDense, wDense, options: new() { Mode = ConvolutionMode.CrossCorrelation }), [22, 28]);
Show("Dense(x, w) = w * x", Dense.Forward(Tensor.FromHost([1f, 2, 3], 1, 3), Tensor.FromHost([1f, 3, 5, 2, 4, 6], 2, 3)), [22, 28]);

Console.WriteLine();
Console.WriteLine("A convolution as a matrix product (im2col)");
var cols = Im2Col.Forward(x, [3], new() { Mode = ConvolutionMode.CrossCorrelation });
Console.WriteLine($"im2col([1..7], K=3) has shape {cols.Shape}: each column is one patch");
var flipped = Tensor.FromHost([3f, 2, 1], 1, 3);
var viaGemm = Tensor.Zeros(new Shape(1, 5));
x.Backend.MatMul(flipped, false, cols.Reshape(3, 5), false, viaGemm);
Show("reverse(w) * im2col(x)", viaGemm, [10, 16, 22, 28, 34]);

Console.WriteLine();
Console.WriteLine("Pooling");
var p6 = Signal(Range(6));
Show("pool([1..6])", Pooling.Forward(p6), [2, 4, 6]);
Show("pool([1..6]; window=3)", Pooling.Forward(p6, new() { Window = 3 }), [3, 6]);
Show("pool([1..6]; padding=1)", Pooling.Forward(p6, new() { Padding = 1 }), [1, 3, 5, 6]);
Show("pool([1..10]; stride=4)", Pooling.Forward(Signal(Range(10)), new() { Stride = 4 }), [2, 6, 10]);
Show("pool([1..6]; padding=1, mode=0)", Pooling.Forward(p6, new() { Padding = 1, Mode = PoolingMode.Max }), [1, 3, 5, 6]);
Show("pool([1..6]; padding=1, mode=1)", Pooling.Forward(p6, new() { Padding = 1, Mode = PoolingMode.AverageIncludingPadding }), [0.5f, 2.5f, 4.5f, 3]);
Show("pool([1..6]; padding=1, mode=2)", Pooling.Forward(p6, new() { Padding = 1, Mode = PoolingMode.AverageExcludingPadding }), [1, 2.5f, 4.5f, 6]);
// 4x4 of 1..16 column-major; Knet prints [6 14; 8 16], column-major [6, 8, 14, 16].
Show("pool(reshape(1:16,(4,4)))  (column-major)", Pooling.Forward(KnetMatrix(4, 4, Range(16))), [6, 8, 14, 16]);

Console.WriteLine();
Console.WriteLine(failures == 0 ? "all seed examples match" : $"{failures} example(s) do not match");
return failures == 0 ? 0 : 1;
