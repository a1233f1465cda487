#!/bin/bash
# usage: run.sh NAME "extra args"  -> runs seeds 1 2 3 and 42
name=$1; shift
for s in 42 1 2; do
  out=/work/recipe/out/$name-s$s; mkdir -p $out
  ( cd /work/recipe && /usr/bin/time -f "%e s %M KB" dotnet bin/FashionMnist.MLNet.dll --epochs 3 --net lenet5 --seed $s --out $out "$@" > $out/log.txt 2>&1 )
  echo "$name seed $s: $(grep 'test accuracy:' $out/log.txt) $(grep 'trained in' $out/log.txt | cut -c1-22)"
done
