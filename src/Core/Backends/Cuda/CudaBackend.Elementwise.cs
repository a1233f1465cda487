using MLNet.ConvNet.Backends.Cuda.Interop;

namespace MLNet.ConvNet.Backends.Cuda;

// Element-wise maths, the whole-tensor sum and the per-channel bias helpers: kernels in Kernels/Elementwise.cu.
public sealed unsafe partial class CudaBackend
{
    /// <summary>Most blocks of the first stage of <see cref="Sum"/>: bounds the partial sums the second stage adds up.</summary>
    private const int SumBlocks = 1024;

    public void Scale(Tensor x, float alpha, Tensor y)
    {
        SameLength(x, y);
        if (x.Length == 0) return;
        using var _ = Enter();
        Launch("ew_scale", Blocks(x.Length), BlockSize, Arg(Ptr(x)), Arg(alpha), Arg(Ptr(y)), Arg((long)x.Length));
    }

    public void Add(Tensor a, Tensor b, Tensor y)
    {
        SameLength(a, b); SameLength(a, y);
        if (a.Length == 0) return;
        using var _ = Enter();
        Launch("ew_add", Blocks(a.Length), BlockSize, Arg(Ptr(a)), Arg(Ptr(b)), Arg(Ptr(y)), Arg((long)a.Length));
    }

    public void AddScaled(Tensor x, float alpha, Tensor y)
    {
        SameLength(x, y);
        if (x.Length == 0) return;
        using var _ = Enter();
        Launch("ew_add_scaled", Blocks(x.Length), BlockSize, Arg(Ptr(x)), Arg(alpha), Arg(Ptr(y)), Arg((long)x.Length));
    }

    public void Multiply(Tensor a, Tensor b, Tensor y)
    {
        SameLength(a, b); SameLength(a, y);
        if (a.Length == 0) return;
        using var _ = Enter();
        Launch("ew_multiply", Blocks(a.Length), BlockSize, Arg(Ptr(a)), Arg(Ptr(b)), Arg(Ptr(y)), Arg((long)a.Length));
    }

    /// <summary>
    /// Two-stage sum in double: up to <see cref="SumBlocks"/> blocks each write a partial sum into the workspace, one
    /// block adds those up, and the 8-byte result is copied back (the one place besides CopyToHost that waits for the
    /// device). The grid depends only on the length, so the same tensor always gives the same bits.
    /// </summary>
    public double Sum(Tensor x)
    {
        if (x.Length == 0) return 0;
        using var _ = Enter();
        uint blocks = Math.Min(Blocks(x.Length), (uint)SumBlocks);
        ulong partial = Workspace((blocks + 1) * sizeof(double));
        ulong result = partial + blocks * sizeof(double);
        Launch("ew_sum_partial", blocks, BlockSize, Arg(Ptr(x)), Arg((long)x.Length), Arg(partial));
        Launch("ew_sum_final", 1, BlockSize, Arg(partial), Arg((int)blocks), Arg(result));
        double sum;
        Driver.Check(Driver.cuMemcpyDtoHAsync_v2(&sum, result, sizeof(double), _stream), "cuMemcpyDtoHAsync");
        Driver.Check(Driver.cuStreamSynchronize(_stream), "cuStreamSynchronize");
        return sum;
    }

    public void AddChannelBias(Tensor y, Tensor bias)
    {
        int c = y.Shape[1], inner = y.Shape.SizeFrom(2);
        CheckLength(bias, c, "bias");
        if (y.Length == 0) return;
        using var _ = Enter();
        Launch("ew_add_channel_bias", Blocks(y.Length), BlockSize, Arg(Ptr(y)), Arg(Ptr(bias)), Arg(c), Arg((long)inner), Arg((long)y.Length));
    }

    /// <summary>One block per channel, each summing its channel in double in a fixed order (no atomics).</summary>
    public void SumPerChannel(Tensor dy, Tensor db)
    {
        int n = dy.Shape[0], c = dy.Shape[1], inner = dy.Shape.SizeFrom(2);
        CheckLength(db, c, "db");
        if (c == 0) return;
        using var _ = Enter();
        Launch("ew_sum_per_channel", (uint)Math.Min(c, 65535), BlockSize, Arg(Ptr(dy)), Arg(Ptr(db)), Arg(n), Arg(c), Arg((long)inner));
    }
}
