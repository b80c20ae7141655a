#!/usr/bin/env bash
# `make demo`: start the embedded vLLM CPU server once, replay a chatbot trace and a small
# agent workload against it, print their summaries, and leave the runs in results/demo/.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
HARNESS="$ROOT/.venv/bin/harness"
OUT="$ROOT/results/demo"
READY="$(mktemp)"
mkdir -p "$OUT"

"$HARNESS" serve --ready-file "$READY" >"$OUT/server.log" 2>&1 &
SERVER_PID=$!
cleanup() {
  kill -INT "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  rm -f "$READY"
}
trap cleanup EXIT

echo "starting the embedded vLLM CPU server (40–100 s; log: $OUT/server.log)"
for _ in $(seq 1 600); do
  [[ -s "$READY" ]] && break
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "the server did not start; last lines of $OUT/server.log:" >&2
    tail -n 30 "$OUT/server.log" >&2
    exit 1
  fi
  sleep 0.5
done
[[ -s "$READY" ]] || { echo "the server did not become ready in time" >&2; exit 1; }
URL="$(cat "$READY")"
echo "server ready at $URL"

status=0
"$HARNESS" run workloads/demo-chatbot.yaml --server "$URL" --out "$OUT/chatbot" --overwrite || status=$?
"$HARNESS" run workloads/demo-agent.yaml --server "$URL" --out "$OUT/agent" --overwrite || status=$?
"$HARNESS" report "$OUT/chatbot" "$OUT/agent" >/dev/null
echo "demo results: $OUT/chatbot and $OUT/agent (report.md in each)"
exit "$status"
