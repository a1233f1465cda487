#!/bin/bash
# Back-to-back run of the peer (TorchSharp-cpu) and ours after buffer reuse + the WorkerPool, 2 threads each.
# The peer is copied out of shared/ and built first:
#   cp -r /work/shared/bench/torchsharp-fashion /tmp/speed-peer/ && (cd /tmp/speed-peer/torchsharp-fashion && dotnet build -c Release)
#   dotnet build -c Release benchmarks/EndToEnd
E=/work/main/benchmarks/EndToEnd/bin/Release/net10.0/MLNet.ConvNet.Benchmarks.EndToEnd.dll
P=/tmp/speed-peer/torchsharp-fashion/bin/Release/net10.0/torchsharp-fashion.dll
O=${1:-/tmp/reuse}
mkdir -p $O
cd /tmp/speed-peer/torchsharp-fashion
for pair in "conv conv" "lenet lenet" "cnn2 cnn2"; do
  set -- $pair
  (date -u; uptime; dotnet $P $1; date -u; uptime) > $O/peer-$1.log 2>&1
  (date -u; uptime; dotnet $E $2; date -u; uptime) > $O/ours-$2.log 2>&1
done
echo finished > $O/done
