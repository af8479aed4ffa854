#!/usr/bin/env bash
# Installs (idempotently) the headless browser the UI tests drive: Debian's `chromium` and
# `chromium-driver`. Uses sudo when not root. The Python side (selenium) is in scripts/python-env.sh.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  echo "browser: $(chromium --version 2>/dev/null | head -n1) (installed)"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "browser-env.sh: need root or sudo to apt-get install chromium chromium-driver" >&2; exit 1; }
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
echo "browser: $(chromium --version 2>/dev/null | head -n1) (installed now)"
