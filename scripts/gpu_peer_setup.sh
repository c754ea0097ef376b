#!/usr/bin/env bash
# scripts/gpu_peer_setup.sh [WHEEL_DIR] - on the GPU machine (no network): make faster-whisper
# usable for bench/peer_eval.py, from a folder of wheels downloaded elsewhere (docs/peers.md says
# with which command; default WHEEL_DIR .whl).
#   1. pip install --no-index --no-deps --target .gpu-stage/peers/site: ctranslate2 4.8.5,
#      faster-whisper 1.2.1, and soundfile, soxr, cffi, pycparser, pyyaml where Python lacks
#      them. --target leaves the system's Python alone (and is not refused as an "externally
#      managed environment"); use it with PYTHONPATH=.gpu-stage/peers/site.
#   2. cuBLAS: the ctranslate2 wheel is built with CUDA 12.4 (runtime linked in statically) and
#      dlopen()s libcublas.so.12 at run time (9 functions: cublasCreate_v2, cublasGemmEx, ...).
#      When no libcublas.so.12 is installed, .gpu-stage/peers/cublas12/ gets a link named
#      libcublas.so.12 to the CUDA 13 libcublas.so.13 that torch brings (the 9 functions are
#      there with the same C signatures; docs/peers.md says why this may work and how it is
#      checked). Use it with LD_LIBRARY_PATH=.gpu-stage/peers/cublas12 (peer_eval.py --fw-lib-dir).
#   3. The CTranslate2 model: when models/whisper-base-ct2 is missing and models/whisper-base
#      (Hugging Face) is there, converts it with ctranslate2's transformers converter (float16; the
#      same model.bin bytes as the PyPI package's newer-format copy, see docs/peers.md).
#   4. Checks: faster-whisper transcribes examples/audio/jfk.flac on the GPU in int8 and float16
#      and the text must be JFK's sentence. Exit status 1 when a step fails, with what to do.
# What it is not: a downloader (no network there), nor needed for the transformers peer.
set -euo pipefail
cd "$(dirname "$0")/.."
whl="${1:-.whl}"
stage=.gpu-stage/peers
site="$stage/site"
shim="$stage/cublas12"
py=python3
[ -d "$whl" ] || { echo "gpu_peer_setup: no wheel folder $whl (carry it; docs/peers.md)" >&2; exit 1; }
mkdir -p "$site" "$shim"

# 1. wheels
want=(ctranslate2 faster-whisper)
for m in soundfile:soundfile soxr:soxr cffi:cffi pycparser:pycparser yaml:pyyaml; do
  $py -c "import ${m%%:*}" 2>/dev/null || want+=("${m#*:}")
done
echo "gpu_peer_setup: pip install --target $site: ${want[*]}"
PIP_ROOT_USER_ACTION=ignore $py -m pip install -q --no-index --find-links "$whl" --no-deps \
  --upgrade --target "$site" "${want[@]}"
export PYTHONPATH="$PWD/$site${PYTHONPATH:+:$PYTHONPATH}"
$py -c "import ctranslate2, faster_whisper.transcribe" 2>/dev/null || $py - <<'EOF'
import sys, types
sys.modules.setdefault("av", types.ModuleType("av"))  # PyAV is only for decoding files; not carried
import ctranslate2, faster_whisper.transcribe
EOF
echo "gpu_peer_setup: ctranslate2 $($py -c 'import ctranslate2; print(ctranslate2.__version__)'), CUDA devices seen by it:" \
  "$($py -c 'import ctranslate2; print(ctranslate2.get_cuda_device_count())')"

# 2. cuBLAS 12 name
if ldconfig -p 2>/dev/null | grep 'libcublas\.so\.12 ' >/dev/null; then
  echo "gpu_peer_setup: libcublas.so.12 is installed; no link needed"
else
  lib13=$($py - <<'EOF'
import glob, os
c = []
try:
    import nvidia
    for p in nvidia.__path__:
        c += glob.glob(os.path.join(p, "**", "libcublas.so.13"), recursive=True)
except ImportError:
    pass
try:
    import torch
    c += glob.glob(os.path.join(os.path.dirname(torch.__file__), "lib", "libcublas.so.13"))
except ImportError:
    pass
c += glob.glob("/usr/local/cuda*/lib*/libcublas.so.13") + glob.glob("/usr/lib/x86_64-linux-gnu/libcublas.so.13")
print(os.path.realpath(c[0]) if c else "")
EOF
)
  [ -n "$lib13" ] || { echo "gpu_peer_setup: found neither libcublas.so.12 nor torch's libcublas.so.13" >&2; exit 1; }
  ln -sfn "$lib13" "$shim/libcublas.so.12"
  [ -e "$(dirname "$lib13")/libcublasLt.so.13" ] && ln -sfn "$(dirname "$lib13")/libcublasLt.so.13" "$shim/libcublasLt.so.13"
  echo "gpu_peer_setup: $shim/libcublas.so.12 -> $lib13"
fi
export LD_LIBRARY_PATH="$PWD/$shim${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# 3. the CTranslate2 model
ct2=models/whisper-base-ct2
if [ ! -f "$ct2/model.bin" ]; then
  [ -f models/whisper-base/model.safetensors ] ||
    { echo "gpu_peer_setup: neither $ct2 nor models/whisper-base is here (carry one; docs/peers.md)" >&2; exit 1; }
  echo "gpu_peer_setup: converting models/whisper-base -> $ct2 (float16)"
  $py -c "import sys; from ctranslate2.converters.transformers import main; sys.argv[0] = 'ct2-transformers-converter'; main()" \
    --model models/whisper-base --output_dir "$ct2" --quantization float16 --force \
    --copy_files tokenizer.json preprocessor_config.json >/dev/null
fi

# 4. checks on the GPU
rc=0
for ct in int8 float16; do
  text=$($py - "$ct2" "$ct" <<'EOF' 2>"$stage/check_$ct.log" || true
import sys, types
try:
    import av  # noqa: F401
except ImportError:
    sys.modules["av"] = types.ModuleType("av")
import numpy as np, soundfile as sf, soxr
from faster_whisper import WhisperModel
x, sr = sf.read("examples/audio/jfk.flac", dtype="float32", always_2d=True)
x = soxr.resample(x.mean(axis=1), sr, 16000, quality="HQ").astype(np.float32)
m = WhisperModel(sys.argv[1], device="cuda", compute_type=sys.argv[2])
segs, _ = m.transcribe(x, language="en", beam_size=1, temperature=0.0, without_timestamps=True)
print(" ".join(s.text.strip() for s in segs))
EOF
)
  if echo "$text" | grep -qi "ask not what your country can do for you"; then
    echo "gpu_peer_setup: faster-whisper $ct on the GPU: OK ($text)"
  else
    rc=1
    echo "gpu_peer_setup: faster-whisper $ct on the GPU FAILED: \"$text\"; $stage/check_$ct.log ends with:" >&2
    tail -n 15 "$stage/check_$ct.log" >&2
    echo >&2
  fi
done
echo "gpu_peer_setup: use PYTHONPATH=$PWD/$site and bench/peer_eval.py --fw-lib-dir $shim"
exit $rc
