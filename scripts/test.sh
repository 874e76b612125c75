#!/usr/bin/env bash
# Set up (see setup.sh), lint, and run the whole test suite. The deployment test validates
# docker-compose.yml with Debian's docker-compose (no Docker engine needed); it is installed here
# when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! command -v docker-compose >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get install -y -q docker-compose >/dev/null 2>&1 \
    || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q docker-compose >/dev/null; }
fi
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
