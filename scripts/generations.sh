#!/usr/bin/env bash
# Two "hardware generations" on one machine: capacity sweeps of the embedded vLLM CPU server
# in two configurations (vLLM's default batch vs --max-num-seqs=4), then `harness compare`,
# `harness fleet` on the 30T and 60T scenarios with the published profiles, and a headless
# Chromium check of every HTML page. About 8 minutes on 2 cores.
#
#   scripts/generations.sh [OUT_DIR]        (default results/generations)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
OUT="${1:-results/generations}"
H=.venv/bin/harness
RATES=4,8,12,16,24,32,48,64

$H sweep workloads/sweep-chatbot.yaml --rates "$RATES" --out "$OUT/cpu-default" --overwrite
$H sweep workloads/sweep-chatbot.yaml --rates "$RATES" --out "$OUT/cpu-seqs4" --overwrite \
  --vllm-arg=--max-num-seqs=4
$H compare "$OUT/cpu-seqs4" "$OUT/cpu-default" --scenario scenarios/china-30t.yaml \
  --profile-from-runs --out "$OUT/comparison"
for s in china-30t china-60t; do
  $H fleet "scenarios/$s.yaml" --profile profiles/*.yaml "$OUT/cpu-seqs4" "$OUT/cpu-default" \
    --json "$OUT/fleet-$s.json" --md "$OUT/fleet-$s.md" --html "$OUT/fleet-$s.html"
done
.venv/bin/python scripts/check_html.py "$OUT/comparison/compare.html" "$OUT"/fleet-*.html
