#!/usr/bin/env bash
# Set up a fresh machine, build repatlas in release mode and run the demo:
# capture SmolLM2-135M and Qwen2.5-Coder-0.5B on datasets/stimuli.jsonl,
# compare every layer pair, write out/demo/results.parquet and the figures
# (copied into figures/), and print a summary per model pair.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh
cargo build --release --locked
target/release/repatlas -v demo --figures figures "$@"
