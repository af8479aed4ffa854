#!/usr/bin/env bash
# Guard-check latency over HTTP: a fresh server (pinned to CPU 1) with examples/guard-policy.toml,
# then `vigil bench guard` (on CPU 0) at concurrency 1 (latency) and 16 (throughput).
#   scripts/bench-guard.sh [REQUESTS]     (release build: cargo build --release)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/target/release/vigil"
N="${1:-20000}"
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
DIR="$(mktemp -d)"; trap 'kill $PID 2>/dev/null || true; rm -rf "$DIR"' EXIT
PORT=$((17000 + RANDOM % 1000))
VIGIL_LOG=warn taskset -c 1 "$BIN" --data-dir "$DIR" serve --api-addr "127.0.0.1:$PORT" \
  --otlp-http-addr 127.0.0.1:0 --otlp-grpc-addr 127.0.0.1:0 2>"$DIR/log" &
PID=$!
for _ in $(seq 100); do grep -q ready "$DIR/log" 2>/dev/null && break; sleep 0.1; done
KEY="$(grep -o 'vk_[A-Za-z0-9_]*' "$DIR/log" | head -1)"
"$BIN" --data-dir "$DIR" guard set-policy "$ROOT/examples/guard-policy.toml" >/dev/null
sleep 2.1 # the server re-reads policies every 2 s
for c in 1 16; do
  echo "--- concurrency $c"
  taskset -c 0 "$BIN" bench guard --api "http://127.0.0.1:$PORT" --api-key "$KEY" --requests "$N" --concurrency "$c"
done
