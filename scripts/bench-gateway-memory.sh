#!/usr/bin/env bash
# Gateway memory over a long run: a fresh server (both cores) proxying to the compiled mock upstream
# of ../shared/bench (fastmock, CPU 0), open-loop load from oha at a fixed rate, every call traced.
# Samples the server's RSS every 10 s and prints it with the stored span count at the end.
#   scripts/bench-gateway-memory.sh [SECONDS=600] [RATE=2000]   (release build; ../shared/bench/setup.sh once)
set -euo pipefail
SECS="${1:-600}"
RATE="${2:-2000}"
source "$(dirname "${BASH_SOURCE[0]}")/gateway-bench-server.sh"
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
