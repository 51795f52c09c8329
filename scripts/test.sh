#!/usr/bin/env bash
# Set up a fresh machine (apt packages, .venv, models) and run the test suite.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh
export REPATLAS_PYTHON="$root/.venv/bin/python"
cargo test --locked "$@"
