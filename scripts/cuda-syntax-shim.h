// Lets g++ syntax-check Kernels/*.cu (scripts/check-cuda-kernels.sh): just enough of CUDA's built-ins to parse the
// kernels as C++. Nothing here runs; NVRTC supplies the real definitions on the GPU machine.
#pragma once
#include <math.h>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static

struct cuda_shim_dim3 { unsigned int x, y, z; };
extern cuda_shim_dim3 threadIdx, blockIdx, blockDim, gridDim;

void __syncthreads();
template <typename T> T __shfl_xor_sync(unsigned int mask, T value, int laneMask, int width = 32);
template <typename T> T __shfl_down_sync(unsigned int mask, T value, unsigned int delta, int width = 32);
float __int_as_float(int bits);
int __float_as_int(float value);
long long __double_as_longlong(double value);
double __longlong_as_double(long long bits);

// CUDA's device library has integer and float min/max overloads without std::.
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }
