#!/usr/bin/env bash
# Query times on a full store: fills a fresh store with SPANS spans (default 5M) through `vigil bench
# ingest`, then times the API queries (median of 5 curls), before and after the deferred-index batch.
#   scripts/bench-queries.sh [SPANS]     (release build: cargo build --release; BIN= another build)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${BIN:-$ROOT/target/release/vigil}"; SPANS=${1:-5000000}
source "$ROOT/scripts/vigil-bench-server.sh"
DIR=$(mktemp -d); trap 'kill $PID 2>/dev/null || true; rm -rf "$DIR"' EXIT
start_vigil "$DIR"
taskset -c 0 "$BIN" bench ingest --target "http://127.0.0.1:$OTLP_PORT" --api "http://127.0.0.1:$API_PORT" --api-key "$KEY" --spans "$SPANS" --concurrency 8 | grep -E "accepted|throughput"
q() { for i in 1 2 3 4 5; do curl -s -o /dev/null -w "%{time_total}\n" -H "x-vigil-api-key: $KEY" "http://127.0.0.1:$API_PORT$1"; done | sort -n | sed -n 3p; }
report() {
  ID=$(curl -s -H "x-vigil-api-key: $KEY" "http://127.0.0.1:$API_PORT/api/v1/traces?limit=1" | python3 -c 'import sys,json; print(json.load(sys.stdin)["traces"][0]["trace_id"])')
  OLD=$(sqlite3 -readonly "$DIR/data/vigil.db" "select lower(hex(trace_id)) from traces where id = 1000")
  echo "waiting rows: $(sqlite3 -readonly "$DIR/data/vigil.db" 'select count(*) from traces where indexed = 0')"
  for Q in "/api/v1/traces" "/api/v1/traces?model=gpt-4o-mini" "/api/v1/traces?flags=silent_tool_failure" "/api/v1/traces?sort=cost" \
           "/api/v1/traces?environment=staging&status=error" "/api/v1/metrics?from=24h&group_by=model&kind=llm&bucket=1h" \
           "/api/v1/sessions" "/api/v1/traces/$ID" "/api/v1/traces/$OLD"; do
    printf "%-70s %s s\n" "$Q" "$(q "$Q")"
  done
}
echo "-- at once (newest traces still waiting)"; report
sleep 7
echo "-- after the indexing batch"; report
du -sh "$DIR/data"
