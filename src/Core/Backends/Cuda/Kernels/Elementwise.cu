// Element-wise maths, the whole-tensor sum and the per-channel helpers (CudaBackend.Elementwise.cs).
// Matches CpuBackend: float arithmetic for Scale/Add/AddScaled/Multiply/AddChannelBias (compiled with --fmad=false,
// so x * alpha + y rounds twice, like TensorPrimitives.MultiplyAdd); double accumulation for Sum and SumPerChannel.
// Reductions run in a fixed order (fixed grid for a given length, fixed tree in shared memory), so repeated calls
// give the same bits; there are no atomics.

// Threads per block of every kernel in this file (the host launches exactly this many: CudaBackend.BlockSize).
#define EW_THREADS 256

extern "C" __global__ void ew_scale(const float* x, float alpha, float* y, long long n)
{
    GRID_STRIDE(i, n) y[i] = alpha * x[i];
}

extern "C" __global__ void ew_add(const float* a, const float* b, float* y, long long n)
{
    GRID_STRIDE(i, n) y[i] = a[i] + b[i];
}

// y += alpha * x: x * alpha rounded, then the add rounded (no fused multiply-add), as the CPU does.
extern "C" __global__ void ew_add_scaled(const float* x, float alpha, float* y, long long n)
{
    GRID_STRIDE(i, n) y[i] = x[i] * alpha + y[i];
}

extern "C" __global__ void ew_multiply(const float* a, const float* b, float* y, long long n)
{
    GRID_STRIDE(i, n) y[i] = a[i] * b[i];
}

// Sums the EW_THREADS values of s (shared) in a fixed tree; the total ends in s[0]. Every thread of the block calls it.
__device__ void ew_block_sum(double* s)
{
    for (int half = EW_THREADS / 2; half > 0; half >>= 1)
    {
        __syncthreads();
        if ((int)threadIdx.x < half) s[threadIdx.x] += s[threadIdx.x + half];
    }
    __syncthreads();
}

// Stage 1 of Sum: block b writes the double sum of its grid-stride share of x to partial[b].
extern "C" __global__ void ew_sum_partial(const float* x, long long n, double* partial)
{
    __shared__ double s[EW_THREADS];
    double acc = 0.0;
    GRID_STRIDE(i, n) acc += (double)x[i];
    s[threadIdx.x] = acc;
    ew_block_sum(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = s[0];
}

// Stage 2 of Sum (one block): result[0] = the sum of partial[0..count).
extern "C" __global__ void ew_sum_final(const double* partial, int count, double* result)
{
    __shared__ double s[EW_THREADS];
    double acc = 0.0;
    for (int i = threadIdx.x; i < count; i += EW_THREADS) acc += partial[i];
    s[threadIdx.x] = acc;
    ew_block_sum(s);
    if (threadIdx.x == 0) result[0] = s[0];
}

// y[n, c, inner] += bias[c] on [N, C, inner] (inner = product of the spatial sizes, 1 for [N, C]).
extern "C" __global__ void ew_add_channel_bias(float* y, const float* bias, int channels, long long inner, long long n)
{
    GRID_STRIDE(i, n) y[i] = y[i] + bias[(i / inner) % channels];
}

// db[c] = sum over images and positions of dy[n, c, inner], in double, one block per channel (blocks stride over
// channels when there are more channels than blocks). Each thread sums a fixed subset, then a fixed tree.
extern "C" __global__ void ew_sum_per_channel(const float* dy, float* db, int images, int channels, long long inner)
{
    __shared__ double s[EW_THREADS];
    long long perChannel = (long long)images * inner;
    for (int c = blockIdx.x; c < channels; c += gridDim.x)
    {
        double acc = 0.0;
        for (long long j = threadIdx.x; j < perChannel; j += EW_THREADS)
        {
            long long img = j / inner, pos = j - img * inner;
            acc += (double)dy[(img * channels + c) * inner + pos];
        }
        s[threadIdx.x] = acc;
        ew_block_sum(s);
        if (threadIdx.x == 0) db[c] = (float)s[0];
        __syncthreads(); // s is reused by the next channel
    }
}
