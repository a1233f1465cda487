namespace MLNet.ConvNet.Backends.Cuda;

// Softmax cross-entropy and the per-step statistics: kernels in Kernels/Loss.cu.
//
// Labels: the CPU checks every label on each call (it can read them for free). Here that would cost a read-back and
// a device synchronisation per call, so instead the kernels never index with a bad label: a row whose label is not
// an integer in [0, K) gets a NaN loss and NaN gradients, which the trainer's loss shows. Host-side labels are
// checked by CrossEntropy.Forward (Ops/Softmax.cs) before they are uploaded.
public sealed partial class CudaBackend
{
    /// <summary>Rows per block of the cross-entropy forward kernel (one warp per row, LOSS_ROWS_PER_BLOCK in Loss.cu).</summary>
    private const int LossRowsPerBlock = BlockSize / 32;

    public void SoftmaxCrossEntropyForward(Tensor logits, Tensor labels, float labelSmoothing, Tensor loss, Tensor probabilities)
    {
        int n = logits.Shape[0], k = logits.Shape[1];
        CheckLength(labels, n, "labels"); CheckLength(loss, n, "loss"); CheckLength(probabilities, n * k, "probabilities");
        if (n == 0 || k == 0) return;
        using var _ = Enter();
        uint blocks = (uint)Math.Min((n + LossRowsPerBlock - 1) / LossRowsPerBlock, 65535);
        Launch("loss_softmax_xent_forward", blocks, BlockSize,
            Arg(Ptr(logits)), Arg(Ptr(labels)), Arg(labelSmoothing), Arg(Ptr(loss)), Arg(Ptr(probabilities)), Arg(n), Arg(k));
    }

    public void SoftmaxCrossEntropyBackward(Tensor probabilities, Tensor labels, float labelSmoothing, float scale, Tensor dlogits)
    {
        int n = probabilities.Shape[0], k = probabilities.Shape[1];
        CheckLength(labels, n, "labels"); SameLength(probabilities, dlogits);
        if (probabilities.Length == 0) return;
        // The smoothed target's two values, in float as the CPU computes them (e = 0 gives exactly 1 and 0).
        float off = (float)((double)labelSmoothing / k), on = (float)(1.0 - labelSmoothing + (double)labelSmoothing / k);
        using var _ = Enter();
        Launch("loss_softmax_xent_backward", Blocks(probabilities.Length), BlockSize,
            Arg(Ptr(probabilities)), Arg(Ptr(labels)), Arg(on), Arg(off), Arg(scale), Arg(Ptr(dlogits)), Arg(k), Arg((long)probabilities.Length));
    }

    /// <summary>One block of BlockSize threads (LOSS_THREADS in Loss.cu): deterministic, and the batch is small.</summary>
    public void LossAndCorrect(Tensor loss, Tensor probabilities, Tensor labels, Tensor stats, int row)
    {
        int n = probabilities.Shape[0], k = probabilities.Shape[1]; // shapes checked by CrossEntropy.LossAndCorrect
        using var _ = Enter();
        Launch("loss_and_correct", 1, BlockSize,
            Arg(Ptr(loss)), Arg(Ptr(probabilities)), Arg(Ptr(labels)), Arg(Ptr(stats)), Arg(row), Arg(n), Arg(k));
    }
}
