using MLNet.ConvNet.Backends.Cuda.Interop;
using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Backends.Cuda;

// Pooling in cuDNN (cudnnPoolingForward / cudnnPoolingBackward), with a kernel of our own (Kernels/Pooling.cu) for
// any geometry cuDNN refuses or sizes differently.
//
// How our semantics map onto cuDNN's:
// - PoolingMode.Max -> CUDNN_POOLING_MAX_DETERMINISTIC with CUDNN_PROPAGATE_NAN. cuDNN ignores padded cells in max
//   pooling (our rule; PoolGeometry keeps padding < window, so no window lies wholly in padding). The deterministic
//   variant gives the same dx on every run where windows overlap, as the CPU's does. Ours sends dy to the first
//   maximal cell in scan order; cuDNN's documentation does not say which of several EQUAL maxima gets it (users
//   report that cuDNN gives it to one of them, unscaled: Theano#5404), nor where dy goes when the window holds a
//   NaN (ours: the first NaN). Random inputs have neither; ties after a ReLU (zeros) may differ there.
// - AverageIncludingPadding -> CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING (divide by the window volume);
//   AverageExcludingPadding -> CUDNN_POOLING_AVERAGE_COUNT_EXCLUDE_PADDING (divide by the in-input cells).
// - 1-D pooling runs as 2-D: the tensor [N, C, W] is described as [N, C, W, 1] (TensorDescriptor) and the window,
//   padding and stride get a second axis of 1, 0, 1. 2-D and 3-D use 4-D and 5-D descriptors.
// - Output size: PoolGeometry's Y = 1 + floor((X + 2P - W) / S) is cuDNN's formula too; each geometry is checked
//   once with cudnnGetPoolingNdForwardOutputDim, and where cuDNN disagrees, or refuses the descriptor or the call
//   with a NOT_SUPPORTED status, that geometry uses our own kernel from then on.
// - Both calls overwrite their output (alpha = 1, beta = 0). The backward takes y, dy, x as cuDNN wants them; the
//   averages do not depend on x or y (Pooling.Unpool passes dx as x), and our kernel does not read them there.
public sealed unsafe partial class CudaBackend
{
    /// <summary>A pooling geometry by value: the input shape, the mode, and window, padding and stride padded to three axes.</summary>
    private readonly record struct PoolKey(Shape Input, PoolingMode Mode, int W0, int W1, int W2, int P0, int P1, int P2, int S0, int S1, int S2)
    {
        public static PoolKey Of(PoolGeometry g)
        {
            int r = g.SpatialRank;
            int W(int i) => i < r ? g.Window[i] : 0;
            int P(int i) => i < r ? g.Padding[i] : 0;
            int S(int i) => i < r ? g.Stride[i] : 0;
            return new PoolKey(g.Input, g.Mode, W(0), W(1), W(2), P(0), P(1), P(2), S(0), S(1), S(2));
        }
    }

    /// <summary>How one geometry runs: a cuDNN pooling descriptor, or 0 for our own kernel.</summary>
    private sealed class PoolPlan
    {
        public nint Descriptor;
    }

    private readonly Dictionary<PoolKey, PoolPlan> _poolPlans = [];

    public void PoolingForward(PoolGeometry g, Tensor x, Tensor y)
    {
        using var _ = Enter();
        if (x.Length == 0 || y.Length == 0) return;
        var plan = PoolPlanFor(g);
        if (plan.Descriptor != 0)
        {
            float one = 1f, zero = 0f;
            int status = CuDnn.cudnnPoolingForward(_cudnn, plan.Descriptor, &one, TensorDescriptor(g.Input), Ptr(x),
                &zero, TensorDescriptor(g.Output), Ptr(y));
            if (!FallBackToOwnPooling(plan, status, "cudnnPoolingForward", g)) return;
        }
        LaunchPool("pool_forward", g, [Ptr(x), Ptr(y)], g.Output.Length);
    }

    public void PoolingBackward(PoolGeometry g, Tensor x, Tensor y, Tensor dy, Tensor dx)
    {
        using var _ = Enter();
        if (x.Length == 0 || dx.Length == 0) return;
        PoolingBackward(g, Ptr(x), Ptr(y), Ptr(dy), Ptr(dx));
    }

    private void PoolingBackward(PoolGeometry g, ulong x, ulong y, ulong dy, ulong dx)
    {
        var plan = PoolPlanFor(g);
        if (plan.Descriptor != 0)
        {
            float one = 1f, zero = 0f;
            nint inDesc = TensorDescriptor(g.Input), outDesc = TensorDescriptor(g.Output);
            int status = CuDnn.cudnnPoolingBackward(_cudnn, plan.Descriptor, &one, outDesc, y, outDesc, dy,
                inDesc, x, &zero, inDesc, dx);
            if (!FallBackToOwnPooling(plan, status, "cudnnPoolingBackward", g)) return;
        }
        LaunchPool("pool_backward", g, [x, dy, dx], g.Input.Length);
    }

    /// <summary>
    /// Pooling, then our ReLU kernel in place on y: the ReLU is monotone, so relu(max) is max(relu), and the ReLU's
    /// output of x's size is never written.
    /// </summary>
    public void PoolingReluForward(PoolGeometry g, Tensor x, Tensor y)
    {
        PoolingForward(g, x, y);
        ActivationForward(ActivationKind.ReLU, 0f, y, y);
    }

