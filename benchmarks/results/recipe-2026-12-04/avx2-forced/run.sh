#!/bin/bash
# The README's main job and the old default, with the AVX2 path forced (CONVNET_CPU_ISA=avx2 DOTNET_EnableAVX512=0),
# seeds 42, 1, 2, one after another on the otherwise idle machine.
OUT=${OUT:-/tmp/recipe-avx2}
cd "$(dirname "$0")/../../.." && ROOT=$PWD
dotnet build -c Release samples/FashionMnist.MLNet -v q >/dev/null
for s in 42 1 2; do
  for cfg in "cos3:--lr 0.003 --schedule cosine" "base:"; do
    name=${cfg%%:*}; flags=${cfg#*:}
    d=$OUT/$name-avx2-s$s; mkdir -p $d
    ( cd $d && CONVNET_CPU_ISA=avx2 DOTNET_EnableAVX512=0 /usr/bin/time -v dotnet "$ROOT"/samples/FashionMnist.MLNet/bin/Release/net10.0/FashionMnist.MLNet.dll --epochs 3 --net lenet5 $flags --seed $s > log.txt 2>&1 )
    echo "$name seed $s: $(grep 'test accuracy' $d/log.txt | tail -1)"
  done
done
