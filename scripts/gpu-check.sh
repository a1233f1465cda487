#!/usr/bin/env bash
# The GPU check in two halves (docs/gpu.md):
#
#   scripts/gpu-check.sh build          here, with the .NET SDK: publishes benchmarks/Gpu (and tests/Cuda.Tests when that
#                                       folder exists) self-contained for linux-x64 and packs it, the Fashion-MNIST IDX
#                                       files and the PyTorch peer's bench.py into .gpu/ (ignored by git; <= 60 MiB).
#   scripts/gpu-check.sh run OUTDIR     on the GPU machine, from the repository root with .gpu/ present: no .NET SDK and
#                                       no network needed. Writes one log per program run into OUTDIR.
#
# Environment: GPU_CHECK_TEST_PROJECT (build; default tests/Cuda.Tests) publishes another test project, e.g.
# tests/Core.Tests, to try the shared-runtime layout before the CUDA tests exist. GPU_CHECK_SMOKE=1 (run) adds a CPU
# training run of one epoch, to check the published program trains where there is no GPU. GPU_CHECK_WORK (run;
# default /tmp/gpu-check) is where the packs are unpacked.
set -euo pipefail
trap 'echo "FAIL: scripts/gpu-check.sh line $LINENO: $BASH_COMMAND" >&2' ERR
cd "$(dirname "$0")/.."
ROOT=$PWD
PACK=$ROOT/.gpu
MAX_MIB=60

# ---- time budgets of the run, seconds (each can be overridden from the environment; 0 skips the step), most important first: with the library search (15) and unpacking (~5) they
# add up to about 11 minutes if every step ran out its time (just over 8 without the two steps of the larger presets);
# a normal run is shorter ----
T_ENV=${T_ENV:-30}           # nvidia-smi, versions, library search
T_TESTS=${T_TESTS:-60}         # the CUDA contract tests
T_OURS_B64=${T_OURS_B64:-110}     # ours, lenet5 + cnn2bn, 3 epochs, batch 64
T_PEER_B64=${T_PEER_B64:-60}      # PyTorch eager, batch 64
T_OURS_B256=${T_OURS_B256:-70}     # ours, batch 256
T_PEER_B256=${T_PEER_B256:-45}     # PyTorch eager, batch 256
T_PEER_COMPILE=${T_PEER_COMPILE:-75}  # PyTorch with torch.compile, batch 64 (compilation takes most of it)
T_CHECK_LOAD=${T_CHECK_LOAD:-25}    # the saved models scored again with the GPU hidden
T_PROFILE=${T_PROFILE:-60}         # ours with --profile: per-kernel device time of lenet5 and cnn2bn steps (issue 15)
T_OURS_BIG=${T_OURS_BIG:-90}       # ours, the larger presets vgg + resnet, 2 epochs, batch 128 (issue 15: TFLOP/s)
T_PEER_BIG=${T_PEER_BIG:-90}       # our PyTorch script for the same presets (benchmarks/Gpu/presets_peer.py), eager
T_SMOKE=${T_SMOKE:-400}        # GPU_CHECK_SMOKE=1 only: ours on the CPU, 1 epoch

DATA_SRC=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
PEER_SRC=$ROOT/../shared/bench/pytorch-gpu-fashion
IDX_FILES="train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte"

# dotnet publish with its output kept in a file, shown only when it fails.
publish() {
  local proj=$1 out=$2; shift 2
  echo "== publishing $proj"
  if ! dotnet publish "$proj" "$@" -o "$out" > "$out.log" 2>&1; then tail -40 "$out.log"; echo "FAIL: publish of $proj"; exit 1; fi
}

mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

