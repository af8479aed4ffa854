#!/usr/bin/env bash
# Server time of every UI page, median of 5 requests each, against a running Vigil.
#   scripts/bench-ui.sh http://127.0.0.1:7070 vk_…
# Logs in with the key (cookie), picks a trace and a session from the API, then times each page with
# curl's time_total over loopback (that is server time plus a negligible transfer).
set -euo pipefail
BASE="${1:?usage: bench-ui.sh BASE_URL API_KEY}"
KEY="${2:?usage: bench-ui.sh BASE_URL API_KEY}"
JAR="$(mktemp)"; trap 'rm -f "$JAR"' EXIT
curl -fsS -o /dev/null -c "$JAR" --data-urlencode "key=$KEY" -d "next=/ui/traces" "$BASE/login"
json() { curl -fsS -H "x-vigil-api-key: $KEY" "$BASE$1"; }
TRACE="$(json '/api/v1/traces?limit=1' | python3 -c 'import sys,json; print(json.load(sys.stdin)["traces"][0]["trace_id"])')"
SESSION="$(json '/api/v1/sessions?limit=1' | python3 -c 'import sys,json,urllib.parse; print(urllib.parse.quote(json.load(sys.stdin)["sessions"][0]["session_id"]))')"
MODEL="$(json '/api/v1/traces?limit=1' | python3 -c 'import sys,json; print(json.load(sys.stdin)["traces"][0]["models"][0])')"
pages=(
  "/ui/traces"
  "/ui/traces?range=all"
  "/ui/traces?model=$MODEL"
  "/ui/traces?flags=silent_tool_failure"
  "/ui/traces?q=refund"
  "/ui/traces?sort=cost"
  "/ui/traces/$TRACE"
  "/ui/sessions"
  "/ui/sessions?range=all"
  "/ui/sessions/$SESSION"
  "/ui/dashboard"
  "/ui/dashboard?range=7d&split=agent"
  "/ui/models"
)
printf '%-48s %10s %10s\n' page "median ms" "max ms"
for p in "${pages[@]}"; do
  times="$(for _ in 1 2 3 4 5; do curl -fsS -o /dev/null -b "$JAR" -w '%{time_total}\n' "$BASE$p"; done | sort -n)"
  med="$(sed -n 3p <<<"$times")"; max="$(tail -n1 <<<"$times")"
  awk -v p="$p" -v a="$med" -v b="$max" 'BEGIN { printf "%-48s %10.1f %10.1f\n", p, a * 1000, b * 1000 }'
done
