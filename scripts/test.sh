#!/usr/bin/env bash
# Runs every test: formatting, lints, unit tests, the store conformance suite and the end-to-end
# tests (real server, real OpenTelemetry-instrumented Python clients, the UI in headless Chromium).
# Installs what it needs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

[ -d ../shared/fixtures/otlp ] || { echo "test.sh: ../shared (fixtures and tools) must sit beside the repository" >&2; exit 1; }

# Python clients for the real-client tests: official SDKs + OpenTelemetry instrumentations from PyPI.
scripts/python-env.sh
# Headless Chromium for the UI tests (Debian packages).
scripts/browser-env.sh

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line over every test binary of the workspace.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "all tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
