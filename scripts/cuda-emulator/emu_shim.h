// CPU emulation of the CUDA built-ins the kernels use, for scripts/cuda-emulator/run.sh (not for NVRTC).
// __shared__ becomes static: blocks run one after another, so a static local is one block's shared memory.
#pragma once
#include <math.h>
#include <string.h>
#include <barrier>
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
struct emu_dim3 { unsigned int x, y, z; };
extern thread_local emu_dim3 threadIdx, blockIdx;
extern emu_dim3 blockDim, gridDim;
extern std::barrier<>* emu_block_barrier;
extern std::barrier<>* emu_warp_barrier[64];
extern unsigned long long emu_warp_slots[64][32];
inline void __syncthreads() { emu_block_barrier->arrive_and_wait(); }
template <typename T> T __shfl_xor_sync(unsigned int, T value, int laneMask, int = 32)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    unsigned long long bits = 0; memcpy(&bits, &value, sizeof(T));
    emu_warp_slots[warp][lane] = bits;
    emu_warp_barrier[warp]->arrive_and_wait();
    bits = emu_warp_slots[warp][lane ^ laneMask];
    emu_warp_barrier[warp]->arrive_and_wait();
    T r; memcpy(&r, &bits, sizeof(T)); return r;
}
inline float __int_as_float(int b) { float f; memcpy(&f, &b, 4); return f; }

// CUDA's device library has integer and float min/max overloads without std::.
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }
