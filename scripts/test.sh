#!/usr/bin/env bash
# Set up (see setup.sh), lint, and run the whole test suite. The tests drive system programs that are
# installed here when missing: headless Chromium and its driver (the playground's browser test) and
# Debian's docker-compose (the compose-file checks).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
packages=(chromium chromium-driver docker-compose)
if ! dpkg -s "${packages[@]}" >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get install -y -q "${packages[@]}" >/dev/null 2>&1 \
    || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q "${packages[@]}" >/dev/null; }
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest "$@"
