#!/bin/bash
E=/work/wt/speed/benchmarks/EndToEnd/bin/Release/net10.0/MLNet.ConvNet.Benchmarks.EndToEnd.dll
cd /tmp/speed-peer/torchsharp-fashion
(date -u; uptime; dotnet bin/Release/net10.0/torchsharp-fashion.dll train; date -u; uptime) > /tmp/speed-runs/peer-train.log 2>&1
(date -u; uptime; dotnet $E train; date -u; uptime) > /tmp/speed-runs/ours-train-t2.log 2>&1
(date -u; uptime; dotnet $E train --threads 1; date -u; uptime) > /tmp/speed-runs/ours-train-t1.log 2>&1
for i in 2 3; do
 (date -u; uptime; dotnet bin/Release/net10.0/torchsharp-fashion.dll conv; uptime; dotnet bin/Release/net10.0/torchsharp-fashion.dll mm; uptime) > /tmp/speed-runs/peer-conv-mm-$i.log 2>&1
 (date -u; uptime; dotnet $E conv; uptime; dotnet $E mm; uptime) > /tmp/speed-runs/ours-conv-mm-$i.log 2>&1
done
echo finished > /tmp/speed-runs/done
