#!/usr/bin/env bash
# tests/gpu/whisper_geometry.sh [BIN_DIR [GEOMETRY ...]] - kiln's Whisper engines against
# transformers at the tiny, large-v3 and large-v3-turbo geometries (random weights), on the GPU.
# Per geometry: tools/whisper_geometry_ref.py makes the checkpoint and transformers' references
# (fp32 greedy tokens and forced-sequence logits, transformers' own fp16 error) in a temporary
# folder, then BIN_DIR/test_whisper_geometry builds kiln's fp32 and fp16 engines from it and
# compares (tests/gpu/test_whisper_geometry.c says what); the folder (GBs for the large
# geometries) is deleted afterwards. Prints the checks and one line per geometry:
#   geometry NAME: PASS (...) | FAIL (...) | SKIPPED (...)
# Exit status: 0 all passed, 1 a failure, 77 skipped (no CUDA device for torch, or torch or
# transformers missing: CI). ctest runs it as test_whisper_geometry (label gpu); on the GPU
# machine, from the repository root with the staged binaries (scripts/gpu_stage.sh):
#   bash tests/gpu/whisper_geometry.sh .gpu-stage/tests
# BIN_DIR defaults to build/tests. Environment: PYTHON (python3), TMPDIR (where the temporary
# folder goes), KILN_WHISPER_GEOM_DEVICE=cpu (references and engines on the CPU: a check of
# this script and the comparisons without a GPU; tiny only, the large geometries take too long).
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN="${1:-$ROOT/build/tests}"
shift || true
GEOMETRIES=("$@")
[ ${#GEOMETRIES[@]} -eq 0 ] && GEOMETRIES=(tiny large-v3 large-v3-turbo)
PY="${PYTHON:-python3}"
DEVICE="${KILN_WHISPER_GEOM_DEVICE:-cuda}"
TEST="$BIN/test_whisper_geometry"
[ -d "$ROOT/.deps/lib" ] && export LD_LIBRARY_PATH="$ROOT/.deps/lib:${LD_LIBRARY_PATH:-}"

if [ ! -x "$TEST" ]; then
  echo "no test binary $TEST (build it: cmake with -DKILN_CUDA=ON, ninja test_whisper_geometry)" >&2
  exit 1
fi
if [ "$DEVICE" = cpu ]; then
  export KILN_WHISPER_GEOM_TARGET=cpu
  probe="import torch, transformers"
else
  probe="import torch, transformers; assert torch.cuda.is_available()"
fi
if ! "$PY" -c "$probe" 2>/dev/null; then
  echo "skipped: $PY cannot run the reference ($probe failed)"
  exit 77
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/kiln-whisper-geometry.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
export KILN_WHISPER_GEOM_TIMING_CACHE="$WORK/timing.cache" # large-v3's tactics serve turbo's encoder
failed=0
passed=0
summary=()
for g in "${GEOMETRIES[@]}"; do
  dir="$WORK/$g"
  mkdir -p "$dir"
  t0=$(date +%s)
  echo "== $g: reference (tools/whisper_geometry_ref.py $g, $DEVICE)"
  "$PY" "$ROOT/tools/whisper_geometry_ref.py" "$g" "$dir" --device "$DEVICE" > "$WORK/$g.ref.log" 2>&1
  rc=$?
  grep -E "^(reference|weights seed|  )" "$WORK/$g.ref.log"
  if [ $rc -ne 0 ]; then
    tail -n 20 "$WORK/$g.ref.log"
    summary+=("geometry $g: FAIL (the reference tool exited with $rc)")
    failed=1
    rm -rf "$dir"
    continue
  fi
  t1=$(date +%s)
  echo "== $g: kiln ($(basename "$TEST"))"
  "$TEST" "$dir/ckpt" "$dir/refs.bin" "$dir" > "$WORK/$g.test.log" 2>&1
  rc=$?
  t2=$(date +%s)
  grep -v "^whisper geometry " "$WORK/$g.test.log" | grep -E " \| |engines built|checks (passed|failed)|check failed"
  line="$(grep "^whisper geometry " "$WORK/$g.test.log" | tail -n 1)"
  times="reference $((t1 - t0)) s, kiln $((t2 - t1)) s"
  case $rc in
    0) summary+=("geometry $g: PASS (${line#whisper geometry $g: }; $times)"); passed=1 ;;
    77) summary+=("geometry $g: SKIPPED ($(tail -n 1 "$WORK/$g.test.log"))") ;;
    *)
      tail -n 30 "$WORK/$g.test.log"
      summary+=("geometry $g: FAIL (rc $rc; ${line#whisper geometry $g: }; $times)")
      failed=1
      ;;
  esac
  rm -rf "$dir"
done
echo "== whisper geometry summary"
printf '%s\n' "${summary[@]}"
[ $failed -ne 0 ] && exit 1
[ $passed -eq 0 ] && exit 77
exit 0
