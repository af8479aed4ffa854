#!/usr/bin/env bash
# Gateway memory over a long run: a fresh server (both cores) proxying to the compiled mock upstream
# of ../shared/bench (fastmock, CPU 0), open-loop load from oha at a fixed rate, every call traced.
# Samples the server's RSS every 10 s and prints it with the stored span count at the end.
#   scripts/bench-gateway-memory.sh [SECONDS=600] [RATE=2000]   (release build; ../shared/bench/setup.sh once)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${BIN:-$ROOT/target/release/vigil}"
SECS="${1:-600}"
RATE="${2:-2000}"
BENCH="$ROOT/../shared/bench"
FASTMOCK="${FASTMOCK:-/opt/bench/target/release/fastmock}"
OHA="${OHA:-$(command -v oha || echo /opt/bench/oha/bin/oha)}"
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
[ -x "$FASTMOCK" ] && [ -x "$OHA" ] || { echo "run $BENCH/setup.sh first (fastmock, oha)" >&2; exit 1; }
DIR="$(mktemp -d)"
trap 'kill $PID $MOCK 2>/dev/null || true; rm -rf "$DIR"' EXIT
MOCK_PORT=$((18100 + RANDOM % 500))
taskset -c 0 "$FASTMOCK" "$MOCK_PORT" 1 >/dev/null 2>&1 &
MOCK=$!
printf '[[gateway.providers]]\nname = "fastmock"\nkind = "openai_compatible"\nbase_url = "http://127.0.0.1:%s/v1"\n' \
  "$MOCK_PORT" >"$DIR/vigil.toml"
PORT=$((17000 + RANDOM % 1000))
VIGIL_LOG=warn "$BIN" --data-dir "$DIR/data" --config "$DIR/vigil.toml" serve --api-addr "127.0.0.1:$PORT" \
  --otlp-http-addr 127.0.0.1:0 --otlp-grpc-addr 127.0.0.1:0 2>"$DIR/log" &
PID=$!
for _ in $(seq 100); do grep -q ready "$DIR/log" 2>/dev/null && break; sleep 0.1; done
KEY="$(grep -o 'vk_[A-Za-z0-9_]*' "$DIR/log" | head -1)"
taskset -c 0 "$OHA" -z "${SECS}s" -q "$RATE" -c 32 --no-tui --output-format json -m POST -T application/json \
  -H "Authorization: Bearer $KEY" -D "$BENCH/chat_body.json" "http://127.0.0.1:$PORT/v1/chat/completions" \
  >"$DIR/oha.json" 2>/dev/null &
LOAD=$!
echo "seconds rss_mib"
t=0
while kill -0 "$LOAD" 2>/dev/null; do
  echo "$t $(awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$PID/status")"
  sleep 10
  t=$((t + 10))
done
sleep 2
python3 - "$DIR/oha.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
codes = d.get("statusCodeDistribution", {})
p = d["latencyPercentiles"]
print(f"requests by status: {codes}; p50 {p['p50']*1000:.2f} ms, p99 {p['p99']*1000:.2f} ms")
PY
echo "spans stored: $(sqlite3 -readonly "$DIR/data/vigil.db" 'select coalesce(sum(span_count),0) from traces')"
