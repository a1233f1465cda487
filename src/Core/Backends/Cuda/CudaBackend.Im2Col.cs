using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Backends.Cuda;

// im2col and col2im: kernels in Kernels/Im2Col.cu (the CPU's ConvPlan semantics; see the comment there).
public sealed partial class CudaBackend
{
    public void Im2Col(ConvGeometry g, Tensor x, Tensor cols)
    {
        CheckIm2ColTensor(x, g.Input, "x");
        CheckLength(cols, g.BatchSize * g.InChannels * g.KernelVolume * g.OutputVolume, "cols");
        if (cols.Length == 0) return;
        using var _ = Enter();
        LaunchIm2Col("im2col_forward", g, Ptr(x), Ptr(cols), cols.Length);
    }

    /// <summary>x is overwritten: each input cell gathers its column entries (deterministic, no atomics).</summary>
    public void Col2Im(ConvGeometry g, Tensor cols, Tensor x)
    {
        CheckIm2ColTensor(x, g.Input, "x");
        CheckLength(cols, g.BatchSize * g.InChannels * g.KernelVolume * g.OutputVolume, "cols");
        if (x.Length == 0) return;
        using var _ = Enter();
        LaunchIm2Col("im2col_backward", g, Ptr(cols), Ptr(x), x.Length);
    }

    /// <summary>
    /// Launches an Im2Col.cu kernel over <paramref name="total"/> elements with the geometry lifted to three spatial
    /// dimensions by leading size-1 dimensions (kernel 1, stride 1, padding 0, dilation 1), as the CPU's ConvPlan does.
    /// </summary>
    private void LaunchIm2Col(string kernel, ConvGeometry g, ulong source, ulong destination, long total)
    {
        int lift = 3 - g.SpatialRank;
        int Size(Shape s, int axis) => axis < lift ? 1 : s[axis - lift + 2];
        int Option(int[] values, int axis, int fill) => axis < lift ? fill : values[axis - lift];
        Launch(kernel, Blocks(total), BlockSize,
            Arg(source), Arg(destination), Arg(total),
            Arg(Size(g.Input, 0)), Arg(Size(g.Input, 1)), Arg(Size(g.Input, 2)),
            Arg(Size(g.Filter, 0)), Arg(Size(g.Filter, 1)), Arg(Size(g.Filter, 2)),
            Arg(Size(g.Output, 0)), Arg(Size(g.Output, 1)), Arg(Size(g.Output, 2)),
            Arg(Option(g.Stride, 0, 1)), Arg(Option(g.Stride, 1, 1)), Arg(Option(g.Stride, 2, 1)),
            Arg(Option(g.Padding, 0, 0)), Arg(Option(g.Padding, 1, 0)), Arg(Option(g.Padding, 2, 0)),
            Arg(Option(g.Dilation, 0, 1)), Arg(Option(g.Dilation, 1, 1)), Arg(Option(g.Dilation, 2, 1)),
            Arg(g.Mode == ConvolutionMode.Convolution ? 1 : 0));
    }

    private static void CheckIm2ColTensor(Tensor t, Shape expected, string name)
    {
        if (t.Length != expected.Length)
            throw new ArgumentException($"{name} {t.Shape} should have the {expected.Length} elements of {expected}.", name);
    }
}
