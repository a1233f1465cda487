using MLNet.ConvNet.Backends.Cuda.Interop;
using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Backends.Cuda;

// Convolution in cuDNN 9's legacy API. How our semantics map onto cuDNN's:
//
// - Layout: x [N, C, X...], w [O, C/groups, K...], y [N, O, Y...] are packed NCHW / NCDHW, which is exactly cuDNN's
//   NCHW tensor and filter layout. Descriptors are built from the geometry's shapes (the tensors are only checked for
//   length, as on the CPU), so a transposed convolution (Ops/Convolution.cs), which calls these same three members
//   with the roles swapped (its forward is ConvolutionBackwardData of ConvGeometry.ForTransposed, its input-gradient
//   is ConvolutionForward, its filter-gradient is ConvolutionBackwardFilter(g, dy, x, dw)), needs nothing extra.
// - Mode: our ConvolutionMode.Convolution flips the kernel (the CPU reads tap k at K-1-k), which is cuDNN's
//   CUDNN_CONVOLUTION; CrossCorrelation (no flip) is CUDNN_CROSS_CORRELATION.
// - 1-D: cuDNN wants at least 4-D tensors, so [N, C, W] runs as [N, C, W, 1] with kernel [O, C/g, K, 1], padding
//   (P, 0), stride (S, 1), dilation (D, 1). A size-1 trailing axis changes neither the memory nor the result, and
//   flipping a size-1 axis is a no-op. 2-D and 3-D run natively (Nd descriptors).
// - Groups: cudnnSetConvolutionGroupCount, with the filter descriptor [O, C/groups, K...] as ours.
// - Output shape: at plan time cudnnGetConvolutionNdForwardOutputDim must agree with ConvGeometry.Output, else we
//   throw naming both shapes (a disagreement would mean the descriptors do not say what we mean).
// - Overwrite: alpha = 1, beta = 0 for all three calls (every output is overwritten, as on the CPU); the bias is
//   then added by cudnnAddTensor with a [1, O, 1...] descriptor and beta = 1.
// - Algorithms: chosen once per geometry (cached by the geometry's values, not its identity) with
//   cudnnFind*AlgorithmEx on the call's real buffers (the output is overwritten anyway). Among the successful
//   results we take the fastest deterministic one if it is within 10% of the fastest, else the fastest, so
//   results repeat run to run whenever that costs little. The first real call tries that choice and falls back to
//   the next candidates if cuDNN refuses it; after that a call is one cuDNN launch: no allocation, no sync.
// - Workspace: Find may use at most min(512 MiB, a quarter of the free device memory), taken from the pool through
//   Workspace() (cuDNN allocating on its own caused out-of-memory failures in Knet#518); the run then asks
//   Workspace() for the chosen algorithm's size, which the grown buffer already covers.
// - TF32: with AllowTf32 off (the default) every convolution descriptor uses CUDNN_FMA_MATH (true fp32) and is never
//   changed; results that cuDNN reports as tensor-op math are never taken, and ones reported as CUDNN_DEFAULT_MATH
//   only when no CUDNN_FMA_MATH result exists (run under our FMA descriptor, so still fp32). With AllowTf32 on the
//   descriptors start at CUDNN_DEFAULT_MATH (TF32 allowed on Ampere and later) and each direction is then set to the
//   math type its chosen algorithm was timed with (never CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION, which may turn fp32
//   data into fp16).
public sealed unsafe partial class CudaBackend
{
    /// <summary>The most workspace an algorithm search may use.</summary>
    private const long MaxConvolutionWorkspace = 512L << 20;

    /// <summary>Room for every algorithm cuDNN 9 has in any direction (8 forward, 6 data, 7 filter).</summary>
    private const int MaxConvolutionAlgorithms = 16;

    private readonly Dictionary<ConvGeometry, ConvPlan> _convPlans = new(ConvGeometryComparer.Instance);

    public void ConvolutionForward(ConvGeometry g, Tensor x, Tensor w, Tensor? bias, Tensor y)
    {
        CheckConvTensor(x, g.Input, "x"); CheckConvTensor(w, g.Filter, "w"); CheckConvTensor(y, g.Output, "y");
        if (bias is not null) CheckLength(bias, g.OutChannels, "bias");
        using var _ = Enter();
        if (IsEmpty(g))
        {
            // Nothing to sum (no image, or no input channel): y is just the bias, or zero.
            ZeroAndAddBias(g, y, bias);
            return;
        }
        var plan = ConvPlanFor(g);
        Convolve(plan, ConvDirection.Forward, Ptr(x), Ptr(w), Ptr(y));
        if (bias is not null)
        {
            float one = 1f;
            CuDnn.Check(CuDnn.cudnnAddTensor(_cudnn, &one, plan.Bias, Ptr(bias), &one, plan.Y, Ptr(y)), "cudnnAddTensor(convolution bias)");
        }
    }

    public void ConvolutionBackwardData(ConvGeometry g, Tensor w, Tensor dy, Tensor dx)
    {
        CheckConvTensor(w, g.Filter, "w"); CheckConvTensor(dy, g.Output, "dy"); CheckConvTensor(dx, g.Input, "dx");
        using var _ = Enter();
        if (IsEmpty(g)) { ZeroFill(dx); return; }
        Convolve(ConvPlanFor(g), ConvDirection.BackwardData, Ptr(w), Ptr(dy), Ptr(dx));
    }

    public void ConvolutionBackwardFilter(ConvGeometry g, Tensor x, Tensor dy, Tensor dw)
    {
        CheckConvTensor(x, g.Input, "x"); CheckConvTensor(dy, g.Output, "dy"); CheckConvTensor(dw, g.Filter, "dw");
        using var _ = Enter();
        if (IsEmpty(g)) { ZeroFill(dw); return; }
        Convolve(ConvPlanFor(g), ConvDirection.BackwardFilter, Ptr(x), Ptr(dy), Ptr(dw));
    }

    // ---- running one direction ----

    private enum ConvDirection { Forward, BackwardData, BackwardFilter }

    /// <summary>
    /// Runs one direction of the plan's convolution: <paramref name="a"/>, <paramref name="b"/> are its two inputs in
    /// cuDNN's argument order (forward: x, w; backward data: w, dy; backward filter: x, dy), <paramref name="output"/>
    /// is overwritten. The first call per direction searches for the algorithm. Call with the lock held.
    /// </summary>
    private void Convolve(ConvPlan plan, ConvDirection direction, ulong a, ulong b, ulong output)
    {
        var choice = plan.Choices[(int)direction];
        if (choice.Algorithm >= 0)
        {
            // The warm path: one launch on the stream.
            CuDnn.Check(Run(plan, direction, choice, a, b, output), RunName(direction));
            return;
        }

        var candidates = FindAlgorithms(plan, direction, a, b, output);
        int status = 0;
        foreach (var perf in candidates)
        {
            choice.Algorithm = perf.Algo;
            choice.WorkspaceBytes = perf.Memory;
            // With TF32 allowed, run under the math type the algorithm was timed with; otherwise stay on FMA.
            if (AllowTf32) CuDnn.Check(CuDnn.cudnnSetConvolutionMathType(choice.Convolution, perf.MathType), "cudnnSetConvolutionMathType");
            status = Run(plan, direction, choice, a, b, output);
            if (status == 0) return;
        }
        choice.Algorithm = -1;
        CuDnn.Check(status, $"{RunName(direction)} (every algorithm cuDNN found failed for {plan.Geometry})");
    }

    private static string RunName(ConvDirection direction) => direction switch
    {
        ConvDirection.Forward => "cudnnConvolutionForward",
        ConvDirection.BackwardData => "cudnnConvolutionBackwardData",
        _ => "cudnnConvolutionBackwardFilter",
    };

    /// <summary>One cuDNN convolution call with alpha = 1, beta = 0 (output overwritten); returns its status.</summary>
    private int Run(ConvPlan plan, ConvDirection direction, ConvChoice choice, ulong a, ulong b, ulong output)
    {
        float alpha = 1f, beta = 0f;
        ulong workspace = Workspace((long)choice.WorkspaceBytes);
        return direction switch
        {
            ConvDirection.Forward => CuDnn.cudnnConvolutionForward(_cudnn, &alpha, plan.X, a, plan.Filter, b, choice.Convolution,
                choice.Algorithm, workspace, choice.WorkspaceBytes, &beta, plan.Y, output),
            ConvDirection.BackwardData => CuDnn.cudnnConvolutionBackwardData(_cudnn, &alpha, plan.Filter, a, plan.Y, b, choice.Convolution,
                choice.Algorithm, workspace, choice.WorkspaceBytes, &beta, plan.X, output),
            _ => CuDnn.cudnnConvolutionBackwardFilter(_cudnn, &alpha, plan.X, a, plan.Y, b, choice.Convolution,
                choice.Algorithm, workspace, choice.WorkspaceBytes, &beta, plan.Filter, output),
        };
    }

