#!/usr/bin/env bash
# Build repatlas with candle's CUDA backend (`--features cuda`) on a machine
# that has neither a GPU nor a system CUDA toolkit, then check that the
# binary starts and that `--device cuda` fails with a clear message when no
# working driver is present.
#
# The toolkit comes from NVIDIA's PyPI wheels (nvcc, the C++ core library
# headers, cuBLAS, cuRAND, NVRTC), installed into a virtual environment under
# the work folder. candle links the CUDA driver library, libcuda.so, which
# only the NVIDIA driver installs. Without a driver, the script links a stub
# generated from the driver functions that cudarc declares, each of which
# returns CUDA_ERROR_UNKNOWN (999). On a machine with the driver the real
# library is used and the stub is not built.
#
# Environment: CUDA_CHECK_DIR (work folder, default .cuda-check),
# CUDA_COMPUTE_CAP (GPU architecture for candle's kernels, default 90 for
# an H100 or H200), CUDA_CHECK_JOBS (cargo -j, default the core count).
# Neither CI nor the test suite runs this; a cold build takes about
# 30 minutes on 2 cores, most of it nvcc compiling candle's kernels.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

log() { printf 'cuda-check: %s\n' "$*" >&2; }

work=$(realpath -m "${CUDA_CHECK_DIR:-$root/.cuda-check}")
mkdir -p "$work"

venv=$work/venv
if [ ! -x "$venv/bin/nvcc-ready" ]; then
  log "installing the CUDA toolkit wheels into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet \
    nvidia-cuda-nvcc==13.5.37 nvidia-cuda-nvrtc==13.5.37 \
    nvidia-cuda-cccl nvidia-cublas nvidia-curand
  touch "$venv/bin/nvcc-ready"
fi
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
toolkit=$site/nvidia/cu13
[ -x "$toolkit/bin/nvcc" ] || { log "nvcc not found at $toolkit/bin/nvcc"; exit 1; }

# One folder in the layout that candle's build scripts and cudarc expect:
# bin, include and nvvm from the wheels, and lib64 with the unversioned
# library names that the linker looks for.
cuda=$work/cuda
mkdir -p "$cuda/lib64"
for part in bin include nvvm; do
  ln -sfn "$toolkit/$part" "$cuda/$part"
done
for lib in "$toolkit"/lib/lib*.so.*; do
  name=$(basename "$lib")
  ln -sfn "$lib" "$cuda/lib64/$name"
  ln -sfn "$lib" "$cuda/lib64/${name%%.so.*}.so"
done

# libcuda.so: the driver's if there is one, else a generated stub.
link_dirs=$cuda/lib64
if ldconfig -p 2> /dev/null | grep 'libcuda\.so' > /dev/null; then
  log "using the NVIDIA driver's libcuda.so"
else
  cudarc=$(cargo metadata --locked --format-version 1 --features cuda \
    | python3 -c 'import json, sys, os
meta = json.load(sys.stdin)
print(next(os.path.dirname(p["manifest_path"]) for p in meta["packages"] if p["name"] == "cudarc"))')
  stub=$cuda/lib64/stubs
  mkdir -p "$stub"
  grep -ohE '^\s+fn cu[A-Za-z0-9_]+\(' "$cudarc/src/driver/sys/mod.rs" \
    | sed -E 's/^\s+fn //; s/\($//' | sort -u \
    | awk '{ printf "int %s(void) { return 999; }\n", $1 }' > "$stub/libcuda_stub.c"
  cc -shared -fPIC -o "$stub/libcuda.so" "$stub/libcuda_stub.c"
  ln -sfn libcuda.so "$stub/libcuda.so.1"
  log "no NVIDIA driver: linking a stub libcuda.so of $(wc -l < "$stub/libcuda_stub.c") functions"
  link_dirs=$link_dirs:$stub
fi

# cudarc 0.19 has bindings for CUDA versions up to 13.4 only, so the build
# selects those. NOTE: no binary so built has run against a real driver.
export CUDA_ROOT=$cuda CUDA_PATH=$cuda
export CUDARC_CUDA_VERSION=13040
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export PATH=$cuda/bin:$PATH
export LIBRARY_PATH=$link_dirs${LIBRARY_PATH:+:$LIBRARY_PATH}
export LD_LIBRARY_PATH=$link_dirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

log "building with --features cuda (compute capability $CUDA_COMPUTE_CAP) into $work/target"
start=$(date +%s)
cargo build --release --locked --features cuda --target-dir "$work/target" \
  -j "${CUDA_CHECK_JOBS:-$(nproc)}"
log "build finished in $(( $(date +%s) - start )) s"

bin=$work/target/release/repatlas
"$bin" --version
ldd "$bin" | grep -E 'libcuda|libcublas|libcurand|libnvrtc' >&2

# Without a GPU, asking for one must fail with a message, not a crash.
if ! nvidia-smi > /dev/null 2>&1; then
  model=$(ls "$root"/models/smollm2-135m-instruct/*.gguf 2> /dev/null | head -1 || true)
  if [ -n "$model" ]; then
    set +e
    "$bin" capture --model "$model" --stimuli datasets/stimuli.jsonl --limit 2 \
      --device cuda --out "$work/capture" 2> "$work/no-gpu.err"
    status=$?
    set -e
    log "capture --device cuda without a GPU: exit $status: $(tail -1 "$work/no-gpu.err")"
    [ "$status" -ne 0 ] && [ "$status" -lt 128 ] || { log "expected a clean failure"; exit 1; }
  fi
fi
log "done"
