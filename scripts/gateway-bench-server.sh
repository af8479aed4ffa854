# Sourced by the gateway benchmarks: starts the compiled mock upstream of ../shared/bench (fastmock,
# CPU 0) and a fresh Vigil server (both cores) whose gateway proxies to it, every call traced.
# Sets ROOT, BIN (overridable: `BIN=` picks another build), BENCH, OHA, DIR (scratch, removed on exit),
# PORT (the gateway's), MOCK_PORT, KEY (the project's API key) and PID (the server's).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${BIN:-$ROOT/target/release/vigil}"
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
source "$ROOT/scripts/vigil-bench-server.sh"
start_vigil "$DIR" --config "$DIR/vigil.toml"
PORT="$API_PORT"
