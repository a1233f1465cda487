#!/bin/bash
# Per key: new/base (or base/new for times) of each interleaved pair i, and their median. Usage: ab-summary.sh AB_DIR
D=${1:-$(dirname "$0")/ab}
v() { grep -h "^RESULT $1 = " $2 2>/dev/null | tail -1 | sed 's/^RESULT [^=]*= *//' | awk '{print $1}'; }
for spec in "avx2-conv conv_64x32x14x14_k64x32x3x3.fwd_ms lower" "avx2-conv conv_64x32x14x14_k64x32x3x3.fwd_bwd_ms lower" \
            "avx2-conv conv_64x1x28x28_k32x1x3x3.fwd_bwd_ms lower" "avx2-conv maxpool2x2_64x32x28x28.fwd_ms lower" \
            "avx2-conv maxpool2x2_64x32x28x28.fwd_bwd_ms lower" \
            "avx512-conv conv_64x32x14x14_k64x32x3x3.fwd_ms lower" "avx512-conv conv_64x32x14x14_k64x32x3x3.fwd_bwd_ms lower" \
            "avx512-conv conv_64x1x28x28_k32x1x3x3.fwd_bwd_ms lower" "avx512-conv maxpool2x2_64x32x28x28.fwd_ms lower" \
            "avx512-conv maxpool2x2_64x32x28x28.fwd_bwd_ms lower" \
            "avx2-cnn2 cnn2bn.epoch1.train_img_per_s higher" "avx2-cnn2 cnn2bn.epoch1.infer10k_s lower"; do
  set -- $spec
  line="$1 $2:"; ratios=""
  for i in 1 2 3 4 5; do
    n=$(v $2 $D/$1-new-$i.log); b=$(v $2 $D/$1-base-$i.log)
    [ -z "$n" -o -z "$b" ] && continue
    r=$(awk -v n=$n -v b=$b -v k=$3 'BEGIN { printf "%.3f", k == "higher" ? n / b : b / n }')
    line="$line new $n base $b ($r);"; ratios="$ratios $r"
  done
  med=$(echo $ratios | tr ' ' '\n' | sort -g | awk '{a[NR]=$1} END {if (NR) print (NR % 2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')
  echo "$line median speed-up ${med:-n/a}"
done
