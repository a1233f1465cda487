#!/bin/bash
# Back-to-back run of the peer (TorchSharp-cpu) and ours, 2 threads each, on each instruction set asked for, then the
# side-by-side table (benchmarks/vs-peer-table.sh). Usage:
#   bash benchmarks/run-vs-peer.sh OUTPUT_DIR [ISAS]        ISAS: "avx512 avx2" (default on an AVX-512 machine), "avx2"
# For each ISA, in this order: conv, mm, lenet, cnn2 (the peer first, then ours, alternating per mode), then
# benchmarks/Inference for lenet5 and cnn2bn (ours against ONNX Runtime inside one process). Every log is bracketed by
# `date -u; uptime`. Takes about 25 minutes on a quiet 2-core machine for both ISAs (EPOCHS=1 about 15).
#
# avx2 on an AVX-512 machine approximates an AVX2-only machine: ours runs with CONVNET_CPU_ISA=avx2 (the 6x16 GEMM
# micro-kernel) and DOTNET_EnableAVX512=0 (.NET 10's switch; DOTNET_EnableAVX512F=0 no longer turns AVX-512 off in
# .NET 10), so no .NET vector code uses AVX-512 either; the peer runs with ATEN_CPU_CAPABILITY=avx2,
# MKL_ENABLE_INSTRUCTIONS=AVX2 and ONEDNN_MAX_CPU_ISA=AVX2 (libtorch, oneMKL and oneDNN capped the same way).
# ONNX Runtime has no such switch: in the avx2 inference run it still uses AVX-512. Clock, caches and the FMA units
# stay this machine's, so the figures approximate, not reproduce, an AVX2 machine.
#
# The peer is copied out of shared/ and built first, and so is ours:
#   cp -r /work/shared/bench/torchsharp-fashion /tmp/speed-peer/ && (cd /tmp/speed-peer/torchsharp-fashion && dotnet build -c Release)
#   dotnet build -c Release benchmarks/EndToEnd && dotnet build -c Release benchmarks/Inference
# PEER_DIR overrides the peer's folder; EPOCHS (default 3) the training epochs of both.
B=$(cd "$(dirname "$0")" && pwd)
. $B/isa-env.sh
E=$B/EndToEnd/bin/Release/net10.0/MLNet.ConvNet.Benchmarks.EndToEnd.dll
I=$B/Inference/bin/Release/net10.0/MLNet.ConvNet.Benchmarks.Inference.dll
PEER_DIR=${PEER_DIR:-/tmp/speed-peer/torchsharp-fashion}
P=$PEER_DIR/bin/Release/net10.0/torchsharp-fashion.dll
O=${1:-/tmp/vs-peer}
mkdir -p "$O" && O=$(cd "$O" && pwd) # absolute: the runs below start in the peer's folder
if grep -qw avx512f /proc/cpuinfo; then ISAS=${2:-avx512 avx2}; else ISAS=${2:-avx2}; fi
EPOCHS=${EPOCHS:-3}
for f in $E $I $P; do [ -f $f ] || { echo "missing $f: build it first (see the top of this script)"; exit 1; }; done
mkdir -p $O
(date -u; uname -a; grep -m1 'model name' /proc/cpuinfo; grep -o -w 'avx512f\|avx2' /proc/cpuinfo | sort | uniq -c; nproc; dotnet --version) > $O/machine.log 2>&1
cd $PEER_DIR
for isa in $ISAS; do
  isa_env $isa
  for mode in conv mm lenet cnn2; do
    EP=""; [ $mode = lenet -o $mode = cnn2 ] && EP="--epochs $EPOCHS"
    (date -u; uptime; $PEER dotnet $P $mode $EP; date -u; uptime) > $O/$isa-peer-$mode.log 2>&1
    (date -u; uptime; $OURS dotnet $E $mode $EP; date -u; uptime) > $O/$isa-ours-$mode.log 2>&1
  done
  for net in lenet5 cnn2bn; do
    (date -u; uptime; $OURS dotnet $I --net $net; date -u; uptime) > $O/$isa-inference-$net.log 2>&1
  done
done
bash $B/vs-peer-table.sh $O | tee $O/table.md
echo finished > $O/done
