#!/usr/bin/env bash
# scripts/build.sh [BUILD_DIR] [extra cmake args...] - configure and build kiln (Release).
# CUDA is used when the toolkit is found (KILN_CUDA_ARCHS defaults to 80;86;89;90).
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-build}"
shift || true
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S . -B "$dir" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$dir" -j "$(nproc)"
