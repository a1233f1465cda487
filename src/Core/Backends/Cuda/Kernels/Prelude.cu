// Shared by every kernel file (NVRTC compiles all Kernels/*.cu as one translation unit, this file first).
// Element-wise kernels use a grid-stride loop: any grid size covers any length, so the host caps the grid.
#define GRID_STRIDE(i, n) for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (long long)blockDim.x * gridDim.x)
