using MLNet.ConvNet.Backends.Cuda.Interop;
using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Backends.Cuda;

// Cross-channel LRN and batch normalization in cuDNN, with kernels of our own (Kernels/Normalization.cu) for the
// parameter ranges cuDNN does not take.
//
// How our semantics map onto cuDNN's:
// - Layout: both ops work per channel of dimension 1, each spatial position on its own (LRN) or all pooled (batch
//   norm), so x [N, C, spatial...] (or [N, F]) is described as [N, C, prod(spatial), 1]: always 4-D, whatever
//   the rank, and the same memory.
// - LRN: cudnnLRNCrossChannelForward/Backward with CUDNN_LRN_CROSS_CHANNEL_DIM1. cuDNN's formula is ours:
//   y = x / (k + alpha/n * sum x^2)^beta over the channels [c - floor((n-1)/2), c + n-1-floor((n-1)/2)]; cuDNN
//   divides the alpha it is given by n itself, so it gets LrnOptions.Alpha unchanged. cuDNN accepts n in 1..16
//   (LrnOptions.Validate checks the same), k >= 1e-5 and beta >= 0.01; our options allow any k > 0 and beta >= 0,
//   so below those limits our own kernels run instead. The backward reads x, y and dy, as the CPU does.
//   cuDNN computes in float (its double parameters are cast to float) where the CPU uses double.
// - Batch norm: cudnnBatchNormalizationForwardTraining / ForwardInference / Backward in CUDNN_BATCHNORM_SPATIAL
//   mode with the per-channel tensors described as [1, C, 1, 1]. exponentialAverageFactor = momentum
//   (running = (1 - momentum) running + momentum batch). cuDNN's running variance takes the unbiased batch
//   variance (m / (m - 1) times the biased one), as our IBackend documents; its resultSaveInvVariance is
//   1/sqrt(var + eps) with the biased variance, i.e. our savedInvStd, and resultSaveMean is our savedMean.
//   Epsilon: CUDNN_BN_MIN_EPSILON is 0.0 in cuDNN 9, and the ops require epsilon > 0, so every epsilon goes to
//   cuDNN. With a single value per channel (N * prod(spatial) = 1) the unbiased variance would divide by zero;
//   the CPU takes the biased variance (0) there, and so do our own kernels, which run that case.
//   The backward overwrites dx, dgamma and dbeta (alphaDataDiff = alphaParamDiff = 1, betas 0) and is given the
//   saved mean and inverse std, so cuDNN does not recompute them; it reads x, dy, gamma (not beta, not y).
//   Our IBackend does not pass epsilon to the backward; cuDNN only needs it when the saved statistics are
//   missing, so it gets 1e-5 there (a value every cuDNN version accepts).
public sealed unsafe partial class CudaBackend
{
    private readonly Dictionary<Shape, nint> _flatChannelDescriptors = [];
    private readonly Dictionary<int, nint> _perChannelDescriptors = [];
    private readonly Dictionary<LrnOptions, nint> _lrnDescriptors = [];

    /// <summary>[N, C, prod(spatial), 1] for x of shape [N, C, ...] (rank 2 and up). Call with the lock held.</summary>
    private nint FlatChannelDescriptor(Shape shape)
    {
        if (_flatChannelDescriptors.TryGetValue(shape, out var d)) return d;
        var dims = stackalloc int[4] { shape[0], shape[1], shape.SizeFrom(2), 1 };
        var strides = stackalloc int[4] { dims[1] * dims[2], dims[2], 1, 1 };
        CuDnn.Check(CuDnn.cudnnCreateTensorDescriptor(out d), "cudnnCreateTensorDescriptor");
        CuDnn.Check(CuDnn.cudnnSetTensorNdDescriptor(d, CuDnn.DataFloat, 4, dims, strides), $"cudnnSetTensorNdDescriptor({shape} as [N, C, inner, 1])");
        return _flatChannelDescriptors[shape] = d;
    }

    /// <summary>[1, C, 1, 1]: gamma, beta and the statistics of spatial batch norm. Call with the lock held.</summary>
    private nint PerChannelDescriptor(int channels)
    {
        if (_perChannelDescriptors.TryGetValue(channels, out var d)) return d;
        var dims = stackalloc int[4] { 1, channels, 1, 1 };
        var strides = stackalloc int[4] { channels, 1, 1, 1 };
        CuDnn.Check(CuDnn.cudnnCreateTensorDescriptor(out d), "cudnnCreateTensorDescriptor");
        CuDnn.Check(CuDnn.cudnnSetTensorNdDescriptor(d, CuDnn.DataFloat, 4, dims, strides), $"cudnnSetTensorNdDescriptor([1, {channels}, 1, 1])");
        return _perChannelDescriptors[channels] = d;
    }