    // ---- choosing the algorithm ----

    /// <summary>
    /// Times the algorithms with cudnnFind*AlgorithmEx on the real buffers and returns the usable ones, the preferred
    /// first (see the file comment), then the rest fastest first as fallbacks.
    /// </summary>
    private List<CuDnn.ConvolutionPerf> FindAlgorithms(ConvPlan plan, ConvDirection direction, ulong a, ulong b, ulong output)
    {
        Driver.Check(Driver.cuMemGetInfo_v2(out nuint free, out _), "cuMemGetInfo_v2");
        long bound = Math.Min(MaxConvolutionWorkspace, (long)(free / 4));
        bound -= bound % sizeof(float);
        ulong workspace = Workspace(bound);
        var convolution = plan.Choices[(int)direction].Convolution;
        // The perf structs are read by layout: 48 bytes on 64-bit (see CuDnn.ConvolutionPerf).
        if (sizeof(CuDnn.ConvolutionPerf) != 48) throw new PlatformNotSupportedException("cuDNN's algorithm-perf struct layout assumes a 64-bit process.");

        var perfs = stackalloc CuDnn.ConvolutionPerf[MaxConvolutionAlgorithms];
        int returned;
        int status = direction switch
        {
            ConvDirection.Forward => CuDnn.cudnnFindConvolutionForwardAlgorithmEx(_cudnn, plan.X, a, plan.Filter, b, convolution,
                plan.Y, output, MaxConvolutionAlgorithms, out returned, perfs, workspace, (nuint)bound),
            ConvDirection.BackwardData => CuDnn.cudnnFindConvolutionBackwardDataAlgorithmEx(_cudnn, plan.Filter, a, plan.Y, b, convolution,
                plan.X, output, MaxConvolutionAlgorithms, out returned, perfs, workspace, (nuint)bound),
            _ => CuDnn.cudnnFindConvolutionBackwardFilterAlgorithmEx(_cudnn, plan.X, a, plan.Y, b, convolution,
                plan.Filter, output, MaxConvolutionAlgorithms, out returned, perfs, workspace, (nuint)bound),
        };
        CuDnn.Check(status, direction switch
        {
            ConvDirection.Forward => "cudnnFindConvolutionForwardAlgorithmEx",
            ConvDirection.BackwardData => "cudnnFindConvolutionBackwardDataAlgorithmEx",
            _ => "cudnnFindConvolutionBackwardFilterAlgorithmEx",
        });

        // Usable: succeeded, and within the math we allow. Without TF32, tensor-op results are never taken, and
        // results reported as DEFAULT_MATH only when there is no FMA_MATH one (they run under our FMA descriptor).
        var usable = new List<CuDnn.ConvolutionPerf>();
        for (int i = 0; i < Math.Min(returned, MaxConvolutionAlgorithms); i++)
        {
            var p = perfs[i];
            if (p.Status != 0 || p.Algo < 0) continue;
            if (!AllowTf32 && p.MathType != CuDnn.FmaMath && p.MathType != CuDnn.DefaultMath) continue;
            // Even with TF32 allowed, never let cuDNN down-convert fp32 data to fp16/bf16.
            if (p.MathType == CuDnn.TensorOpMathAllowConversion) continue;
            usable.Add(p);
        }
        if (usable.Count == 0)
        {
            var found = new System.Text.StringBuilder();
            for (int i = 0; i < Math.Min(returned, MaxConvolutionAlgorithms); i++)
                found.Append($" [algo {perfs[i].Algo}: status {perfs[i].Status}, math {perfs[i].MathType}]");
            throw new InvalidOperationException(
                $"cuDNN found no usable {direction} algorithm for {plan.Geometry} (AllowTf32 = {AllowTf32}); it returned{(found.Length == 0 ? " nothing" : found)}.");
        }
        if (!AllowTf32 && usable.Exists(p => p.MathType == CuDnn.FmaMath))
        {
            var fma = usable.FindAll(p => p.MathType == CuDnn.FmaMath);
            usable.RemoveAll(p => p.MathType == CuDnn.FmaMath);
            usable.InsertRange(0, fma);
            return PreferDeterministic(usable, fma.Count);
        }
        return PreferDeterministic(usable, usable.Count);
    }

