#!/usr/bin/env bash
# The main job: set up, obtain ATIS, train the default BiLSTM unless its checkpoint exists,
# and print its test scores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
CONFIG=${SLOTFILL_CONFIG:-configs/atis-lstm.yaml}
CHECKPOINT=${SLOTFILL_CHECKPOINT:-checkpoints/atis-lstm/best.ckpt}
if [ ! -f "$CHECKPOINT" ]; then
  .venv/bin/python -m training fit --config "$CONFIG"
fi
.venv/bin/python -m training test --config "$CONFIG" --ckpt_path "$CHECKPOINT"