    // ---- local response normalization ----

    /// <summary>Whether cuDNN accepts these options (CUDNN_LRN_MIN_N/MAX_N, CUDNN_LRN_MIN_K, CUDNN_LRN_MIN_BETA).</summary>
    private static bool CudnnTakesLrn(LrnOptions o) =>
        o.Size >= CuDnn.LrnMinN && o.Size <= CuDnn.LrnMaxN && o.K >= CuDnn.LrnMinK && o.Beta >= CuDnn.LrnMinBeta;

    /// <summary>The LRN descriptor for <paramref name="o"/> (LrnOptions is a record: keyed by its values). Call with the lock held.</summary>
    private nint LrnDescriptor(LrnOptions o)
    {
        if (_lrnDescriptors.TryGetValue(o, out var d)) return d;
        CuDnn.Check(CuDnn.cudnnCreateLRNDescriptor(out d), "cudnnCreateLRNDescriptor");
        CuDnn.Check(CuDnn.cudnnSetLRNDescriptor(d, (uint)o.Size, o.Alpha, o.Beta, o.K), $"cudnnSetLRNDescriptor({o})");
        return _lrnDescriptors[o] = d;
    }

    public void LrnForward(LrnOptions options, Tensor x, Tensor y)
    {
        using var _ = Enter();
        if (x.Length == 0) return;
        if (!CudnnTakesLrn(options))
        {
            Launch("lrn_forward", Blocks(x.Length), BlockSize, Arg(Ptr(x)), Arg(Ptr(y)), Arg((long)x.Length),
                Arg(x.Shape[1]), Arg((long)x.Shape.SizeFrom(2)), Arg(options.Size), Arg(options.Alpha), Arg(options.Beta), Arg(options.K));
            return;
        }
        float one = 1f, zero = 0f;
        nint d = FlatChannelDescriptor(x.Shape);
        CuDnn.Check(CuDnn.cudnnLRNCrossChannelForward(_cudnn, LrnDescriptor(options), CuDnn.LrnCrossChannelDim1,
            &one, d, Ptr(x), &zero, d, Ptr(y)), "cudnnLRNCrossChannelForward");
    }

    public void LrnBackward(LrnOptions options, Tensor x, Tensor y, Tensor dy, Tensor dx)
    {
        using var _ = Enter();
        if (x.Length == 0) return;
        if (!CudnnTakesLrn(options))
        {
            Launch("lrn_backward", Blocks(x.Length), BlockSize, Arg(Ptr(x)), Arg(Ptr(y)), Arg(Ptr(dy)), Arg(Ptr(dx)), Arg((long)x.Length),
                Arg(x.Shape[1]), Arg((long)x.Shape.SizeFrom(2)), Arg(options.Size), Arg(options.Alpha), Arg(options.Beta), Arg(options.K));
            return;
        }
        float one = 1f, zero = 0f;
        nint d = FlatChannelDescriptor(x.Shape);
        CuDnn.Check(CuDnn.cudnnLRNCrossChannelBackward(_cudnn, LrnDescriptor(options), CuDnn.LrnCrossChannelDim1,
            &one, d, Ptr(y), d, Ptr(dy), d, Ptr(x), &zero, d, Ptr(dx)), "cudnnLRNCrossChannelBackward");
    }

    // ---- batch normalization ----

    /// <summary>Epsilon handed to the backward, which uses the saved statistics instead (see the file's header).</summary>
    private const double BatchNormBackwardEpsilon = 1e-5;

    /// <summary>Values per channel: N * prod(spatial).</summary>
    private static long BatchNormCount(Tensor x) => (long)x.Shape[0] * x.Shape.SizeFrom(2);

    public void BatchNormForwardTraining(Tensor x, Tensor gamma, Tensor beta, float epsilon, float momentum,
        Tensor runningMean, Tensor runningVariance, Tensor y, Tensor savedMean, Tensor savedInvStd)
    {
        using var _ = Enter();
        if (x.Length == 0) return;
        int c = x.Shape[1];
        if (BatchNormCount(x) == 1)
        {
            Launch("bn_single_forward_training", Blocks(c), BlockSize, Arg(Ptr(x)), Arg(Ptr(gamma)), Arg(Ptr(beta)),
                Arg(epsilon), Arg(momentum), Arg(Ptr(runningMean)), Arg(Ptr(runningVariance)), Arg(Ptr(y)),
                Arg(Ptr(savedMean)), Arg(Ptr(savedInvStd)), Arg(c));
            return;
        }
        float one = 1f, zero = 0f;
        nint d = FlatChannelDescriptor(x.Shape);
        CuDnn.Check(CuDnn.cudnnBatchNormalizationForwardTraining(_cudnn, CuDnn.BatchNormSpatial, &one, &zero,
            d, Ptr(x), d, Ptr(y), PerChannelDescriptor(c), Ptr(gamma), Ptr(beta),
            momentum, Ptr(runningMean), Ptr(runningVariance), epsilon, Ptr(savedMean), Ptr(savedInvStd)),
            "cudnnBatchNormalizationForwardTraining");
    }