    /// <summary>
    /// Orders the first <paramref name="group"/> entries by time and moves to the front the fastest deterministic one
    /// if it is within 10% of the fastest of them; the entries after the group keep their order behind.
    /// </summary>
    private static List<CuDnn.ConvolutionPerf> PreferDeterministic(List<CuDnn.ConvolutionPerf> perfs, int group)
    {
        perfs.Sort(0, group, PerfTimeComparer.Instance);
        if (group == 0) return perfs;
        float fastest = perfs[0].Time;
        for (int i = 0; i < group; i++)
        {
            if (perfs[i].Determinism != CuDnn.Deterministic) continue;
            if (perfs[i].Time <= fastest * 1.1f)
            {
                var chosen = perfs[i];
                perfs.RemoveAt(i);
                perfs.Insert(0, chosen);
            }
            break;
        }
        return perfs;
    }

    private sealed class PerfTimeComparer : IComparer<CuDnn.ConvolutionPerf>
    {
        public static readonly PerfTimeComparer Instance = new();
        public int Compare(CuDnn.ConvolutionPerf a, CuDnn.ConvolutionPerf b) => a.Time.CompareTo(b.Time);
    }

    // ---- plans: descriptors per geometry ----

    /// <summary>One direction's convolution descriptor and chosen algorithm (-1 until searched).</summary>
    private sealed class ConvChoice
    {
        public nint Convolution;
        public int Algorithm = -1;
        public nuint WorkspaceBytes;
    }

    /// <summary>The descriptors of one geometry, kept for the life of the backend.</summary>
    private sealed class ConvPlan
    {
        public required ConvGeometry Geometry;
        public nint X, Y, Filter, Bias;
        /// <summary>Indexed by <see cref="ConvDirection"/>: each direction has its own descriptor so each keeps its own math type.</summary>
        public readonly ConvChoice[] Choices = [new(), new(), new()];
    }

    /// <summary>The plan for <paramref name="g"/>, made on first use. Call with the lock held.</summary>
    private ConvPlan ConvPlanFor(ConvGeometry g)
    {
        if (_convPlans.TryGetValue(g, out var plan)) return plan;

        int rank = Math.Max(4, g.Input.Rank), spatial = rank - 2;
        plan = new ConvPlan
        {
            Geometry = g,
            X = TensorDescriptor(g.Input),
            Y = TensorDescriptor(g.Output),
            Bias = TensorDescriptor(BiasShape(g.OutChannels, rank)),
        };

        // Filter [O, C/groups, K...] padded with trailing 1s like the tensors (1-D: [O, C/g, K, 1]).
        var dims = stackalloc int[rank];
        for (int i = 0; i < rank; i++) dims[i] = i < g.Filter.Rank ? g.Filter[i] : 1;
        CuDnn.Check(CuDnn.cudnnCreateFilterDescriptor(out plan.Filter), "cudnnCreateFilterDescriptor");
        CuDnn.Check(CuDnn.cudnnSetFilterNdDescriptor(plan.Filter, CuDnn.DataFloat, CuDnn.TensorNchw, rank, dims), $"cudnnSetFilterNdDescriptor({g.Filter})");

        // Padding, stride, dilation per spatial axis; the padded axis of a 1-D problem gets 0, 1, 1.
        var padding = stackalloc int[spatial];
        var stride = stackalloc int[spatial];
        var dilation = stackalloc int[spatial];
        for (int i = 0; i < spatial; i++)
        {
            bool real = i < g.SpatialRank;
            padding[i] = real ? g.Padding[i] : 0;
            stride[i] = real ? g.Stride[i] : 1;
            dilation[i] = real ? g.Dilation[i] : 1;
        }
        int mode = g.Mode == ConvolutionMode.Convolution ? CuDnn.Convolution : CuDnn.CrossCorrelation;
        int math = AllowTf32 ? CuDnn.DefaultMath : CuDnn.FmaMath;
        foreach (var choice in plan.Choices)
        {
            CuDnn.Check(CuDnn.cudnnCreateConvolutionDescriptor(out choice.Convolution), "cudnnCreateConvolutionDescriptor");
            CuDnn.Check(CuDnn.cudnnSetConvolutionNdDescriptor(choice.Convolution, spatial, padding, stride, dilation, mode, CuDnn.DataFloat),
                $"cudnnSetConvolutionNdDescriptor({g})");
            CuDnn.Check(CuDnn.cudnnSetConvolutionGroupCount(choice.Convolution, g.Groups), "cudnnSetConvolutionGroupCount");
            CuDnn.Check(CuDnn.cudnnSetConvolutionMathType(choice.Convolution, math), "cudnnSetConvolutionMathType");
        }

        // cuDNN must compute the output shape we do, else the descriptors do not say what we mean.
        var outDims = stackalloc int[rank];
        CuDnn.Check(CuDnn.cudnnGetConvolutionNdForwardOutputDim(plan.Choices[0].Convolution, plan.X, plan.Filter, rank, outDims),
            $"cudnnGetConvolutionNdForwardOutputDim({g})");
        var expected = new int[rank];
        for (int i = 0; i < rank; i++) expected[i] = i < g.Output.Rank ? g.Output[i] : 1;
        if (!new ReadOnlySpan<int>(outDims, rank).SequenceEqual(expected))
        {
            CuDnn.cudnnDestroyFilterDescriptor(plan.Filter);
            foreach (var choice in plan.Choices) CuDnn.cudnnDestroyConvolutionDescriptor(choice.Convolution);
            throw new InvalidOperationException(
                $"cuDNN computes output shape {Shape.Format(new ReadOnlySpan<int>(outDims, rank).ToArray())} but ConvGeometry.Output is {Shape.Format(expected)} for {g}.");
        }
        return _convPlans[g] = plan;
    }

