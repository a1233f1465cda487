#!/bin/bash
E=/work/main/benchmarks/EndToEnd/bin/Release/net10.0/MLNet.ConvNet.Benchmarks.EndToEnd.dll
P=/tmp/speed-peer/torchsharp-fashion/bin/Release/net10.0/torchsharp-fashion.dll
cd /tmp/speed-peer/torchsharp-fashion
(date -u; uptime; dotnet $P cnn2; date -u; uptime) > /tmp/quiet/peer-cnn2.log 2>&1
(date -u; uptime; dotnet $E cnn2; date -u; uptime) > /tmp/quiet/ours-cnn2.log 2>&1
echo finished > /tmp/quiet/done2
