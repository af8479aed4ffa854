#!/usr/bin/env bash
# Online evaluation under sustained ingest: a fresh server (both cores) with three rule evaluators,
# `vigil bench ingest` sending SPANS demo spans, and the evaluation queue sampled every second
# until it is drained. Reports ingest spans/s with evaluation on, the queue's lag (age of the oldest
# runnable job, after the 1 s settling delay) and how fast traces were evaluated end to end.
# SCOPE: `trace` (the evaluators judge whole traces) or `span` (they judge each span). Both judge at
# ingest, scores committed with the spans: a span always, a trace when its export carries all of it
# (the demo's do). Whatever ingest could not judge goes through the queue, which the script then
# waits to drain.
#   scripts/bench-evaluators.sh [SPANS] [SCOPE]     (release build: cargo build --release)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${BIN:-$ROOT/target/release/vigil}"
SPANS="${1:-200000}"
SCOPE="${2:-trace}"
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
DIR="$(mktemp -d)"; trap 'kill $PID 2>/dev/null || true; rm -rf "$DIR"' EXIT
cat > "$DIR/vigil.toml" <<TOML
[quality]
settle = "1s"
[[evaluators]]
name = "tools-answer"
scope = "$SCOPE"
rule = { type = "silent_tool_failure" }
[[evaluators]]
name = "no-refusal"
scope = "$SCOPE"
rule = { type = "refusal" }
[[evaluators]]
name = "no-pii"
scope = "$SCOPE"
rule = { type = "no_pii_in_output" }
TOML
source "$ROOT/scripts/vigil-bench-server.sh"
start_vigil "$DIR" --config "$DIR/vigil.toml"
PORT="$API_PORT"; OTLP="$OTLP_PORT"
stats() { curl -fsS -H "x-vigil-api-key: $KEY" "http://127.0.0.1:$PORT/api/v1/evaluators" | python3 -c '
import sys, json; q = json.load(sys.stdin)["queue"]; a = q.get("oldest_ready_age_ns")
print(q["queued"], q["running"], q["done"], q["failed"], (a or 0) / 1e9)'; }
( while sleep 1; do echo "$(date +%s.%N) $(stats)"; done ) > "$DIR/samples" 2>/dev/null &
SAMPLER=$!
START=$(date +%s.%N)
C0=$(awk '{print $14+$15}' "/proc/$PID/stat")
taskset -c 0 "$BIN" bench ingest --target "http://127.0.0.1:$OTLP" --api "http://127.0.0.1:$PORT" --api-key "$KEY" \
  --spans "$SPANS" --concurrency 8 | grep -E "accepted|throughput|lag"
INGESTED=$(date +%s.%N)
echo "server CPU           $(( $(awk '{print $14+$15}' "/proc/$PID/stat") - C0 )) core-ticks while ingesting"
sleep 3 # two rounds of the queue after the settling delay
read -r q r d f a <<<"$(stats)"
if [ "$q" = 0 ] && [ "$r" = 0 ]; then
  kill $SAMPLER
  DB="$DIR/data/vigil.db"
  echo "spans stored         $(sqlite3 -readonly "$DB" 'select sum(span_count) from traces') in $(sqlite3 -readonly "$DB" 'select count(*) from traces') traces"
  echo "  judged at ingest   $(sqlite3 -readonly "$DB" "select count(*) from span_chunks where judged_by like '%,%,%'") of $(sqlite3 -readonly "$DB" 'select count(*) from span_chunks') chunks by all 3 evaluators"
  echo "scores written       $(sqlite3 -readonly "$DB" 'select count(*) from scores') rows (failing verdicts); passing ones stored with their spans in $(sqlite3 -readonly "$DB" 'select count(*) from span_chunks where passes is not null') chunks"
  echo "queue                queued $q, running $r, done $d (nothing read back)"
  exit 0
fi
while :; do read -r q r d f a <<<"$(stats)"; [ "$q" = 0 ] && [ "$r" = 0 ] && [ "$d" -gt 0 ] && break; sleep 0.5; done
DRAINED=$(date +%s.%N)
kill $SAMPLER
python3 - "$DIR/samples" "$START" "$INGESTED" "$DRAINED" "$d" <<'PY'
import sys
path, start, ingested, drained, done = sys.argv[1], *map(float, sys.argv[2:5]), int(sys.argv[5])
lags = [float(l.split()[5]) for l in open(path) if len(l.split()) == 6]
print(f"evaluation jobs      {done} (traces x 3 evaluators)")
print(f"queue lag            max {max(lags or [0]):.1f} s while ingesting (oldest runnable job), p50 {sorted(lags or [0])[len(lags)//2]:.1f} s")
print(f"drained              {drained - ingested:.1f} s after ingest ended; {drained - start:.1f} s in all")
print(f"evaluated            {done / (drained - start):.0f} jobs/s end to end")
PY
