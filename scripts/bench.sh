#!/usr/bin/env bash
# Run every benchmark against its peers on this machine and write the tables
# to out/bench/: the compare grid against a NumPy per-pair loop and
# rsatoolbox, the Gram stage against the BLAS GEMM rate, the grid's growth
# with stimuli and layers (cargo bench --bench peers), and capture against
# transformers and llama.cpp with its growth in stimuli
# (benches/capture_peers.py). The peers live in .bench-venv, which
# scripts/bench-peers-setup.sh creates; CI's test run installs none of this.
#
# Environment: REPATLAS_BENCH_NS (grid sizes, default 1024,4096),
# REPATLAS_BENCH_REPEATS (default 3), BENCH_CAPTURE_LIMIT (stimuli per
# capture run, default 128), BENCH_SCALING (stimulus counts of the capture
# scaling run, default 250,1000,4000; empty skips it).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

log() { printf 'bench: %s\n' "$*" >&2; }

scripts/setup.sh
scripts/bench-peers-setup.sh
cargo build --release --locked

log "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
log "load average before the runs: $(cut -d' ' -f1-3 /proc/loadavg)"

log "compare grid, Gram stage and grid scaling"
REPATLAS_PYTHON=.bench-venv/bin/python cargo bench --locked --bench peers

log "capture against transformers and llama.cpp"
.bench-venv/bin/python benches/capture_peers.py \
  --limit "${BENCH_CAPTURE_LIMIT:-128}" --repeats "${REPATLAS_BENCH_REPEATS:-3}"

scaling=${BENCH_SCALING-250,1000,4000}
if [ -n "$scaling" ]; then
  log "capture scaling over $scaling stimuli"
  .bench-venv/bin/python benches/capture_peers.py --scaling "$scaling"
fi

log "tables written to out/bench/ (grid.md, capture.md, capture_scaling.md)"