    /// <summary>
    /// The composition itself: r = relu(x) in the workspace, pooling's backward on r (whose pooled output y is) into
    /// dx, then our ReLU backward at x in place on dx (each element reads only its own).
    /// </summary>
    public void PoolingReluBackward(PoolGeometry g, Tensor x, Tensor y, Tensor dy, Tensor dx)
    {
        using var _ = Enter();
        if (x.Length == 0 || dx.Length == 0) return;
        ulong r = Workspace((long)x.Length * sizeof(float));
        Launch("act_forward", Blocks(x.Length), BlockSize, Arg((int)ActivationKind.ReLU), Arg(0f), Arg(Ptr(x)), Arg(r), Arg((long)x.Length));
        PoolingBackward(g, r, Ptr(y), Ptr(dy), Ptr(dx));
        Launch("act_backward", Blocks(x.Length), BlockSize,
            Arg((int)ActivationKind.ReLU), Arg(0f), Arg(Ptr(x)), Arg(Ptr(x)), Arg(Ptr(dx)), Arg(Ptr(dx)), Arg((long)x.Length));
    }

    /// <summary>
    /// False when cuDNN ran the call. A NOT_SUPPORTED status (3000-3999: cuDNN refused this geometry, before running
    /// anything) switches the geometry to our own kernel for good and returns true; any other failure throws.
    /// </summary>
    private static bool FallBackToOwnPooling(PoolPlan plan, int status, string function, PoolGeometry g)
    {
        if (status == 0) return false;
        if (status / 1000 != 3) CuDnn.Check(status, $"{function}({g})");
        // The descriptor stays alive in no other plan, so it can go.
        CuDnn.cudnnDestroyPoolingDescriptor(plan.Descriptor);
        plan.Descriptor = 0;
        return true;
    }

    /// <summary>The plan for <paramref name="g"/>, made on first use. Call with the lock held.</summary>
    private PoolPlan PoolPlanFor(PoolGeometry g)
    {
        var key = PoolKey.Of(g);
        if (_poolPlans.TryGetValue(key, out var plan)) return plan;
        plan = new PoolPlan { Descriptor = MakePoolingDescriptor(g) };
        return _poolPlans[key] = plan;
    }

    /// <summary>A cuDNN pooling descriptor for <paramref name="g"/>, or 0 when cuDNN refuses it or sizes its output differently.</summary>
    private nint MakePoolingDescriptor(PoolGeometry g)
    {
        int spatial = g.SpatialRank, nb = Math.Max(2, spatial);
        var window = stackalloc int[3];
        var padding = stackalloc int[3];
        var stride = stackalloc int[3];
        for (int i = 0; i < nb; i++)
        {
            // 1-D: the second axis is the trailing 1 of the tensor descriptor ([N, C, W, 1]).
            window[i] = i < spatial ? g.Window[i] : 1;
            padding[i] = i < spatial ? g.Padding[i] : 0;
            stride[i] = i < spatial ? g.Stride[i] : 1;
        }
        int mode = g.Mode switch
        {
            PoolingMode.Max => CuDnn.PoolingMaxDeterministic,
            PoolingMode.AverageIncludingPadding => CuDnn.PoolingAverageCountIncludePadding,
            PoolingMode.AverageExcludingPadding => CuDnn.PoolingAverageCountExcludePadding,
            _ => throw new ArgumentOutOfRangeException(nameof(g), g.Mode, "Unknown pooling mode."),
        };
        CuDnn.Check(CuDnn.cudnnCreatePoolingDescriptor(out nint d), "cudnnCreatePoolingDescriptor");
        bool usable = CuDnn.cudnnSetPoolingNdDescriptor(d, mode, CuDnn.PropagateNan, nb, window, padding, stride) == 0;
        if (usable)
        {
            // The tensor descriptors have rank max(4, rank); cuDNN answers with as many output sizes.
            int rank = Math.Max(4, g.Input.Rank);
            var dims = stackalloc int[rank];
            usable = CuDnn.cudnnGetPoolingNdForwardOutputDim(d, TensorDescriptor(g.Input), rank, dims) == 0;
            for (int i = 0; usable && i < rank; i++)
                usable = dims[i] == (i < g.Output.Rank ? g.Output[i] : 1);
        }
        if (usable) return d;
        CuDnn.cudnnDestroyPoolingDescriptor(d);
        return 0;
    }

    /// <summary>
    /// Our own pooling kernel over <paramref name="count"/> cells (one thread each), the geometry padded to three
    /// spatial axes as the CPU does; <paramref name="pointers"/> are the kernel's leading pointer arguments.
    /// </summary>
    private void LaunchPool(string kernel, PoolGeometry g, ReadOnlySpan<ulong> pointers, long count)
    {
        int lead = 3 - g.SpatialRank;
        int In(int i) => i < lead ? 1 : g.Input[i - lead + 2];
        int Out(int i) => i < lead ? 1 : g.Output[i - lead + 2];
        int Win(int i) => i < lead ? 1 : g.Window[i - lead];
        int Str(int i) => i < lead ? 1 : g.Stride[i - lead];
        int Pad(int i) => i < lead ? 0 : g.Padding[i - lead];
        ReadOnlySpan<ulong> geometry =
        [
            Arg(count), Arg(In(0)), Arg(In(1)), Arg(In(2)), Arg(Out(0)), Arg(Out(1)), Arg(Out(2)),
            Arg(Win(0)), Arg(Win(1)), Arg(Win(2)), Arg(Str(0)), Arg(Str(1)), Arg(Str(2)),
            Arg(Pad(0)), Arg(Pad(1)), Arg(Pad(2)), Arg((int)g.Mode),
        ];
        Span<ulong> args = stackalloc ulong[pointers.Length + geometry.Length];
        pointers.CopyTo(args);
        geometry.CopyTo(args[pointers.Length..]);
        Launch(kernel, Blocks(count), BlockSize, args);
    }
}
