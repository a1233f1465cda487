#!/usr/bin/env bash
# Runs the CUDA backend's own kernels without a GPU: Kernels/*.cu are compiled with g++ (emu_shim.h stands in for
# CUDA's built-ins: thread-local threadIdx/blockIdx, real barriers for __syncthreads and warp shuffles) into a fake
# libcuda / libnvrtc / libcublas / libcudnn (fake.cpp), and harness/ drives CudaBackend through it against CpuBackend.
# What it checks: launch arguments, indexing, reductions, bit-exactness of the formulas, the cuBLAS operand mapping.
# What it cannot: cuDNN calls, GPU-only numerics (device exp/log ulps), timing, memory limits.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
kernels="$root/src/Core/Backends/Cuda/Kernels"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
{ cat "$kernels/Prelude.cu"; for f in $(cd "$kernels" && ls *.cu | LC_ALL=C sort); do [ "$f" = Prelude.cu ] || cat "$kernels/$f"; done; } > "$work/kernels.cu"
names=$(grep -o 'extern "C" __global__ void [A-Za-z_0-9]*' "$work/kernels.cu" | awk '{print $5}')
{ echo "static Entry emu_registry[] = {"; for n in $names; do echo "  {\"$n\", [](void** a) { emu_call($n, a); }},"; done; echo "};"; } > "$work/registry.inc"
cat "$work/kernels.cu" "$here/fake.cpp" > "$work/all.cpp"
# -ffp-contract=off: no fused multiply-add, as NVRTC's --fmad=false.
g++ -std=c++20 -O1 -ffp-contract=off -fPIC -shared -I"$work" -include "$here/emu_shim.h" -x c++ "$work/all.cpp" -o "$work/libfake.so" -lpthread
mkdir -p "$work/lib"
for n in libcuda.so.1 libnvrtc.so.13 libcublas.so.13 libcudnn.so.9; do ln -s ../libfake.so "$work/lib/$n"; done
dotnet build "$here/harness" -c Release -o "$work/harness" -v quiet -nologo
CONVNET_CUDA_PATH="$work/lib" dotnet "$work/harness/CudaEmulatorHarness.dll"
