#!/bin/bash
E=/work/wt/speed/benchmarks/EndToEnd/bin/Release/net10.0/MLNet.ConvNet.Benchmarks.EndToEnd.dll
P=/tmp/speed-peer/torchsharp-fashion/bin/Release/net10.0/torchsharp-fashion.dll
cd /tmp/speed-peer/torchsharp-fashion
for i in 1 2; do
 (date -u; uptime; dotnet $P conv; uptime) > /tmp/speed-runs/B/peer-conv-$i.log 2>&1
 (date -u; uptime; dotnet $E conv; uptime) > /tmp/speed-runs/B/ours-conv-$i.log 2>&1
 (date -u; uptime; dotnet $P mm; uptime) > /tmp/speed-runs/B/peer-mm-$i.log 2>&1
 (date -u; uptime; dotnet $E mm; uptime) > /tmp/speed-runs/B/ours-mm-$i.log 2>&1
done
(date -u; uptime; dotnet $E train; date -u; uptime) > /tmp/speed-runs/B/ours-train-t2.log 2>&1
(date -u; uptime; dotnet $E train --threads 1; date -u; uptime) > /tmp/speed-runs/B/ours-train-t1.log 2>&1
(date -u; uptime; dotnet $P train; date -u; uptime) > /tmp/speed-runs/B/peer-train.log 2>&1
echo finished > /tmp/speed-runs/B/done
