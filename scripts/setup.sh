#!/usr/bin/env bash
# scripts/setup.sh - install what kiln needs on Debian 12 / Ubuntu (apt-get) and Python (pip).
# Idempotent: packages already present are skipped quickly. Needs root (or sudo) for apt-get.
#   --no-python   skip the pip step (then the Triton kernels are not generated)
#   --testset     also install what tools/make_testset.py needs to synthesize the English speech
#                 test set: speech synthesizers (espeak-ng, flite, festival with two diphone
#                 voices and one HTS voice), sox, the public-domain text (dict-devil), and the
#                 Python modules soundfile and soxr
set -euo pipefail
cd "$(dirname "$0")/.."

want_python=1
want_testset=0
for a in "$@"; do
  case "$a" in
    --no-python) want_python=0 ;;
    --testset) want_testset=1 ;;
    *) echo "setup.sh: unknown option $a" >&2; exit 2 ;;
  esac
done

pkgs=(build-essential cmake ninja-build pkg-config zlib1g-dev libcjson-dev libpcre2-dev
      libsndfile1-dev libsoxr-dev libopenblas-dev)
command -v python3 >/dev/null || pkgs+=(python3 python3-pip)
[ "$want_testset" = 1 ] && pkgs+=(espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k
                                  festvox-us-slt-hts sox dict-devil)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ "$want_python" = 1 ]; then
  if ! python3 -c "import triton, numpy, safetensors; assert triton.__version__.startswith('3.6')" 2>/dev/null; then
    echo "setup: pip install -r requirements.txt"
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q -r requirements.txt
    python3 -c "import triton; assert triton.__version__.startswith('3.6')" ||
      { echo "setup: triton 3.6 does not import after pip install; see the pip output above" >&2; exit 1; }
  fi
fi
if [ "$want_testset" = 1 ] && ! python3 -c "import numpy, soundfile, soxr" 2>/dev/null; then
  echo "setup: pip install numpy soundfile soxr (for tools/make_testset.py)"
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q numpy soundfile soxr
fi
echo "setup: done"
