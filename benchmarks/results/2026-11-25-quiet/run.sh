#!/bin/bash
E=/work/main/benchmarks/EndToEnd/bin/Release/net10.0/MLNet.ConvNet.Benchmarks.EndToEnd.dll
P=/tmp/speed-peer/torchsharp-fashion/bin/Release/net10.0/torchsharp-fashion.dll
cd /tmp/speed-peer/torchsharp-fashion
(date -u; uptime; dotnet $P conv; uptime) > /tmp/quiet/peer-conv.log 2>&1
(date -u; uptime; dotnet $E conv; uptime) > /tmp/quiet/ours-conv.log 2>&1
(date -u; uptime; dotnet $P lenet; date -u; uptime) > /tmp/quiet/peer-lenet.log 2>&1
(date -u; uptime; dotnet $E lenet; date -u; uptime) > /tmp/quiet/ours-lenet.log 2>&1
echo finished > /tmp/quiet/done
