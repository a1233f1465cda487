#!/bin/bash
# The side-by-side table of a benchmarks/run-vs-peer.sh output folder, as markdown: for each instruction set, ours, the
# peer and ours/peer (for times: peer/ours, so above 1 always means ours is faster;
# accuracies: ours minus the peer's, in points). Usage: bash benchmarks/vs-peer-table.sh DIR
O=${1:?usage: vs-peer-table.sh DIR}
# value KEY FILE: the number after "RESULT KEY =" in FILE (empty when absent)
value() { grep -h "^RESULT $1 = " $2 2>/dev/null | tail -1 | sed 's/^RESULT [^=]*= *//' | awk '{print $1}'; }
row() { # row LABEL KEY OURSFILE PEERFILE higher|lower
  local o=$(value $2 $3) p=$(value $2 $4)
  awk -v l="$1" -v o="$o" -v p="$p" -v kind=$5 'BEGIN {
    r = (o == "" || p == "" || o == 0 || p == 0) ? "" : kind == "diff" ? sprintf("%+.2f points", o - p) : sprintf("%.2fx", kind == "higher" ? o / p : p / o);
    printf "| %s | %s | %s | %s |\n", l, o == "" ? "-" : o, p == "" ? "-" : p, r }'
}
for isa in avx512 avx2; do
  ls $O/$isa-ours-*.log >/dev/null 2>&1 || continue
  echo
  echo "### $isa ($(head -1 $O/$isa-peer-conv.log 2>/dev/null) .. $(tail -2 $O/$isa-ours-cnn2.log 2>/dev/null | head -1))"
  echo
  echo "| figure | ours | peer | ratio (>1: ours faster) |"
  echo "|---|---|---|---|"
  for net in lenet5 cnn2bn; do
    f=lenet; [ $net = cnn2bn ] && f=cnn2
    for e in 1 2 3; do
      row "$net train img/s, epoch $e" $net.epoch$e.train_img_per_s $O/$isa-ours-$f.log $O/$isa-peer-$f.log higher
    done
    for e in 1 2 3; do
      row "$net test acc % after epoch $e" $net.epoch$e.test_acc_pct $O/$isa-ours-$f.log $O/$isa-peer-$f.log diff
    done
    row "$net infer10k s (epoch 3, batches of 1000)" $net.epoch3.infer10k_s $O/$isa-ours-$f.log $O/$isa-peer-$f.log lower
  done
  for c in conv_64x32x14x14_k64x32x3x3 conv_64x1x28x28_k32x1x3x3; do
    row "$c fwd ms" $c.fwd_ms $O/$isa-ours-conv.log $O/$isa-peer-conv.log lower
    row "$c fwd+bwd ms" $c.fwd_bwd_ms $O/$isa-ours-conv.log $O/$isa-peer-conv.log lower
  done
  row "maxpool 2x2 [64,32,28,28] fwd ms" maxpool2x2_64x32x28x28.fwd_ms $O/$isa-ours-conv.log $O/$isa-peer-conv.log lower
  row "maxpool 2x2 fwd+bwd ms" maxpool2x2_64x32x28x28.fwd_bwd_ms $O/$isa-ours-conv.log $O/$isa-peer-conv.log lower
  row "GEMM 2048^2 GFLOP/s, 2 threads" mm2048.threads2.gflops $O/$isa-ours-mm.log $O/$isa-peer-mm.log higher
  row "GEMM 2048^2 GFLOP/s, 1 thread" mm2048.threads1.gflops $O/$isa-ours-mm.log $O/$isa-peer-mm.log higher
  for net in lenet5 cnn2bn; do
    f=$O/$isa-inference-$net.log
    # ours and ONNX Runtime come from the same process: the "peer" column is ONNX Runtime here
    o=$(value inference.$net.pipeline_img_per_s $f); p=$(value inference.$net.ort_b1000_img_per_s $f)
    awk -v l="$net IDataView scoring img/s (peer column: ONNX Runtime, batches of 1000)" -v o="$o" -v p="$p" 'BEGIN {
      printf "| %s | %s | %s | %s |\n", l, o == "" ? "-" : o, p == "" ? "-" : p, (o == "" || p == "" || p == 0) ? "" : sprintf("%.2fx", o / p) }'
    o=$(value inference.$net.predict_fitted_median_us $f); p=$(value inference.$net.predict_loaded_median_us $f)
    awk -v l="$net PredictionEngine median us (peer column: loaded ONNX model)" -v o="$o" -v p="$p" 'BEGIN {
      printf "| %s | %s | %s | %s |\n", l, o == "" ? "-" : o, p == "" ? "-" : p, (o == "" || p == "" || o == 0) ? "" : sprintf("%.2fx", p / o) }'
  done
  for net in lenet5 cnn2bn; do
    f=lenet; [ $net = cnn2bn ] && f=cnn2
    echo "| $net training peak working set (ours) | $(grep -h "^RESULT $net.peak_working_set_mib" $O/$isa-ours-$f.log 2>/dev/null | sed 's/^RESULT [^=]*= *//') | | |"
  done
done