    public void BatchNormForwardInference(Tensor x, Tensor gamma, Tensor beta, Tensor mean, Tensor variance, float epsilon, Tensor y)
    {
        using var _ = Enter();
        if (x.Length == 0) return;
        float one = 1f, zero = 0f;
        nint d = FlatChannelDescriptor(x.Shape);
        CuDnn.Check(CuDnn.cudnnBatchNormalizationForwardInference(_cudnn, CuDnn.BatchNormSpatial, &one, &zero,
            d, Ptr(x), d, Ptr(y), PerChannelDescriptor(x.Shape[1]), Ptr(gamma), Ptr(beta), Ptr(mean), Ptr(variance), epsilon),
            "cudnnBatchNormalizationForwardInference");
    }

    public void BatchNormBackward(Tensor x, Tensor dy, Tensor gamma, Tensor savedMean, Tensor savedInvStd,
        Tensor dx, Tensor dgamma, Tensor dbeta)
    {
        using var _ = Enter();
        if (x.Length == 0) return;
        BatchNormBackward(x, Ptr(dy), gamma, savedMean, savedInvStd, dx, dgamma, dbeta);
    }

    /// <summary>Batch norm then our ReLU kernel in place on y (no cuDNN fusion for fp32 NCHW; the same values as the two calls).</summary>
    public void BatchNormReluForwardTraining(Tensor x, Tensor gamma, Tensor beta, float epsilon, float momentum,
        Tensor runningMean, Tensor runningVariance, Tensor y, Tensor savedMean, Tensor savedInvStd)
    {
        BatchNormForwardTraining(x, gamma, beta, epsilon, momentum, runningMean, runningVariance, y, savedMean, savedInvStd);
        ActivationForward(ActivationKind.ReLU, 0f, y, y);
    }

    /// <summary>Our ReLU backward kernel at y into the workspace (the masked dy), then the batch norm backward from there.</summary>
    public void BatchNormReluBackward(Tensor x, Tensor y, Tensor dy, Tensor gamma, Tensor savedMean, Tensor savedInvStd,
        Tensor dx, Tensor dgamma, Tensor dbeta)
    {
        SameLength(x, y); SameLength(x, dy);
        using var _ = Enter();
        if (x.Length == 0) return;
        ulong masked = Workspace((long)x.Length * sizeof(float));
        Launch("act_backward", Blocks(x.Length), BlockSize,
            Arg((int)ActivationKind.ReLU), Arg(0f), Arg(Ptr(y)), Arg(Ptr(y)), Arg(Ptr(dy)), Arg(masked), Arg((long)x.Length));
        BatchNormBackward(x, masked, gamma, savedMean, savedInvStd, dx, dgamma, dbeta);
    }

    private void BatchNormBackward(Tensor x, ulong dy, Tensor gamma, Tensor savedMean, Tensor savedInvStd,
        Tensor dx, Tensor dgamma, Tensor dbeta)
    {
        int c = x.Shape[1];
        if (BatchNormCount(x) == 1)
        {
            Launch("bn_single_backward", Blocks(c), BlockSize, Arg(Ptr(x)), Arg(dy), Arg(Ptr(gamma)), Arg(Ptr(savedMean)),
                Arg(Ptr(savedInvStd)), Arg(Ptr(dx)), Arg(Ptr(dgamma)), Arg(Ptr(dbeta)), Arg(c));
            return;
        }
        float one = 1f, zero = 0f;
        nint d = FlatChannelDescriptor(x.Shape);
        CuDnn.Check(CuDnn.cudnnBatchNormalizationBackward(_cudnn, CuDnn.BatchNormSpatial, &one, &zero, &one, &zero,
            d, Ptr(x), d, dy, d, Ptr(dx), PerChannelDescriptor(c), Ptr(gamma), Ptr(dgamma), Ptr(dbeta),
            BatchNormBackwardEpsilon, Ptr(savedMean), Ptr(savedInvStd)),
            "cudnnBatchNormalizationBackward");
    }
}
