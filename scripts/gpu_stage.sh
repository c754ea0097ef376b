#!/usr/bin/env bash
# scripts/gpu_stage.sh [BUILD_DIR [TEST ...]] - stage a CUDA build for the GPU machine (the device tool):
# stripped binaries (kiln, whisper_bench, every gpu-labelled test) into .gpu-stage/ with the
# layout scripts/gpu_check.sh expects, the tokenizer files the Whisper tests and benchmarks read,
# and the shared libraries the binaries need into .deps/lib. Both folders are git-ignored: carry
# them (`carry: [".gpu-stage", ".deps"]`). KILN_STAGE_BINS="build-gpu/kiln ..." stages only those
# programs (each is ~13 MB packed: a call carries 64 MiB at most). A build configured with
# -DKILN_LINK_SHARED=ON links the tests against libkiln.so (staged into .deps/lib): then every
# gpu test and both programs fit one carry (~22 MiB with .deps packed as .gpu-stage/deps.tar.xz:
# `tar -C .deps -cJf .gpu-stage/deps.tar.xz lib`). On the GPU machine, first:
#   tar -C .gpu-stage -xJf .gpu-stage/bins.tar.xz
#   export LD_LIBRARY_PATH=$PWD/.deps/lib; [ -e /work/shared ] || ln -s "$PWD/.gpu-stage/shared" /work/shared
set -euo pipefail
cd "$(dirname "$0")/.."
B="${1:-build-gpu}"
S=.gpu-stage
rm -rf "$S"
mkdir -p "$S/tests" "$S/shared/data/whisper" .deps/lib
for f in ${KILN_STAGE_BINS:-"$B/kiln" "$B/whisper_bench" "$B/wq_bench" "$B/kv_bench" "$B/decode_host_bench" "$B/chain_bench"}; do [ -x "$f" ] && strip -o "$S/$(basename "$f")" "$f"; done
# every gpu test, or the ones named (each links the whole library: the tree must stay < 64 MiB)
shift || true
tests=("$@")
[ ${#tests[@]} -eq 0 ] && tests=(test_cuda_\* test_engine_gpu test_triton_\* test_fmha\* test_whisper_gpu test_whisper_mel_gpu test_mel_gpu test_weight_stream_gpu test_whisper_geometry)
for pat in "${tests[@]}"; do
  for t in "$B"/tests/$pat; do [ -x "$t" ] && strip -o "$S/tests/$(basename "$t")" "$t"; done
done
cp -r ../shared/data/whisper/tokenizer-hf "$S/shared/data/whisper/"
cp -r ../shared/data/whisper/audio "$S/shared/data/whisper/" 2>/dev/null || true
ln -sfn shared/data/whisper/tokenizer-hf "$S/tok"
# the non-system libraries the binaries link (Debian's -dev libraries are missing there)
for lib in $(ldd "$S/kiln" "$S"/tests/* 2>/dev/null | awk '/=> \// {print $3}' | sort -u); do
  case "$(basename "$lib")" in
    libc.so*|libm.so*|libstdc++*|libgcc_s*|libpthread*|libdl*|librt*|ld-linux*|libcuda.so*|libcudart*|libcublas*|libcufft*) ;;
    *) cp -L "$lib" .deps/lib/ ;;
  esac
done
# binaries compress about 6x (mostly embedded kernels): pack them, unpack on the GPU machine with
#   tar -C .gpu-stage -xJf .gpu-stage/bins.tar.xz
(cd "$S" && tar -cJf bins.tar.xz --remove-files $(ls -d kiln whisper_bench wq_bench kv_bench decode_host_bench chain_bench tests 2>/dev/null))
du -sh "$S" .deps
