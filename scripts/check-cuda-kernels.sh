#!/usr/bin/env bash
# Syntax-checks the CUDA kernels without a GPU or nvcc: joins src/Core/Backends/Cuda/Kernels/*.cu in the order
# CudaKernels.Source() uses (Prelude.cu first, then by name) into one translation unit, as NVRTC compiles them, and
# runs g++ -fsyntax-only on it with scripts/cuda-syntax-shim.h standing in for CUDA's built-ins.
# Catches typos, undeclared names, wrong argument counts and duplicate kernel names; not CUDA-only errors.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
kernels="$root/src/Core/Backends/Cuda/Kernels"
unit="$(mktemp --suffix=.cu)"
trap 'rm -f "$unit"' EXIT
{
    echo "// ---- Prelude.cu"; cat "$kernels/Prelude.cu"
    for f in $(cd "$kernels" && ls *.cu | LC_ALL=C sort); do
        [ "$f" = Prelude.cu ] && continue
        echo "// ---- $f"; cat "$kernels/$f"
    done
} > "$unit"
# The sources may not #include anything: NVRTC has no standard headers.
if grep -n '^[[:space:]]*#[[:space:]]*include' "$kernels"/*.cu; then
    echo "error: Kernels/*.cu must not #include (NVRTC has no standard headers)" >&2; exit 1
fi
g++ -std=c++17 -fsyntax-only -Wall -Wextra -Wno-unused-parameter -Werror -x c++ -include "$root/scripts/cuda-syntax-shim.h" "$unit"
echo "Kernels/*.cu: syntax OK ($(ls "$kernels"/*.cu | wc -l) files)"
