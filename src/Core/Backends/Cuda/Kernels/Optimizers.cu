// Optimizer updates (CudaBackend.Optimizers.cs): one thread per element, the arithmetic of
// CpuBackend.Optimizers.cs operation for operation in double (compiled with --fmad=false: no fused multiply-add;
// double division and square root are correctly rounded), so the GPU gives the CPU's bits for the same inputs.
// Hyper-parameters arrive as doubles converted from the callers' floats, as the CPU converts them; Adam's bias
// corrections c1 = 1 - beta1^step and c2 = 1 - beta2^step are computed on the host with Math.Pow.

// velocity may be null (momentum = 0): then d = g.
extern "C" __global__ void opt_sgd(float* p, const float* g, float* velocity, double lr, double mu, int nesterov, double wd, long long n)
{
    GRID_STRIDE(i, n)
    {
        double gi = (double)g[i] + wd * (double)p[i];
        double d = gi;
        if (velocity)
        {
            double vi = mu * (double)velocity[i] + gi;
            velocity[i] = (float)vi;
            d = nesterov ? gi + mu * vi : vi;
        }
        p[i] = (float)((double)p[i] - lr * d);
    }
}

extern "C" __global__ void opt_adam(float* p, const float* g, float* m, float* v, double lr, double b1, double b2, double eps,
    double wd, int decoupled, double c1, double c2, long long n)
{
    GRID_STRIDE(i, n)
    {
        double pi = (double)p[i], gi = (double)g[i];
        if (decoupled) pi -= lr * wd * pi;
        else gi += wd * pi;
        double mi = b1 * (double)m[i] + (1.0 - b1) * gi;
        double vi = b2 * (double)v[i] + (1.0 - b2) * gi * gi;
        m[i] = (float)mi;
        v[i] = (float)vi;
        p[i] = (float)(pi - lr * (mi / c1) / (sqrt(vi / c2) + eps));
    }
}
