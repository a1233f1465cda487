#!/bin/bash
# Back-to-back run of the peer (TorchSharp-cpu) and ours, 2 threads each: conv, lenet and cnn2 modes, the peer first in
# each, every log bracketed by `date -u; uptime`. Usage: bash benchmarks/run-vs-peer.sh OUTPUT_DIR
# The peer is copied out of shared/ and built first:
#   cp -r /work/shared/bench/torchsharp-fashion /tmp/speed-peer/ && (cd /tmp/speed-peer/torchsharp-fashion && dotnet build -c Release)
#   dotnet build -c Release benchmarks/EndToEnd
E=$(cd "$(dirname "$0")" && pwd)/EndToEnd/bin/Release/net10.0/MLNet.ConvNet.Benchmarks.EndToEnd.dll
P=/tmp/speed-peer/torchsharp-fashion/bin/Release/net10.0/torchsharp-fashion.dll
O=${1:-/tmp/vs-peer}
mkdir -p $O
cd /tmp/speed-peer/torchsharp-fashion
for pair in "conv conv" "lenet lenet" "cnn2 cnn2"; do
  set -- $pair
  (date -u; uptime; dotnet $P $1; date -u; uptime) > $O/peer-$1.log 2>&1
  (date -u; uptime; dotnet $E $2; date -u; uptime) > $O/ours-$2.log 2>&1
done
echo finished > $O/done
