#!/usr/bin/env bash
# scripts/gpu_check.sh [BUILD_DIR] - on a GPU machine: run every gpu-labelled test binary, build
# and run the example engines (verify against the CPU backend, benchmark), and print a table.
# Logs go to $OUT (or ./gpu-out). Used with the device tool: the build dir is built elsewhere
# and carried, with its shared-library dependencies in .deps/lib.
set -uo pipefail
cd "$(dirname "$0")/.."
B="${1:-build-gpu}"
OUT="${OUT:-gpu-out}"
mkdir -p "$OUT"
export LD_LIBRARY_PATH="$PWD/.deps/lib:${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
declare -a rows
for t in "$B"/tests/test_cuda_* "$B"/tests/test_engine_gpu "$B"/tests/test_triton_* "$B"/tests/test_fmha* "$B"/tests/test_whisper_gpu "$B"/tests/test_whisper_mel_gpu "$B"/tests/test_mel_gpu "$B"/tests/test_weight_stream_gpu; do
  [ -x "$t" ] || continue
  name=$(basename "$t")
  start=$(date +%s%N)
  (cd "$B/tests" && timeout 300 "./$name") > "$OUT/$name.log" 2>&1
  rc=$?
  secs=$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
  rows+=("$name rc=$rc ${secs}s $(tail -n 1 "$OUT/$name.log")")
  [ $rc -ne 0 ] && tail -n 30 "$OUT/$name.log"
done
# Whisper at the tiny, large-v3 and large-v3-turbo geometries against transformers (fp32 greedy
# tokens, fp16 error no worse than transformers'): the driver makes each checkpoint and its
# references with torch on this GPU, then runs the test binary (tests/gpu/whisper_geometry.sh)
if [ -x "$B/tests/test_whisper_geometry" ]; then
  start=$(date +%s%N)
  timeout 900 bash tests/gpu/whisper_geometry.sh "$B/tests" > "$OUT/whisper_geometry.log" 2>&1
  rc=$?
  secs=$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
  rows+=("whisper_geometry.sh rc=$rc ${secs}s")
  while IFS= read -r line; do rows+=("  $line"); done < <(grep "^geometry " "$OUT/whisper_geometry.log")
  [ $rc -ne 0 ] && tail -n 40 "$OUT/whisper_geometry.log"
fi
K="$B/kiln"
{
  echo "== mlp fp16, timing cache cold then warm"
  rm -f /tmp/kiln.cache
  /usr/bin/time -f "build1 %e s" $K build --network examples/mlp.json --dtype fp16 --timing-cache /tmp/kiln.cache -o /tmp/mlp.engine
  /usr/bin/time -f "build2 %e s" $K build --network examples/mlp.json --dtype fp16 --timing-cache /tmp/kiln.cache -o /tmp/mlp.engine
  $K inspect /tmp/mlp.engine
  $K run /tmp/mlp.engine --shapes x=256x64 --verify --benchmark --cuda-graph
  echo "== attention (plain layer) fp16 and fp32"
  for dt in fp16 fp32; do
    $K build attention --num-heads 32 --head-size 64 --max-batch 8 --max-seq 512 --dtype $dt --attention plain -o /tmp/attn_$dt.engine
    $K run /tmp/attn_$dt.engine --shapes q=2x32x256x64,k=2x32x256x64,v=2x32x256x64 --verify
    $K run /tmp/attn_$dt.engine --shapes q=8x32x512x64,k=8x32x512x64,v=8x32x512x64 --benchmark
  done
} > "$OUT/cli.log" 2>&1
echo "cli rc=$?"
grep -E "build[12]|verify|GPU compute|throughput|wrote|error" "$OUT/cli.log"
echo "== summary"
printf '%s\n' "${rows[@]}"
