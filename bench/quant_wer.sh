#!/usr/bin/env bash
# bench/quant_wer.sh KILN_BINARY MANIFEST OUT_DIR - WER of kiln's quantization configurations on a
# speech test set with a real checkpoint (kiln issue 5): builds the Whisper engines once per
# configuration (fp16 / int8 / int4 weights, each with the KV cache in the precision and in int8),
# runs `kiln eval` with each, and prints a markdown table of WER, S/D/I, RTF and planned GPU memory
# from each summary.json (also written to OUT_DIR/table.md). A configuration whose build or eval
# fails is a row saying so (the end of kiln's error output) and the others go on.
#
# Target: the GPU when KILN_BINARY has CUDA (`kiln --version` lists cuda) and nvidia-smi sees a GPU,
# else the CPU. The CPU backend takes --dtype fp16 (weights and activations stored in fp16, products
# computed in fp32: slower than fp32, same rounding points as the GPU's fp16 engines), so DTYPE is
# fp16 on both unless set. Not here: the peers; faster-whisper's INT8 row comes from
# bench/peer_eval.py's output on the same manifest (PEER_SUMMARIES below).
#
# Environment (all optional):
#   CHECKPOINT      the Hugging Face checkpoint folder (default models/whisper-base)
#   CONFIGS         default "fp16 int8 int4 fp16+kv8 int8+kv8 int4+kv8" (parts: fp16, int8, int4,
#                   int4g64 = int4 with --group-size 64, kv8 = --kv-cache int8, allq = --keep-float
#                   none: every linear layer quantized, int4's first encoder layer included)
#   TARGET          cuda | cpu (default: detected as above)
#   DTYPE           --dtype of the engines (default fp16)
#   BATCH           --max-batch of the engines and kiln eval --batch-size (default 16 on the GPU, 1 on the CPU)
#   PEER_SUMMARIES  space-separated summary.json files of bench/peer_eval.py (e.g.
#                   peer-out/faster-whisper-int8-b1/summary.json) added as rows for comparison
#   REBUILD=1       rebuild engines that OUT_DIR already holds
#
# usage: bench/quant_wer.sh build/kiln data/testset/manifest.jsonl quant-wer/
#        CONFIGS="fp16 int8" bench/quant_wer.sh build/kiln tests/data/testset-mini/manifest.jsonl /tmp/qw
set -uo pipefail
if [ $# -ne 3 ]; then
  sed -n '2,/^set -uo/{/^#/p}' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
KILN=$1 MANIFEST=$2 OUT=$3
CHECKPOINT=${CHECKPOINT:-models/whisper-base}
CONFIGS=${CONFIGS:-"fp16 int8 int4 fp16+kv8 int8+kv8 int4+kv8"}
DTYPE=${DTYPE:-fp16}
[ -x "$KILN" ] || { echo "quant_wer.sh: $KILN is not an executable kiln" >&2; exit 2; }
[ -f "$MANIFEST" ] || { echo "quant_wer.sh: no manifest $MANIFEST (python3 tools/make_testset.py makes data/testset)" >&2; exit 2; }
[ -f "$CHECKPOINT/config.json" ] || { echo "quant_wer.sh: no checkpoint at $CHECKPOINT (set CHECKPOINT)" >&2; exit 2; }
if [ -z "${TARGET:-}" ]; then
  TARGET=cpu
  if "$KILN" --version 2>/dev/null | grep -q 'cuda(' && nvidia-smi -L >/dev/null 2>&1; then TARGET=cuda; fi
fi
if [ -z "${BATCH:-}" ]; then
  BATCH=1
  [ "$TARGET" = cuda ] && BATCH=16
fi
mkdir -p "$OUT/engines" "$OUT/logs"

# the `kiln build whisper` flags of a configuration name, or nothing (status 1) for an unknown part
config_flags() {
  local part flags=""
  for part in ${1//+/ }; do
    case $part in
      fp16) ;;
      int8) flags+=" --weight-only int8" ;;
      int4) flags+=" --weight-only int4" ;;
      int4g64) flags+=" --weight-only int4 --group-size 64" ;;
      kv8) flags+=" --kv-cache int8" ;;
      allq) flags+=" --keep-float none" ;;
      *) return 1 ;;
    esac
  done
  echo "$flags"
}

# one cell: the last lines of an error log, | escaped
tail_cell() { tail -n 3 "$1" | tr '\n' ' ' | sed 's/|/\\|/g' | cut -c1-300; }

