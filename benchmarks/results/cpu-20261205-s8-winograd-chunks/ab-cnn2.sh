#!/bin/bash
B=/tmp/base/benchmarks/EndToEnd/bin/Release/net10.0/MLNet.ConvNet.Benchmarks.EndToEnd.dll
N=/work/main/benchmarks/EndToEnd/bin/Release/net10.0/MLNet.ConvNet.Benchmarks.EndToEnd.dll
for r in $(seq 1 ${1:-3}); do
  for isa in avx512 avx2; do
    if [ $isa = avx2 ]; then E="env CONVNET_CPU_ISA=avx2 DOTNET_EnableAVX512=0"; else E=env; fi
    for v in base new; do
      D=$B; [ $v = new ] && D=$N
      o=$($E dotnet $D cnn2 --epochs 1 --limit 12800 --profile 2>&1)
      echo "$v-$isa $(echo "$o" | grep -o 'train_img_per_s = [0-9]*') $(echo "$o" | grep -o 'test_acc_pct = [0-9.]*' | head -1) | $(echo "$o" | grep ' conv2 ' | tr -s ' ')"
    done
  done
done
