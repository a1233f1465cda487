// Softmax cross-entropy with label smoothing and the per-step loss / accuracy statistics (CudaBackend.Loss.cs),
// computed as CpuBackend.Activation.cs does: row max in float, exponentials, their sum and the loss in double.
// One warp per row of [N, K] (LOSS_ROWS_PER_BLOCK rows per block); the warp reductions use a fixed xor butterfly, so
// results are deterministic (and every lane holds the same total: double addition is commutative).
// Labels are class indices stored as floats. The CPU refuses a bad label with an exception; here a row whose label
// is not an integer in [0, K) gets a NaN loss (and NaN gradients) instead of reading out of bounds, so a bad label
// shows up in the loss without a per-call read-back. The Ops layer checks host-side labels before they are uploaded.

#define LOSS_THREADS 256
#define LOSS_ROWS_PER_BLOCK (LOSS_THREADS / 32)
#define LOSS_FULL_MASK 0xffffffffu

__device__ __forceinline__ float loss_nan() { return __int_as_float(0x7fffffff); }

// The label as an index, or -1 when it is not an integer in [0, k) (NaN included).
__device__ __forceinline__ int loss_label(float v, int k)
{
    return (v >= 0.0f && v < (float)k && v == floorf(v)) ? (int)v : -1;
}

// max(a, b) that propagates NaN, as TensorPrimitives.Max does.
__device__ __forceinline__ float loss_max(float a, float b)
{
    return (a > b || a != a) ? a : b;
}

__device__ __forceinline__ double loss_warp_sum(double v)
{
    for (int m = 16; m > 0; m >>= 1) v += __shfl_xor_sync(LOSS_FULL_MASK, v, m);
    return v;
}

__device__ __forceinline__ float loss_warp_max(float v)
{
    for (int m = 16; m > 0; m >>= 1) v = loss_max(v, __shfl_xor_sync(LOSS_FULL_MASK, v, m));
    return v;
}

// probabilities[row] = softmax(logits[row]); loss[row] = logsumexp - target, both relative to the row max, with
// target = x[label] - max, or (1 - e)(x[label] - max) + e * mean(x - max) when smoothing e != 0.
extern "C" __global__ void loss_softmax_xent_forward(const float* logits, const float* labels, float smoothing,
    float* loss, float* probabilities, int rows, int k)
{
    int lane = threadIdx.x & 31;
    // Warp w of block b takes rows b * LOSS_ROWS_PER_BLOCK + w, then strides over the grid; the loop bound is the
    // same for every lane of a warp, so the shuffles below always run with the full warp.
    for (int row = blockIdx.x * LOSS_ROWS_PER_BLOCK + (threadIdx.x >> 5); row < rows; row += gridDim.x * LOSS_ROWS_PER_BLOCK)
    {
        const float* xs = logits + (long long)row * k;
        float* ps = probabilities + (long long)row * k;

        float mf = xs[0];
        for (int j = lane; j < k; j += 32) mf = loss_max(mf, xs[j]);
        double max = (double)loss_warp_max(mf);

        double sum = 0.0;
        for (int j = lane; j < k; j += 32) sum += exp((double)xs[j] - max);
        double logSum = log(loss_warp_sum(sum));
        for (int j = lane; j < k; j += 32) ps[j] = (float)exp((double)xs[j] - max - logSum);

        double shiftedSum = 0.0;
        if (smoothing != 0.0f)
        {
            for (int j = lane; j < k; j += 32) shiftedSum += (double)xs[j] - max;
            shiftedSum = loss_warp_sum(shiftedSum);
        }
        if (lane == 0)
        {
            int label = loss_label(labels[row], k);
            if (label < 0) loss[row] = loss_nan();
            else
            {
                double target = (double)xs[label] - max;
                if (smoothing != 0.0f) target = (1.0 - (double)smoothing) * target + (double)smoothing * (shiftedSum / k);
                loss[row] = (float)(logSum - target);
            }
        }
    }
}

// dlogits = scale * (p - q), q = `on` at the label and `off` elsewhere (both computed in float on the host as the CPU
// does); one thread per element.
extern "C" __global__ void loss_softmax_xent_backward(const float* probabilities, const float* labels, float on, float off,
    float scale, float* dlogits, int k, long long n)
{
    GRID_STRIDE(i, n)
    {
        long long row = i / k;
        int j = (int)(i - row * k);
        int label = loss_label(labels[row], k);
        dlogits[i] = label < 0 ? loss_nan() : scale * (probabilities[i] - (j == label ? on : off));
    }
}

// One block: stats[2*row] = (float) sum of loss[0..rows) in double, stats[2*row + 1] = how many rows have their
// first maximal probability at the label. Each thread takes rows tid, tid + LOSS_THREADS, ...; a fixed tree adds up.
extern "C" __global__ void loss_and_correct(const float* loss, const float* probabilities, const float* labels,
    float* stats, int row, int rows, int k)
{
    __shared__ double sums[LOSS_THREADS];
    __shared__ int hits[LOSS_THREADS];
    double s = 0.0;
    int h = 0;
    for (int i = threadIdx.x; i < rows; i += LOSS_THREADS)
    {
        s += (double)loss[i];
        const float* r = probabilities + (long long)i * k;
        int best = 0;
        for (int j = 1; j < k; j++) if (r[j] > r[best]) best = j;
        if (best == (int)labels[i]) h++;
    }
    sums[threadIdx.x] = s;
    hits[threadIdx.x] = h;
    for (int half = LOSS_THREADS / 2; half > 0; half >>= 1)
    {
        __syncthreads();
        if ((int)threadIdx.x < half)
        {
            sums[threadIdx.x] += sums[threadIdx.x + half];
            hits[threadIdx.x] += hits[threadIdx.x + half];
        }
    }
    if (threadIdx.x == 0)
    {
        stats[2 * row] = (float)sums[0];
        stats[2 * row + 1] = (float)hits[0];
    }
}
