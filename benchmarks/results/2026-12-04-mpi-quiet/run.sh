#!/bin/bash
# 1 rank vs 2 ranks (one thread each) on the idle 2-core machine, alternated 3 times, LeNet-5 and cnn2bn, global batch 64,
# one epoch of Fashion-MNIST's 60,000 training images; then the allreduce alone at both presets' gradient sizes.
# Run from the repository root after `dotnet build -c Release MLNet.ConvNet.sln`.
W=tests/Distributed.Worker/bin/Release/net10.0/MLNet.ConvNet.Distributed.Worker.dll
OUT=${OUT:-benchmarks/results/2026-12-04-mpi-quiet}
echo "machine: $(grep -c ^processor /proc/cpuinfo) cores, $(grep -o -m1 avx512f /proc/cpuinfo || echo avx2-only); load $(cat /proc/loadavg)"
for net in lenet5 cnn2bn; do
  for i in 1 2 3; do
    echo "== $net run $i, 1 rank ($(date -u +%H:%M:%S), load $(cut -d' ' -f1 /proc/loadavg))"
    dotnet $W --data fashion --net $net --batch 64 --epochs 1 --threads 1 2>&1 | grep -E 'RESULT|epoch 1:|allreduce'
    echo "== $net run $i, 2 ranks ($(date -u +%H:%M:%S), load $(cut -d' ' -f1 /proc/loadavg))"
    mpirun.mpich -n 2 dotnet $W --data fashion --net $net --batch 64 --epochs 1 --threads 1 2>&1 | grep -E 'RESULT|epoch 1:|allreduce'
  done
done
for f in 61707 421835; do
  echo "== allreduce alone, $f floats"
  mpirun.mpich -n 2 dotnet $W --allreduce-bench 500 --floats $f 2>&1 | tail -3
done
# Then, for comparison, one rank with both cores (run after the above, by hand, appended to the log):
#   dotnet $W --data fashion --net lenet5|cnn2bn --batch 64 --epochs 1 --threads 2
