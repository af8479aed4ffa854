#!/usr/bin/env bash
# Added latency at a fixed rate: a fresh server (both cores) proxying to the compiled mock upstream
# of ../shared/bench (fastmock, CPU 0), then ROUNDS rounds of 10 s at RATE req/s (oha on CPU 0,
# 64 connections, latency-corrected): the mock directly, then through the gateway, every call traced.
# Prints p50/p99 of both and the difference per round. BIN picks another build for an A/B.
#   scripts/bench-gateway-tail.sh [ROUNDS=5] [RATE=1000]   (release build; ../shared/bench/setup.sh once)
set -euo pipefail
ROUNDS="${1:-5}"
RATE="${2:-1000}"
source "$(dirname "${BASH_SOURCE[0]}")/gateway-bench-server.sh"
load() { # URL SECONDS OUT
  taskset -c 0 "$OHA" -z "$2s" -q "$RATE" -c 64 --latency-correction --no-tui --output-format json -m POST \
    -T application/json -H "Authorization: Bearer $KEY" -D "$BENCH/chat_body.json" "$1/v1/chat/completions" \
    >"$3" 2>/dev/null
}
load "http://127.0.0.1:$PORT" 5 "$DIR/warm.json"
for round in $(seq "$ROUNDS"); do
  load "http://127.0.0.1:$MOCK_PORT" 10 "$DIR/direct.json"
  load "http://127.0.0.1:$PORT" 10 "$DIR/gateway.json"
  python3 - "$round" "$DIR/direct.json" "$DIR/gateway.json" <<'PY'
import json, sys
def read(path):
    d = json.load(open(path))
    p = d["latencyPercentiles"]
    ok = sum(v for k, v in d.get("statusCodeDistribution", {}).items() if k.startswith("2"))
    return p["p50"] * 1000, p["p99"] * 1000, ok
(d50, d99, _), (g50, g99, ok) = read(sys.argv[2]), read(sys.argv[3])
print(f"round {sys.argv[1]}: direct p50 {d50:.3f} p99 {d99:.3f} ms | gateway p50 {g50:.3f} p99 {g99:.3f} ms, "
      f"{ok} answered 2xx | added p50 {g50 - d50:.3f} p99 {g99 - d99:.3f} ms")
PY
done
sleep 2
echo "spans stored: $(sqlite3 -readonly "$DIR/data/vigil.db" 'select coalesce(sum(span_count),0) from traces')"
