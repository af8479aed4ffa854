# Sourced by the benchmark scripts. `start_vigil DIR [GLOBAL-OPTION...]` starts a fresh Vigil server
# ($BIN) with its data in DIR/data, on random local ports, pinned to $SERVER_CPUS when set, and waits
# until it is ready. Sets PID, KEY (the project's API key), API_PORT and OTLP_PORT (OTLP/HTTP).
start_vigil() {
  local dir="$1"
  shift
  API_PORT=$((17000 + RANDOM % 1000))
  OTLP_PORT=$((19000 + RANDOM % 1000))
  local pin=()
  [ -n "${SERVER_CPUS:-}" ] && pin=(taskset -c "$SERVER_CPUS")
  VIGIL_LOG=${VIGIL_LOG:-warn} "${pin[@]}" "$BIN" --data-dir "$dir/data" "$@" serve --api-addr "127.0.0.1:$API_PORT" \
    --otlp-http-addr "127.0.0.1:$OTLP_PORT" --otlp-grpc-addr 127.0.0.1:0 2>"$dir/log" &
  PID=$!
  for _ in $(seq 100); do grep -q ready "$dir/log" 2>/dev/null && break; sleep 0.1; done
  KEY="$(grep -o 'vk_[A-Za-z0-9_]*' "$dir/log" | head -1)"
}
