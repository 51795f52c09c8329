#!/usr/bin/env bash
# Create .bench-venv with the peers that benches/capture_peers.py compares
# repatlas capture against: transformers on PyTorch (CPU) and llama.cpp
# through llama-cpp-python, plus numpy, scipy and rsatoolbox. transformers
# needs gguf and accelerate to load a GGUF file.
#
# Everything comes from PyPI. PyPI has no CPU-only torch wheel for Linux
# x86_64: torch 2.15.0 requires its CUDA 13 wheels (nvidia-*, triton), and
# its shared libraries link against them, so `import torch` fails without
# them. They are installed and never used.
#
# llama-cpp-python ships as an sdist, so pip compiles llama.cpp here (CMake
# and Ninja come from PyPI as build requirements when the system has none).
# GGML_NATIVE=OFF with explicit AVX2/AVX-512 and no AMX, because a build with
# the default native flags crashed with a segmentation fault on its first
# evaluation on these machines.
#
# A second run with every pinned version present only checks the versions.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

log() { printf 'bench-peers-setup: %s\n' "$*" >&2; }

venv=.bench-venv
python_bin=$venv/bin/python

# Versions installed together and checked with benches/capture_peers.py on
# Python 3.11 (Debian 12, x86_64).
pins=(
  numpy==2.4.6
  scipy==1.17.1
  rsatoolbox==0.3.2
  torch==2.15.0
  transformers==5.25.0
  accelerate==1.16.0
  tokenizers==0.23.3
  gguf==0.19.0
  sentencepiece==0.2.3
  psutil==7.2.2
)
llama_pin=llama-cpp-python==0.3.36
llama_cmake_args="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_AVX512=ON -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF"

# Print the pins whose installed version differs or that are missing.
missing_pins() {
  "$python_bin" - "$@" <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version

for pin in sys.argv[1:]:
    name, expected = pin.split("==")
    try:
        installed = version(name)
    except PackageNotFoundError:
        installed = None
    if installed != expected:
        print(pin)
EOF
}

if [ ! -x "$python_bin" ]; then
  log "creating $venv"
  python3 -m venv "$venv"
fi

todo=$(missing_pins "${pins[@]}")
if [ -n "$todo" ]; then
  log "installing: $(echo $todo)"
  "$venv/bin/pip" install --disable-pip-version-check "${pins[@]}"
fi

if [ -n "$(missing_pins "$llama_pin")" ]; then
  log "building $llama_pin from its sdist (about 10 minutes on 2 idle cores)"
  # --no-cache-dir so that a wheel cached from a build with other CMake flags
  # is not reused.
  CMAKE_ARGS="$llama_cmake_args" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    "$venv/bin/pip" install --disable-pip-version-check --no-cache-dir \
    --no-binary llama-cpp-python "$llama_pin"
fi

"$python_bin" -c 'import gguf, llama_cpp, numpy, psutil, rsatoolbox, scipy, torch, transformers' \
  || { log "an installed package failed to import; remove $venv and rerun"; exit 1; }
log "$venv is ready"
