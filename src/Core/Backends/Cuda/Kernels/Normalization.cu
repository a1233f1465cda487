// LRN and batch-norm kernels of our own, for the cases cuDNN cannot take (CudaBackend.Normalization.cs decides):
// - LRN with k < CUDNN_LRN_MIN_K (1e-5) or beta < CUDNN_LRN_MIN_BETA (0.01), which our LrnOptions allow;
// - batch norm with one value per channel (N * prod(spatial) = 1), where the unbiased variance of the running
//   update would divide by zero: the CPU takes the biased variance (0) there.
// Both follow the CPU reference (CpuBackend.Normalization.cs) step by step, in double.

// K + Alpha/Size * (sum of x^2 over the window of channel ch), x read as [N, C, inner]; base = n*C*inner + i.
__device__ double lrn_scale(const float* x, long long base, int ch, int channels, long long inner,
                            int size, float alpha, float k)
{
    int lo = (size - 1) / 2, hi = size - 1 - lo;
    int first = max(0, ch - lo), last = min(channels - 1, ch + hi);
    double sum = 0;
    for (int j = first; j <= last; j++)
    {
        double v = x[base + j * inner];
        sum += v * v;
    }
    return (double)k + (double)alpha / size * sum;
}

// y = x * s^-beta, one thread per element; total = N * C * inner.
extern "C" __global__ void lrn_forward(const float* x, float* y, long long total, int channels, long long inner,
                                       int size, float alpha, float beta, float k)
{
    GRID_STRIDE(i, total)
    {
        long long i0 = i % inner, nc = i / inner;
        int ch = (int)(nc % channels);
        long long base = (nc - ch) * inner + i0;
        double s = lrn_scale(x, base, ch, channels, inner, size, alpha, k);
        y[i] = (float)(x[i] * pow(s, -(double)beta));
    }
}

// dx[j] = dy[j] s[j]^-beta - 2 alpha beta / size * x[j] * sum over the channels c whose window holds j of
// dy[c] y[c] / s[c]; those are c in [j - hi, j + lo]. The scales of the neighbours are computed again here
// (at most 16 of them), so the kernel needs no scratch memory. dx is overwritten.
extern "C" __global__ void lrn_backward(const float* x, const float* y, const float* dy, float* dx, long long total,
                                        int channels, long long inner, int size, float alpha, float beta, float k)
{
    int lo = (size - 1) / 2, hi = size - 1 - lo;
    double factor = 2.0 * (double)alpha * (double)beta / size;
    GRID_STRIDE(i, total)
    {
        long long i0 = i % inner, nc = i / inner;
        int ch = (int)(nc % channels);
        long long base = (nc - ch) * inner + i0;
        int first = max(0, ch - hi), last = min(channels - 1, ch + lo);
        double sum = 0;
        for (int c = first; c <= last; c++)
        {
            long long at = base + c * inner;
            double s = lrn_scale(x, base, c, channels, inner, size, alpha, k);
            sum += (double)dy[at] * y[at] / s;
        }
        double own = lrn_scale(x, base, ch, channels, inner, size, alpha, k);
        dx[i] = (float)(dy[i] * pow(own, -(double)beta) - factor * x[i] * sum);
    }
}

// Training-mode batch norm when each channel holds a single value (x is [1, C, 1...]): mean = x, variance 0.
extern "C" __global__ void bn_single_forward_training(const float* x, const float* gamma, const float* beta,
    float epsilon, float momentum, float* runningMean, float* runningVariance, float* y, float* savedMean,
    float* savedInvStd, int channels)
{
    GRID_STRIDE(ch, channels)
    {
        double mean = x[ch], variance = 0;
        double invStd = 1.0 / sqrt(variance + epsilon);
        double gain = gamma[ch] * invStd, shift = beta[ch];
        y[ch] = (float)(gain * (x[ch] - mean) + shift);
        savedMean[ch] = (float)mean;
        savedInvStd[ch] = (float)invStd;
        runningMean[ch] = (float)((1.0 - momentum) * runningMean[ch] + (double)momentum * mean);
        runningVariance[ch] = (float)((1.0 - momentum) * runningVariance[ch] + (double)momentum * variance);
    }
}

// Its backward: dbeta = dy, dgamma = dy xhat, dx = gamma invstd (dy - dbeta - xhat dgamma) (m = 1); all overwritten.
extern "C" __global__ void bn_single_backward(const float* x, const float* dy, const float* gamma, const float* savedMean,
    const float* savedInvStd, float* dx, float* dgamma, float* dbeta, int channels)
{
    GRID_STRIDE(ch, channels)
    {
        double mean = savedMean[ch], invStd = savedInvStd[ch];
        double sumDy = dy[ch];
        double sumDyXhat = dy[ch] * ((x[ch] - mean) * invStd);
        double k = gamma[ch] * invStd / 1.0;
        float g = (float)(k * (1.0 * (double)dy[ch] - sumDy - (x[ch] - mean) * invStd * sumDyXhat));
        dbeta[ch] = (float)sumDy;
        dgamma[ch] = (float)sumDyXhat;
        dx[ch] = g;
    }
}
