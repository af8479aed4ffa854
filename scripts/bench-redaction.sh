#!/usr/bin/env bash
# What redaction adds to the cost of ingest, end to end: the same `vigil bench ingest` load against a
# fresh server with redaction on (the default) and off, alternated, server pinned to CPU 1 and the
# load generator to CPU 0. Reports spans/s and the server's CPU time per span (utime + stime from
# /proc), which is steadier than throughput on a noisy machine.
#   scripts/bench-redaction.sh [SPANS] [ROUNDS]     (release build: cargo build --release)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/target/release/vigil"
SPANS="${1:-300000}"
ROUNDS="${2:-2}"
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
TICK="$(getconf CLK_TCK)"
source "$ROOT/scripts/vigil-bench-server.sh"

run() { # $1 = true|false (redaction enabled)
  local dir; dir="$(mktemp -d)"
  VIGIL_REDACTION__ENABLED="$1" SERVER_CPUS=1 start_vigil "$dir"
  local pid="$PID" key="$KEY" port_api="$API_PORT" port_otlp="$OTLP_PORT"
  local before; before="$(awk '{print $14 + $15}' /proc/$pid/stat)"
  local out; out="$(taskset -c 0 "$BIN" bench ingest --target "http://127.0.0.1:$port_otlp" --api "http://127.0.0.1:$port_api" \
    --api-key "$key" --spans "$SPANS" --concurrency 8)"
  sleep 1 # let the writer finish what it acknowledged
  local after; after="$(awk '{print $14 + $15}' /proc/$pid/stat)"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local rate; rate="$(echo "$out" | grep -o '[0-9]* spans/s' | head -1)"
  local cpu_us; cpu_us="$(python3 -c "print(f'{($after-$before)/$TICK*1e6/$SPANS:.1f}')")"
  printf 'redaction=%-5s  %-16s  server CPU %s µs/span\n' "$1" "$rate" "$cpu_us"
  rm -rf "$dir"
}

for _ in $(seq "$ROUNDS"); do run true; run false; done
