#!/usr/bin/env bash
# session 6, GPU call 3: vectorized GELU and layernorm; large-v3 vs transformers
S=.gpu-stage
tar -C $S -xJf $S/bins.tar.xz
export LD_LIBRARY_PATH=$PWD/.deps/lib
mkdir -p /work 2>/dev/null; [ -e /work/shared ] || ln -s "$PWD/$S/shared" /work/shared
for t in test_cuda_ops test_engine_gpu test_cuda_fused_matmul test_whisper_gpu test_cuda_wq; do
  echo "== $t"; KILN_POISON=1 $S/tests/$t 2>&1 | tail -3
done
python3 bench/whisper_vs_transformers.py --kiln $S/kiln --bench $S/whisper_bench --tokenizer $S/tok --configs fp16 \
  --batches 1,4,16 --agreement-steps 0 --workdir /tmp/wb --output $OUT/table.md 2>&1 | tail -25
E=/tmp/wb/engines/fp16-max16
for b in 1 4 16; do $S/whisper_bench $E --batch $b --steps 100 --reps 2; done | tee $OUT/bench.txt
timeout 150 ncu --metrics gpu__time_duration.sum --csv --graph-profiling node --launch-count 700 \
  $S/whisper_bench $E --batch 4 --steps 1 --reps 1 > $OUT/ncu_b4.csv 2>/dev/null
python3 bench/ncu_sum.py $OUT/ncu_b4.csv 25
