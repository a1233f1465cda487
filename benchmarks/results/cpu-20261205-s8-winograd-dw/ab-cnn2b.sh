#!/bin/bash
B=/tmp/base/benchmarks/EndToEnd/bin/Release/net10.0/MLNet.ConvNet.Benchmarks.EndToEnd.dll
N=/work/main/benchmarks/EndToEnd/bin/Release/net10.0/MLNet.ConvNet.Benchmarks.EndToEnd.dll
for r in $(seq 1 ${1:-2}); do
  for isa in avx512 avx2; do
    if [ $isa = avx2 ]; then E="env CONVNET_CPU_ISA=avx2 DOTNET_EnableAVX512=0"; else E=env; fi
    for v in base new new-nowdw; do
      D=$B; X=""; [ $v != base ] && D=$N; [ $v = new-nowdw ] && X="NOWDW=1"
      o=$($E $X dotnet $D cnn2 --epochs 1 --limit 12800 --profile 2>&1)
      echo "$v-$isa $(echo "$o" | grep -o 'train_img_per_s = [0-9]*') $(echo "$o" | grep -o 'test_acc_pct = [0-9.]*' | head -1) | $(echo "$o" | grep -E ' conv2 | dense1 ' | tr -s ' ' | tr '\n' ' ')"
    done
  done
done
