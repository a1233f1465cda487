#!/bin/bash
B=/tmp/base/benchmarks/EndToEnd/bin/Release/net10.0/MLNet.ConvNet.Benchmarks.EndToEnd.dll
N=/work/main/benchmarks/EndToEnd/bin/Release/net10.0/MLNet.ConvNet.Benchmarks.EndToEnd.dll
ext() { awk -v w="$1" '/^conv_64x32/ {match($0,/fwd [0-9.]+/); f=substr($0,RSTART+4,RLENGTH-4); match($0,/dW [0-9.]+/); d=substr($0,RSTART+3,RLENGTH-3); match($0,/dX [0-9.]+/); x=substr($0,RSTART+3,RLENGTH-3); match($0,/fwd\+bwd\(dX,dW\) [0-9.]+/); fb=substr($0,RSTART+15,RLENGTH-15); print w, "fwd", f, "dW", d, "dX", x, "fb", fb}'; }
for r in $(seq 1 ${1:-3}); do
  for isa in avx512 avx2; do
    if [ $isa = avx2 ]; then E="env CONVNET_CPU_ISA=avx2 DOTNET_EnableAVX512=0"; else E=env; fi
    $E dotnet $B conv 2>&1 | ext "base-$isa"
    $E dotnet $N conv 2>&1 | ext "winograd-dw-$isa"
    $E NOWDW=1 dotnet $N conv 2>&1 | ext "direct-dw-$isa"
  done
done
