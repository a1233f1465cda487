#!/bin/bash
# Training throughput against the peer in interleaved pairs (the peer first, then ours), N pairs per mode and
# instruction set, 3 epochs each: the peer's epoch times vary by up to a quarter from one process to the next on
# these VMs, so one back-to-back run (run-vs-peer.sh) is not enough for a ratio. Usage:
#   bash benchmarks/run-repeats.sh OUTPUT_DIR [PAIRS] [ISAS]      PAIRS: 3 (default); ISAS as in run-vs-peer.sh
# Build both programs first (see run-vs-peer.sh); the AVX2 switches are in isa-env.sh. Summarise with
#   grep -h 'train_img_per_s' OUTPUT_DIR/*.log
B=$(cd "$(dirname "$0")" && pwd)
. $B/isa-env.sh
E=$B/EndToEnd/bin/Release/net10.0/MLNet.ConvNet.Benchmarks.EndToEnd.dll
PEER_DIR=${PEER_DIR:-/tmp/speed-peer/torchsharp-fashion}
P=$PEER_DIR/bin/Release/net10.0/torchsharp-fashion.dll
O=${1:-/tmp/repeats}
mkdir -p "$O" && O=$(cd "$O" && pwd)
PAIRS=${2:-3}
if grep -qw avx512f /proc/cpuinfo; then ISAS=${3:-avx512 avx2}; else ISAS=${3:-avx2}; fi
for f in $E $P; do [ -f $f ] || { echo "missing $f: build it first"; exit 1; }; done
cd $PEER_DIR
(date -u; uptime; grep -m1 'model name' /proc/cpuinfo; grep -o -w 'avx512f' /proc/cpuinfo | sort | uniq -c) > $O/machine.log
for isa in $ISAS; do
  isa_env $isa
  for r in $(seq 1 $PAIRS); do
    for mode in lenet cnn2; do
      $PEER dotnet $P $mode --epochs 3 > $O/$isa-peer-$mode-$r.log 2>&1
      $OURS dotnet $E $mode --epochs 3 > $O/$isa-ours-$mode-$r.log 2>&1
    done
  done
done
(date -u; uptime) >> $O/machine.log
echo finished > $O/done