declare -A STATUS
for cfg in $CONFIGS; do
  if ! flags=$(config_flags "$cfg"); then
    STATUS[$cfg]="unknown configuration (parts: fp16 int8 int4 int4g64 kv8 allq)"
    continue
  fi
  name=${cfg//+/-}
  eng="$OUT/engines/$name" log="$OUT/logs/$name"
  if [ ! -f "$eng/whisper.json" ] || [ "${REBUILD:-0}" = 1 ]; then
    echo "== $cfg: kiln build whisper --target $TARGET --dtype $DTYPE --max-batch $BATCH$flags" >&2
    cache=()
    [ "$TARGET" = cuda ] && cache=(--timing-cache "$OUT/timing.cache")
    # shellcheck disable=SC2086 # flags are words
    if ! "$KILN" build whisper --checkpoint "$CHECKPOINT" --target "$TARGET" --dtype "$DTYPE" --max-batch "$BATCH" \
        "${cache[@]}" $flags -o "$eng" >"$log.build" 2>&1; then
      rm -rf "$eng"
      STATUS[$cfg]="build failed: $(tail_cell "$log.build")"
      echo "   build failed (log $log.build)" >&2
      continue
    fi
  fi
  echo "== $cfg: kiln eval (batch $BATCH)" >&2
  rm -f "$OUT/$name/summary.json"
  "$KILN" eval "$eng" --manifest "$MANIFEST" --output-dir "$OUT/$name" --batch-size "$BATCH" >"$log.eval" 2>&1
  rc=$?
  if [ ! -f "$OUT/$name/summary.json" ]; then
    STATUS[$cfg]="eval failed (exit $rc): $(tail_cell "$log.eval")"
    echo "   eval failed (log $log.eval)" >&2
  elif [ $rc -ne 0 ]; then
    STATUS[$cfg]="some utterances failed (exit $rc; $OUT/$name/errors.tsv)"
  fi
done

# the table, from each summary.json
{
  echo "- $("$KILN" --version 2>/dev/null | head -1); $(date +%F); checkpoint $CHECKPOINT; manifest $MANIFEST"
  echo "- engines: \`kiln build whisper --target $TARGET --dtype $DTYPE --max-batch $BATCH\` + the config's flags;" \
       "\`kiln eval --batch-size $BATCH\` (greedy, first 30 s of each file, no timestamps, Whisper's English normalizer)"
  echo "- RTF: wall time / audio seconds (audio loading and mel included, model load not); memory: planned GPU bytes" \
       "(engines + contexts + runtime buffers; 0 = CPU engines)$([ -n "${PEER_SUMMARIES:-}" ] && echo "; peers: NVML-measured")"
  echo
  echo "| config | target / dtype | WER | S / D / I (N words) | utts | RTF | GPU memory (MiB) | note |"
  echo "|---|---|---|---|---|---|---|---|"
  rows=()
  for cfg in $CONFIGS; do
    rows+=("$cfg"$'\t'"$TARGET / $DTYPE"$'\t'"$OUT/${cfg//+/-}/summary.json"$'\t'"${STATUS[$cfg]:-}")
  done
  for peer in ${PEER_SUMMARIES:-}; do
    rows+=("$(basename "$(dirname "$peer")") (peer)"$'\t'"bench/peer_eval.py"$'\t'"$peer"$'\t'"")
  done
  # one row per "name<TAB>target<TAB>summary.json<TAB>status"; peers' memory is NVML-measured
  python3 - "${rows[@]}" <<'EOF'
import json, sys
for row in sys.argv[1:]:
    name, where, path, status = row.split("\t")
    try:
        with open(path) as f:
            s = json.load(f)
    except (OSError, ValueError):
        print(f"| {name} | {where} | {status or 'no summary.json: ' + path} | | | | | |")
        continue
    p = s.get("perf", {})
    mem = p.get("peak_device_bytes", -1)
    mem = "n/a (CPU)" if mem == 0 else "—" if mem < 0 else f"{mem / 2**20:.0f}" + (" (measured)" if "(peer)" in name else "")
    rtf = f"{p['rtf']:.4f}" if "rtf" in p else "—"
    print(f"| {name} | {where} | {100 * s['wer']:.2f}% | {s['substitutions']} / {s['deletions']} / {s['insertions']} "
          f"({s['ref_words']}) | {s['utterances']} | {rtf} | {mem} | {status} |")
EOF
} | tee "$OUT/table.md"
