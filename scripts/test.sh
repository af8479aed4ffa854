#!/usr/bin/env bash
# Runs every test: formatting, lints, unit tests, the store conformance suite and the end-to-end
# tests (real server, real OpenTelemetry-instrumented Python clients). Installs what it needs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

[ -d ../shared/fixtures/otlp ] || { echo "test.sh: ../shared (fixtures and tools) must sit beside the repository" >&2; exit 1; }

# Python clients for the real-client tests: official SDKs + OpenTelemetry instrumentations from PyPI.
scripts/python-env.sh

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
