#!/usr/bin/env bash
# Creates (idempotently) the Python virtualenv used by the OTLP capture tools and acceptance checks.
#   venv: ${VIGIL_VENV:-<repo root>/.venv}
# Packages: those named in the header of shared/tools/capture_agent.py, plus requests (and httpx, see
# below). Nothing is pinned; the resolved `pip freeze` is written to the stamp file inside the venv.
# A second run is a no-op when the stamp's hash matches the package list (and the Python version).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VIGIL_VENV:-$ROOT/.venv}"
STAMP="$VENV/.vigil-packages.stamp"
PYTHON="${PYTHON:-python3}"

PACKAGES=(
  openai
  anthropic
  opentelemetry-sdk
  opentelemetry-exporter-otlp-proto-http
  opentelemetry-exporter-otlp-proto-grpc
  opentelemetry-instrumentation-openai-v2
  openinference-instrumentation-openai
  openinference-instrumentation-anthropic
  requests
  # Drives the system's Chromium (Debian chromium + chromium-driver) in the UI tests.
  selenium
  # opentelemetry-instrumentation-openai-v2 imports httpx without declaring it; openai >= 3 depends on
  # httpx2 instead, so nothing else pulls httpx in and `otel-openai` fails with "No module named 'httpx'".
  httpx
)

# Upper bounds (constraints only, not pins) for known-broken combinations of upstream releases.
CONSTRAINTS=(
  # opentelemetry-instrumentation-openai-v2 2.4b0 imports opentelemetry.util.genai.instruments, which
  # util-genai 1.2b0 renamed to _instruments, yet it only requires util-genai>=0.4b0.dev.
  'opentelemetry-util-genai<1.2b0'
)

die() { echo "python-env.sh: error: $*" >&2; exit 1; }
trap 'rc=$?; if [ "$rc" -ne 0 ]; then echo "python-env.sh: FAILED (exit $rc) while setting up $VENV" >&2; fi' EXIT

command -v "$PYTHON" >/dev/null 2>&1 || die "'$PYTHON' not found; install python3 (Debian: apt-get install python3 python3-venv)"
PYVER="$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')" \
  || die "'$PYTHON' does not run"
WANT="$(printf '%s\n' "python=$PYVER" "${PACKAGES[@]}" -- "${CONSTRAINTS[@]}" | sha256sum | cut -d' ' -f1)"

if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(head -n1 "$STAMP")" = "$WANT" ]; then
  echo "python venv: $VENV (up to date)"
  exit 0
fi

# Recreate from scratch if the interpreter inside is missing or broken (e.g. venv copied or python upgraded).
if [ -d "$VENV" ] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
  echo "python-env.sh: existing venv at $VENV is broken; recreating" >&2
  rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV" \
    || die "'$PYTHON -m venv $VENV' failed (Debian: apt-get install python3-venv)"
fi

rm -f "$STAMP"
printf '%s\n' "${CONSTRAINTS[@]}" > "$VENV/.vigil-constraints.txt"
echo "python-env.sh: installing into $VENV: ${PACKAGES[*]}" >&2
"$VENV/bin/python" -m pip install --disable-pip-version-check --no-input --upgrade \
    -c "$VENV/.vigil-constraints.txt" "${PACKAGES[@]}" >&2 \
  || die "pip install failed (see pip output above); is PyPI reachable?"
"$VENV/bin/python" -m pip check --disable-pip-version-check >&2 \
  || die "pip check found broken requirements in $VENV"

FREEZE="$("$VENV/bin/python" -m pip freeze --disable-pip-version-check)" || die "pip freeze failed"
{ echo "$WANT"; echo "# python $PYVER; resolved packages:"; echo "$FREEZE"; } > "$STAMP.tmp"
mv "$STAMP.tmp" "$STAMP"
echo "python-env.sh: resolved packages (also in $STAMP):" >&2
echo "$FREEZE" | sed 's/^/  /' >&2
echo "python venv: $VENV"
