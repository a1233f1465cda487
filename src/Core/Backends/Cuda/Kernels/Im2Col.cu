// im2col and col2im (CudaBackend.Im2Col.cs) with the CPU's ConvPlan semantics: 1-D and 2-D problems are lifted to
// three spatial dimensions by leading size-1 dimensions (kernel 1, stride 1, padding 0, dilation 1); tap t of the
// kernel is (k0, k1, k2) in row-major order, read flipped (K-1-k) in Convolution mode; input index along a dimension
// = output index * stride + k * dilation - padding. Groups do not matter here: cols holds every input channel.
//   cols [N, C*KV, YV]: row (c, t), column = output position (y0, y1, y2) row-major.
// Col2Im gathers: one thread per input cell sums, taps in ascending order, the one column entry (if any) of each
// tap that reads it. That is the CPU's order of additions for that cell, so the result is bit-identical and needs
// no atomics.

// The lifted geometry, passed by value as one struct argument would need a matching C# layout; plain ints instead.
#define IM2COL_PARAMS \
    int X0, int X1, int X2, int K0, int K1, int K2, int Y0, int Y1, int Y2, \
    int S0, int S1, int S2, int P0, int P1, int P2, int D0, int D1, int D2, int flip

// Kernel position of tap index k along a dimension of size K, flipped in Convolution mode.
__device__ __forceinline__ int im2col_tap(int k, int K, int flip) { return flip ? K - 1 - k : k; }

// cols[((n*C + c)*KV + t)*YV + y] = x[n, c, y*S + k*D - P] or 0 in padding; total = N*C*KV*YV.
extern "C" __global__ void im2col_forward(const float* x, float* cols, long long total, IM2COL_PARAMS)
{
    long long KV = (long long)K0 * K1 * K2, YV = (long long)Y0 * Y1 * Y2, XV = (long long)X0 * X1 * X2;
    GRID_STRIDE(i, total)
    {
        long long yv = i % YV, row = i / YV;
        int t = (int)(row % KV);
        long long nc = row / KV;
        int y2 = (int)(yv % Y2), y1 = (int)(yv / Y2 % Y1), y0 = (int)(yv / ((long long)Y1 * Y2));
        int k2 = im2col_tap(t % K2, K2, flip), k1 = im2col_tap(t / K2 % K1, K1, flip), k0 = im2col_tap(t / (K1 * K2), K0, flip);
        int i0 = y0 * S0 + k0 * D0 - P0, i1 = y1 * S1 + k1 * D1 - P1, i2 = y2 * S2 + k2 * D2 - P2;
        bool inside = i0 >= 0 && i0 < X0 && i1 >= 0 && i1 < X1 && i2 >= 0 && i2 < X2;
        cols[i] = inside ? x[nc * XV + ((long long)i0 * X1 + i1) * X2 + i2] : 0.0f;
    }
}

// The output index along one dimension whose tap k meets input index `at`, or -1 if none (off the stride grid or
// outside the output).
__device__ __forceinline__ int im2col_source(int at, int k, int S, int P, int D, int Y)
{
    int d = at + P - k * D;
    if (d < 0 || d % S != 0) return -1;
    int y = d / S;
    return y < Y ? y : -1;
}

// x[n, c, i] = sum over taps t (ascending) of cols[n, (c, t), y] where y*S + k(t)*D - P = i; total = N*C*XV.
extern "C" __global__ void im2col_backward(const float* cols, float* x, long long total, IM2COL_PARAMS)
{
    int KV = K0 * K1 * K2;
    long long YV = (long long)Y0 * Y1 * Y2, XV = (long long)X0 * X1 * X2;
    GRID_STRIDE(i, total)
    {
        long long xv = i % XV, nc = i / XV;
        int i2 = (int)(xv % X2), i1 = (int)(xv / X2 % X1), i0 = (int)(xv / ((long long)X1 * X2));
        float sum = 0.0f;
        for (int t = 0; t < KV; t++)
        {
            int k2 = im2col_tap(t % K2, K2, flip), k1 = im2col_tap(t / K2 % K1, K1, flip), k0 = im2col_tap(t / (K1 * K2), K0, flip);
            int y0 = im2col_source(i0, k0, S0, P0, D0, Y0);
            int y1 = im2col_source(i1, k1, S1, P1, D1, Y1);
            int y2 = im2col_source(i2, k2, S2, P2, D2, Y2);
            if (y0 < 0 || y1 < 0 || y2 < 0) continue;
            sum += cols[(nc * KV + t) * YV + ((long long)y0 * Y1 + y1) * Y2 + y2];
        }
        x[i] = sum;
    }
}
