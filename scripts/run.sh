#!/usr/bin/env bash
# The main job: set up, obtain ATIS, train the default model unless its checkpoint exists, print its
# test scores, and serve it on http://127.0.0.1:8000 (Ctrl-C stops the server).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
CONFIG=${SLOTFILL_CONFIG:-configs/atis-best.yaml}
CHECKPOINT=${SLOTFILL_CHECKPOINT:-checkpoints/atis-best/best.ckpt}
if [ ! -f "$CHECKPOINT" ]; then
  .venv/bin/python -m training fit --config "$CONFIG"
  .venv/bin/python -m training test --config "$CONFIG" --ckpt_path "$CHECKPOINT"
fi
exec .venv/bin/python -m serving --checkpoint "$CHECKPOINT" --host 127.0.0.1 --port "${SLOTFILL_PORT:-8000}"
