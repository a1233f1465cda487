// Dropout and the element-wise activations (CudaBackend.Activation.cs), formula for formula as CpuBackend.Activation.cs.
// Dropout uses the CPU's counter-based generator keyed by (seed, index) in 64-bit unsigned arithmetic, so the GPU
// draws exactly the CPU's mask. Activation kinds are numbered as Ops.ActivationKind (checked on the host).

#define ACT_RELU 0
#define ACT_LEAKY_RELU 1
#define ACT_ELU 2
#define ACT_SIGMOID 3
#define ACT_TANH 4

// SplitMix64's finalizer (Rng.Mix64).
__device__ __forceinline__ unsigned long long act_mix64(unsigned long long z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

// CpuBackend.DropoutUniform: a double in [0, 1) from (seed, index); 0x9E3779B97F4A7C15 is Rng.GoldenGamma.
__device__ __forceinline__ double act_dropout_uniform(unsigned long long seed, unsigned long long index)
{
    unsigned long long key = act_mix64(seed);
    unsigned long long z = act_mix64(key + (index + 1ULL) * 0x9E3779B97F4A7C15ULL);
    return (double)(z >> 11) * (1.0 / 9007199254740992.0); // 2^53
}

// mask[i] = 0 when u(seed, i) < p, else keep = 1/(1-p) (computed in float on the host); y = x * mask.
extern "C" __global__ void act_dropout(const float* x, float p, float keep, unsigned long long seed, float* mask, float* y, long long n)
{
    GRID_STRIDE(i, n)
    {
        float m = act_dropout_uniform(seed, (unsigned long long)i) < (double)p ? 0.0f : keep;
        mask[i] = m;
        y[i] = x[i] * m;
    }
}

// 1 for x > 0, `below` for x <= 0, NaN for NaN (CpuBackend.PiecewiseSlope).
__device__ __forceinline__ float act_slope(float x, float below)
{
    return x > 0.0f ? 1.0f : (x <= 0.0f ? below : x);
}

extern "C" __global__ void act_forward(int kind, float alpha, const float* x, float* y, long long n)
{
    GRID_STRIDE(i, n)
    {
        float v = x[i], r;
        switch (kind)
        {
        case ACT_RELU:
            // max(x, 0) with NaN kept (TensorPrimitives.Max propagates NaN; fmaxf would not) and -0 giving +0.
            r = v > 0.0f ? v : (v != v ? v : 0.0f);
            break;
        case ACT_LEAKY_RELU:
            r = v > 0.0f ? v : alpha * v;
            break;
        case ACT_ELU:
            // exp(x) - 1 in double, as the CPU (no cancellation near 0).
            r = v > 0.0f ? v : (float)((double)alpha * (exp((double)v) - 1.0));
            break;
        case ACT_SIGMOID:
        {
            // Through exp(-|x|), which never overflows (CpuBackend.StableSigmoid).
            double e = exp(-fabs((double)v));
            r = (float)(v >= 0.0f ? 1.0 / (1.0 + e) : e / (1.0 + e));
            break;
        }
        default: // ACT_TANH: in double, rounded once (the CPU's float tanh is within an ulp of this)
            r = (float)tanh((double)v);
            break;
        }
        y[i] = r;
    }
}

// dx given x, y = f(x) and dy: ReLU, LeakyReLU and ELU read x; Sigmoid and Tanh read y.
extern "C" __global__ void act_backward(int kind, float alpha, const float* x, const float* y, const float* dy, float* dx, long long n)
{
    GRID_STRIDE(i, n)
    {
        float g = dy[i], r;
        switch (kind)
        {
        case ACT_RELU:
            r = g * act_slope(x[i], 0.0f); // derivative 0 at the kink
            break;
        case ACT_LEAKY_RELU:
            r = g * act_slope(x[i], alpha);
            break;
        case ACT_ELU:
        {
            float v = x[i];
            r = v > 0.0f ? g : (float)((double)g * ((double)alpha * exp((double)v)));
            break;
        }
        case ACT_SIGMOID:
        {
            float s = y[i];
            r = g * (s * (1.0f - s));
            break;
        }
        default: // ACT_TANH
        {
            float t = y[i];
            r = g * (1.0f - t * t);
            break;
        }
        }
        dx[i] = r;
    }
}
