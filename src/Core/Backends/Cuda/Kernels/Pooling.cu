// Pooling kernels of our own, used only where cuDNN refuses a geometry or computes another output size
// (CudaBackend.Pooling.cs decides). They follow the CPU reference (CpuBackend.Pooling.cs) step by step: every
// pooling is run as a 3-D one (leading spatial sizes 1, window 1, stride 1, padding 0), max takes the first
// maximal in-input cell in scan order (the first NaN wins), averages sum in double and round once.
// mode: 0 max, 1 average counting padding, 2 average over the in-input cells (Ops.PoolingMode).

// The in-input part of the window of output cell (od, oh, ow): [d0, d1) x [h0, h1) x [w0, w1).
struct pool_window { int d0, d1, h0, h1, w0, w1; };

__device__ pool_window pool_window_at(int od, int oh, int ow, int id, int ih, int iw, int wd, int wh, int ww,
                                      int sd, int sh, int sw, int pd, int ph, int pw)
{
    pool_window w;
    int d = od * sd - pd, h = oh * sh - ph, c = ow * sw - pw;
    w.d0 = max(d, 0); w.d1 = min(d + wd, id);
    w.h0 = max(h, 0); w.h1 = min(h + wh, ih);
    w.w0 = max(c, 0); w.w1 = min(c + ww, iw);
    return w;
}

// Index in the plane of the first maximal cell of the window; once a NaN is met nothing replaces it.
__device__ int pool_argmax(const float* plane, pool_window w, int ih, int iw)
{
    int best = (w.d0 * ih + w.h0) * iw + w.w0;
    float m = plane[best];
    for (int d = w.d0; d < w.d1; d++)
        for (int h = w.h0; h < w.h1; h++)
        {
            int row = (d * ih + h) * iw;
            for (int c = w.w0; c < w.w1; c++)
            {
                float v = plane[row + c];
                if (v > m || (v != v && m == m)) { m = v; best = row + c; }
            }
        }
    return best;
}

__device__ double pool_divisor(int mode, pool_window w, int wd, int wh, int ww)
{
    return mode == 1 ? (double)wd * wh * ww : (double)(w.d1 - w.d0) * (w.h1 - w.h0) * (w.w1 - w.w0);
}

// One thread per output cell; total = planes * od * oh * ow.
extern "C" __global__ void pool_forward(const float* x, float* y, long long total,
    int id, int ih, int iw, int od, int oh, int ow, int wd, int wh, int ww,
    int sd, int sh, int sw, int pd, int ph, int pw, int mode)
{
    long long outVolume = (long long)od * oh * ow, inVolume = (long long)id * ih * iw;
    GRID_STRIDE(i, total)
    {
        long long plane = i / outVolume;
        int o = (int)(i - plane * outVolume);
        int z = o / (oh * ow), r = o - z * (oh * ow), yy = r / ow, xx = r - yy * ow;
        pool_window w = pool_window_at(z, yy, xx, id, ih, iw, wd, wh, ww, sd, sh, sw, pd, ph, pw);
        const float* p = x + plane * inVolume;
        if (mode == 0) { y[i] = p[pool_argmax(p, w, ih, iw)]; continue; }
        double s = 0;
        for (int d = w.d0; d < w.d1; d++)
            for (int h = w.h0; h < w.h1; h++)
            {
                int row = (d * ih + h) * iw;
                for (int c = w.w0; c < w.w1; c++) s += p[row + c];
            }
        y[i] = (float)(s / pool_divisor(mode, w, wd, wh, ww));
    }
}

// The outputs o along one axis whose window covers input cell i: o*S - P <= i < o*S - P + W.
__device__ int pool_first_output(int i, int s, int p, int w)
{
    int num = i + p - w + 1;
    return num <= 0 ? 0 : (num + s - 1) / s;
}

// One thread per input cell; total = planes * id * ih * iw. dx is overwritten. Gathers, in output scan order,
// what the CPU scatters in the same order, so each cell sums the same terms in the same order (no atomics).
extern "C" __global__ void pool_backward(const float* x, const float* dy, float* dx, long long total,
    int id, int ih, int iw, int od, int oh, int ow, int wd, int wh, int ww,
    int sd, int sh, int sw, int pd, int ph, int pw, int mode)
{
    long long outVolume = (long long)od * oh * ow, inVolume = (long long)id * ih * iw;
    GRID_STRIDE(i, total)
    {
        long long plane = i / inVolume;
        int cell = (int)(i - plane * inVolume);
        int d = cell / (ih * iw), r = cell - d * (ih * iw), h = r / iw, c = r - h * iw;
        const float* p = x + plane * inVolume;
        const float* g = dy + plane * outVolume;
        int z1 = min((d + pd) / sd, od - 1), y1 = min((h + ph) / sh, oh - 1), x1 = min((c + pw) / sw, ow - 1);
        double acc = 0;
        for (int z = pool_first_output(d, sd, pd, wd); z <= z1; z++)
            for (int yy = pool_first_output(h, sh, ph, wh); yy <= y1; yy++)
                for (int xx = pool_first_output(c, sw, pw, ww); xx <= x1; xx++)
                {
                    pool_window w = pool_window_at(z, yy, xx, id, ih, iw, wd, wh, ww, sd, sh, sw, pd, ph, pw);
                    float v = g[(z * oh + yy) * ow + xx];
                    if (mode == 0) { if (pool_argmax(p, w, ih, iw) == cell) acc += v; }
                    else acc += v / pool_divisor(mode, w, wd, wh, ww);
                }
        dx[i] = (float)acc;
    }
}