build() {
  command -v dotnet >/dev/null || { echo "build needs the .NET SDK (dotnet)"; exit 1; }
  mkdir -p "$PACK"
  STAGE=$(mktemp -d); local stage=$STAGE
  trap 'rm -rf "$STAGE"' EXIT
  # No symbols, no XML docs, English resources only: nothing the run reads. Trimming, partial: only the framework's
  # assemblies (marked trimmable) lose what nothing references; ML.NET, xunit and ours stay whole, so their reflection
  # keeps working (checked: training, Evaluate, Save, reload, and the xunit runner with its JUnit report). It also
  # drops the framework's ReadyToRun code, which halves the pack; the JIT's extra start-up is a second or two.
  # The trim analysis warnings are ML.NET's and xunit's reflection, which partial mode leaves alone: not errors here.
  local flags=(-c Release -r linux-x64 --self-contained true -p:DebugType=none -p:GenerateDocumentationFile=false
               -p:SatelliteResourceLanguages=en -p:PublishReadyToRun=false
               -p:PublishTrimmed=true -p:TrimMode=partial -p:SuppressTrimAnalysisWarnings=true -p:TreatWarningsAsErrors=false)
  publish benchmarks/Gpu/MLNet.ConvNet.GpuRun.csproj "$stage/app" "${flags[@]}"

  local tests=${GPU_CHECK_TEST_PROJECT:-tests/Cuda.Tests} layout="shared" names=""
  if [ -d "$tests" ]; then
    local proj; proj=$(ls "$tests"/*.csproj | head -1)
    publish "$proj" "$stage/tests" "${flags[@]}"
    names=$(cd "$stage/tests" && ls *.deps.json | sed 's/\.deps\.json$//')
    # One folder for both apps when every file they both ship is identical. Trimming makes each app's framework
    # assemblies its own, so usually they differ: then the tests keep a folder of their own (bin/tests), and the files
    # that are identical (runtime, native libraries) are hard links to the app's, which tar stores once.
    local clash="" f
    while IFS= read -r f; do
      if [ -e "$stage/app/$f" ] && ! cmp -s "$stage/app/$f" "$stage/tests/$f"; then clash="$clash $f"; fi
    done < <(cd "$stage/tests" && find . -type f | sed 's|^\./||')
    if [ -z "$clash" ]; then
      cp -a "$stage/tests/." "$stage/app/"
    else
      layout="separate"
      echo "$(echo $clash | wc -w) files differ between the two publishes: tests in a folder of their own"
      mv "$stage/tests" "$stage/app/tests"
      while IFS= read -r f; do
        if [ -e "$stage/app/$f" ] && cmp -s "$stage/app/$f" "$stage/app/tests/$f"; then ln -f "$stage/app/$f" "$stage/app/tests/$f"; fi
      done < <(cd "$stage/app/tests" && find . -type f | sed 's|^\./||')
    fi
  else
    echo "== no $tests: publishing no tests"
  fi
  # What the run never loads: debug symbols; the debugger, dump and tracing support of the runtime; the standalone
  # GCs (used only when configured); native libraries of ML.NET parts this program does not use (SkiaSharp for
  # images, LDA); native Windows DLLs that some packages ship to every platform.
  find "$stage/app" \( -name '*.pdb' -o -name '*.dbg' -o -name '*.xml' -o -name createdump -o -name 'libmscordaccore.so' \
    -o -name 'libmscordbi.so' -o -name 'libcoreclrtraceptprovider.so' -o -name 'libclrgc*.so' -o -name 'libSkiaSharp.so' \
    -o -name 'libLdaNative.so' \) -delete
  { find "$stage/app" -name '*.dll' -print0 | xargs -0 file | grep 'for MS Windows' | grep -v 'Mono/.Net assembly' || true; } \
    | cut -d: -f1 | xargs -r rm -f
  echo "publish folder: $(du -sh "$stage/app" | cut -f1), $(find "$stage/app" -type f | wc -l) files, tests layout: ${names:+$layout}"
  echo "$names" > "$stage/app/gpu-check-tests.txt"
  echo "$layout" > "$stage/app/gpu-check-layout.txt"
  echo "== compressing the publish (xz -9)"
  rm -f "$PACK/app.tar.xz"
  tar -C "$stage/app" -cf - . | xz -9 -T2 > "$PACK/app.tar.xz"

  # Fashion-MNIST: the raw IDX files compressed with xz are the smallest form (about 26 MB against 31 MB of .gz);
  # the run re-creates the .gz files our loader reads. Rebuilt only when the source files change.
  local stamp; stamp=$(cd "$DATA_SRC" && ls -l --time-style=+%s ./*-ubyte* | md5sum | cut -c1-16)
  if [ -f "$PACK/data.tar.xz" ] && [ "$(cat "$PACK/data.stamp" 2>/dev/null)" = "$stamp" ]; then
    echo "== data pack up to date"
  else
    echo "== packing Fashion-MNIST from $DATA_SRC"
    mkdir -p "$stage/data"
    for f in $IDX_FILES; do
      if [ -f "$DATA_SRC/$f.gz" ]; then gunzip -c "$DATA_SRC/$f.gz" > "$stage/data/$f"; else cp "$DATA_SRC/$f" "$stage/data/$f"; fi
    done
    tar -C "$stage/data" -cf - . | xz -9 -T2 > "$PACK/data.tar.xz"
    echo "$stamp" > "$PACK/data.stamp"
  fi

  # The peer is someone else's code: copied in at build time, never committed.
  mkdir -p "$PACK/peer"
  cp "$PEER_SRC/bench.py" "$PACK/peer/bench.py"
  { echo "commit $(git rev-parse HEAD)$(git diff --quiet HEAD || echo ' (with uncommitted changes)')"; echo "built $(date -u +%FT%TZ)"; } > "$PACK/manifest.txt"

  echo "== .gpu/"
  (cd "$PACK" && ls -l app.tar.xz data.tar.xz peer/bench.py | awk '{ printf "  %-16s %10d bytes\n", $NF, $5 }')
  local total; total=$(du -sb "$PACK" | cut -f1)
  echo "total $(mib "$total") ($total bytes); the limit is $MAX_MIB MiB"
  if [ "$total" -gt $((MAX_MIB * 1048576)) ]; then echo "FAIL: .gpu/ is over $MAX_MIB MiB"; exit 1; fi
}

# One program run: its own timeout and log file; a failure is recorded and the run goes on.
STEPS=""
step() {
  local name=$1 budget=$2 log=$3; shift 3
  local t0=$SECONDS rc=0
  if [ "$budget" = 0 ]; then echo "== $name: skipped (budget 0)"; STEPS="$STEPS$(printf '%-22s skipped' "$name")"$'\n'; return; fi
  echo "== $name (up to ${budget}s) -> $log"
  timeout -k 5 "$budget" "$@" > "$OUT/$log" 2>&1 || rc=$?
  local line; line=$(printf '%-22s rc %-4s %4ss  %s' "$name" "$rc" "$((SECONDS - t0))" "$([ $rc = 124 ] || [ $rc = 137 ] && echo 'TIMED OUT')")
  echo "   $line"
  STEPS="$STEPS$line"$'\n'
}

env_report() {
  echo "== date"; date -u
  echo "== manifest"; cat "$PACK/manifest.txt"
  echo "== nvidia-smi"; nvidia-smi || echo "nvidia-smi failed"
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv || true
  echo "== nvcc"; nvcc --version 2>&1 | tail -2 || echo "no nvcc"
  echo "== python"
  python3 -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'cuDNN', torch.backends.cudnn.version(), 'available', torch.cuda.is_available())" 2>&1 || true
  echo "== CUDA libraries found"; cat "$OUT/cuda-libs.txt"
  echo "== CONVNET_CUDA_PATH=$CONVNET_CUDA_PATH"
  echo "== ldconfig"; ldconfig -p 2>/dev/null | grep -E 'libcuda\.so|libcudnn|libcublas|libnvrtc' || echo "(none on the system path)"
  echo "== CPU"; nproc; grep -m1 'model name' /proc/cpuinfo || true
}

run() {
  OUT=${1:?usage: scripts/gpu-check.sh run OUTDIR}
  mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
  [ -f "$PACK/app.tar.xz" ] || { echo "no .gpu/app.tar.xz: run 'scripts/gpu-check.sh build' first"; exit 1; }
  local work=${GPU_CHECK_WORK:-/tmp/gpu-check} t0=$SECONDS
  rm -rf "$work"; mkdir -p "$work/bin" "$work/data"
  xz -dc "$PACK/app.tar.xz" | tar -C "$work/bin" -xf -
  xz -dc "$PACK/data.tar.xz" | tar -C "$work/data" -xf -
  # Our loader reads the .gz files; the peer reads the raw ones first. Both sit side by side.
  for f in "$work"/data/*-ubyte; do gzip -1 -k "$f"; done
  echo "unpacked in $((SECONDS - t0)) s into $work"
  export DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1 DOTNET_CLI_TELEMETRY_OPTOUT=1

  # Where cuDNN, cuBLAS, NVRTC and the driver are: their folders become CONVNET_CUDA_PATH, the list our resolver reads.
  timeout 15 find / \( -path /proc -o -path /sys -o -path /dev -o -path "$work" \) -prune -o \
    \( -name 'libcudnn*.so*' -o -name 'libcublas*.so*' -o -name 'libnvrtc*.so*' -o -name 'libcuda.so*' \) -print 2>/dev/null \
    | sort > "$OUT/cuda-libs.txt" || true
  CONVNET_CUDA_PATH=$(xargs -r -n1 dirname < "$OUT/cuda-libs.txt" | awk '!seen[$0]++' | paste -sd: -)
  export -f env_report; export PACK OUT CONVNET_CUDA_PATH
  step env "$T_ENV" env.log bash -c env_report

  local app="$work/bin/MLNet.ConvNet.GpuRun" tests_dir="$work/bin" data="$work/data" peer="$PACK/peer/bench.py"
  [ "$(cat "$work/bin/gpu-check-layout.txt")" = separate ] && tests_dir="$work/bin/tests"
  for t in $(cat "$work/bin/gpu-check-tests.txt"); do
    local log="tests-$t.log"; case $t in *Cuda*) log=cuda-tests.log ;; esac
    step "tests $t" "$T_TESTS" "$log" "$tests_dir/$t" -noColor -result-junit "$OUT/${log%.log}.junit.xml"
  done
  [ -s "$work/bin/gpu-check-tests.txt" ] || echo "== no test project in this pack"

  local ours=(--backend cuda --device 0 --nets lenet5,cnn2bn --epochs 3 --seed 42 --data "$data")
  step "ours b64" "$T_OURS_B64" ours-b64.log "$app" "${ours[@]}" --batch 64 --out "$OUT/models/b64"
  step "peer b64" "$T_PEER_B64" peer-b64.log python3 "$peer" --data "$data" --epochs 3 --batch 64
  step "ours b256" "$T_OURS_B256" ours-b256.log "$app" "${ours[@]}" --batch 256 --out "$OUT/models/b256"
  step "peer b256" "$T_PEER_B256" peer-b256.log python3 "$peer" --data "$data" --epochs 3 --batch 256
  step "peer compile b64" "$T_PEER_COMPILE" peer-compile-b64.log python3 "$peer" --data "$data" --epochs 3 --batch 64 --compile
  if [ -d "$OUT/models" ]; then
    CUDA_VISIBLE_DEVICES="" step "check-load (no GPU)" "$T_CHECK_LOAD" check-load.log "$app" --check-load "$OUT/models" --data "$data"
  fi
  # The larger presets, ours beside PyTorch: both print gflop_per_img and train_tflops per epoch. The peer script is
  # ours and tracked, so it is read from the repository, not from the pack. Models go outside $OUT/models, so the
  # check-load step above is unchanged.
  step "ours profile b64" "$T_PROFILE" ours-profile-b64.log "$app" --backend cuda --device 0 --nets lenet5,cnn2bn --epochs 1 \
    --batch 64 --seed 42 --data "$data" --out "$OUT/models-profile" --profile
  step "ours big b128" "$T_OURS_BIG" ours-big-b128.log "$app" --backend cuda --device 0 --nets vgg,resnet --epochs 2 --batch 128 \
    --seed 42 --data "$data" --out "$OUT/models-big"
  step "peer big b128" "$T_PEER_BIG" peer-big-b128.log python3 "$ROOT/benchmarks/Gpu/presets_peer.py" --data "$data" --batch 128 --epochs 2
  if [ "${GPU_CHECK_SMOKE:-0}" = 1 ]; then
    step "smoke ours cpu" "$T_SMOKE" smoke-cpu.log "$app" --backend cpu --nets lenet5,cnn2bn --epochs 1 --batch 64 --seed 42 --data "$data" --out "$OUT/models/smoke-cpu"
    step "smoke check-load" "$T_CHECK_LOAD" smoke-check-load.log "$app" --check-load "$OUT/models/smoke-cpu" --data "$data"
  fi

  grep -h '^RESULT' "$OUT"/*.log > "$OUT/results.txt" 2>/dev/null || true
  { echo "steps (name, exit code, seconds):"; printf '%s' "$STEPS"; echo "total $((SECONDS - t0)) s"; } | tee "$OUT/summary.log"
  echo "RESULT lines: $(wc -l < "$OUT/results.txt") in $OUT/results.txt"
  cat "$OUT/results.txt"
}

case "${1:-}" in
  build) build ;;
  run) shift; run "$@" ;;
  *) echo "usage: scripts/gpu-check.sh build | run OUTDIR"; exit 2 ;;
esac
