#!/bin/bash
# The experiment and the hand baseline at the same time, so both see the same load from the shared machine.
DLL=/tmp/auto-bench/bin2/Experiment.dll
echo "start both $(date -u +%H:%M:%S); load: $(cat /proc/loadavg)"
dotnet $DLL --hand cnn2bn --minutes 10 --seed 1 --out /tmp/auto-bench/hand2 > /tmp/auto-bench/hand2.log 2>&1 &
HAND=$!
dotnet $DLL --minutes 10 --seed 1 --out /tmp/auto-bench/exp2 > /tmp/auto-bench/experiment2.log 2>&1
echo "experiment done $(date -u +%H:%M:%S); load: $(cat /proc/loadavg)"
wait $HAND
echo "hand done $(date -u +%H:%M:%S)"
