#!/usr/bin/env bash
# Sustained OTLP ingest: a fresh Vigil server (both cores, fresh data dir, default durability) and
# `vigil bench ingest` on CPU 0 sending SPANS spans from 8 exporters. Prints the generator's report,
# how busy the machine was and the server's share of it.
#   scripts/bench-ingest.sh [SPANS] [ROUNDS]     (release build: cargo build --release)
# Options, as environment variables: BIN= another server build, GEN= another generator build (A/B);
# SERVER_CPUS=1 pins the server to CPU 1 (steadier A/B); CONCURRENCY= exporters (8); THREADS=1
# prints CPU time and time waiting for a CPU per server thread; WRITER_NICE= renices the SQLite
# writer thread; PERF=1 records the server with perf (PERF_ARGS=, default -g) into ./perf-ingest.data.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${BIN:-$ROOT/target/release/vigil}"
SPANS="${1:-400000}"
ROUNDS="${2:-1}"
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
source "$ROOT/scripts/vigil-bench-server.sh"
for round in $(seq "$ROUNDS"); do
  DIR="$(mktemp -d)"
  trap 'kill $PID 2>/dev/null || true; rm -rf "$DIR"' EXIT
  start_vigil "$DIR"
  if [ -n "${WRITER_NICE:-}" ]; then
    for t in /proc/"$PID"/task/*; do
      [ "$(cat "$t/comm")" = vigil-sqlite-wr ] && renice -n "$WRITER_NICE" -p "$(basename "$t")" >/dev/null
    done
  fi
  if [ "${PERF:-0}" = 1 ]; then
    perf record ${PERF_ARGS:--g} -p "$PID" -o perf-ingest.data 2>/dev/null &
    PERF_PID=$!
  fi
  echo "round $round: $BIN, $SPANS spans"
  read -r _ u0 n0 s0 i0 w0 _ < /proc/stat
  c0=$(awk '{print $14+$15}' "/proc/$PID/stat")
  taskset -c 0 "${GEN:-$BIN}" bench ingest --target "http://127.0.0.1:$OTLP_PORT" --api "http://127.0.0.1:$API_PORT" \
    --data-dir "$DIR/data" --api-key "$KEY" --spans "$SPANS" --concurrency "${CONCURRENCY:-8}" --server-pid "$PID"
  read -r _ u1 n1 s1 i1 w1 _ < /proc/stat
  c1=$(awk '{print $14+$15}' "/proc/$PID/stat")
  busy=$(( (u1+n1+s1) - (u0+n0+s0) )); idle=$(( (i1+w1) - (i0+w0) ))
  echo "machine busy          $(( 100 * busy / (busy + idle) )) % of both cores; server used $(( c1 - c0 )) of $(( busy + idle )) core-ticks"
  if [ "${THREADS:-0}" = 1 ]; then
    # Per thread name: time on a CPU and time runnable but waiting for one (schedstat, ns).
    for t in /proc/"$PID"/task/*; do
      echo "$(cat "$t/comm") $(cat "$t/schedstat")"
    done | awk '{run[$1]+=$2; wait[$1]+=$3} END {for (n in run) printf "  thread %-18s on CPU %6.2f s, waiting for a CPU %6.2f s\n", n, run[n]/1e9, wait[n]/1e9}' | sort -k5 -nr
    # What the server wrote (mostly the WAL, and the checkpoints copying it into the database).
    awk '/^wchar/ {printf "  server wrote          %.0f MiB (write calls)\n", $2/1048576}' "/proc/$PID/io"
    for t in /proc/"$PID"/task/*; do
      echo "$(cat "$t/comm") $(awk '/^wchar/ {print $2}' "$t/io")"
    done | awk '{w[$1]+=$2} END {for (n in w) if (w[n] > 0) printf "    by %-18s %8.0f MiB\n", n, w[n]/1048576}' | sort -k3 -nr
  fi
  if [ "${PERF:-0}" = 1 ]; then kill -INT "$PERF_PID"; wait "$PERF_PID" || true; fi
  kill "$PID"; wait "$PID" 2>/dev/null || true
  rm -rf "$DIR"
done