    /// <summary>[1, O, 1, ...] of rank <paramref name="rank"/>: the bias broadcast over images and positions.</summary>
    private static Shape BiasShape(int channels, int rank)
    {
        var dims = new int[rank];
        Array.Fill(dims, 1);
        dims[1] = channels;
        return new Shape(dims);
    }

    /// <summary>Plans are shared by geometries with equal values (shapes, padding, stride, dilation, groups, mode).</summary>
    private sealed class ConvGeometryComparer : IEqualityComparer<ConvGeometry>
    {
        public static readonly ConvGeometryComparer Instance = new();

        public bool Equals(ConvGeometry? a, ConvGeometry? b) =>
            ReferenceEquals(a, b)
            || a is not null && b is not null
            && a.Input == b.Input && a.Filter == b.Filter && a.Output == b.Output
            && a.Padding.AsSpan().SequenceEqual(b.Padding) && a.Stride.AsSpan().SequenceEqual(b.Stride)
            && a.Dilation.AsSpan().SequenceEqual(b.Dilation) && a.Groups == b.Groups && a.Mode == b.Mode;

        public int GetHashCode(ConvGeometry g)
        {
            var h = new HashCode();
            h.Add(g.Input); h.Add(g.Filter); h.Add(g.Groups); h.Add(g.Mode);
            foreach (int v in g.Padding) h.Add(v);
            foreach (int v in g.Stride) h.Add(v);
            foreach (int v in g.Dilation) h.Add(v);
            return h.ToHashCode();
        }
    }

    // ---- empty problems and checks ----

    /// <summary>No image or no channel: cuDNN rejects zero-sized descriptors, and there is nothing to sum anyway.</summary>
    private static bool IsEmpty(ConvGeometry g) => g.Input.Length == 0 || g.Filter.Length == 0 || g.Output.Length == 0;

    private void ZeroFill(Tensor t)
    {
        if (t.Length > 0) Driver.Check(Driver.cuMemsetD32Async(Ptr(t), 0, (nuint)t.Length, _stream), "cuMemsetD32Async");
    }

    private void ZeroAndAddBias(ConvGeometry g, Tensor y, Tensor? bias)
    {
        ZeroFill(y);
        if (bias is null || y.Length == 0) return;
        float one = 1f;
        int rank = Math.Max(4, g.Output.Rank);
        CuDnn.Check(CuDnn.cudnnAddTensor(_cudnn, &one, TensorDescriptor(BiasShape(g.OutChannels, rank)), Ptr(bias), &one,
            TensorDescriptor(g.Output), Ptr(y)), "cudnnAddTensor(convolution bias)");
    }

    private static void CheckConvTensor(Tensor t, Shape expected, string name)
    {
        if (t.Length != expected.Length)
            throw new ArgumentException($"{name} {t.Shape} should have the {expected.Length} elements of {expected}.", name);
    }
}
