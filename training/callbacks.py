"""Callbacks the CLI adds: JSON-lines output for `predict`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import BasePredictionWriter


class JsonLinesWriter(BasePredictionWriter):
    """Writes one JSON object per predicted utterance, in input order.

    Args:
        output_file: where `predict` writes (default `predictions.jsonl`).
    """

    def __init__(self, output_file: str = "predictions.jsonl") -> None:
        super().__init__(write_interval="epoch")
        self.output_file = output_file

    def write_on_epoch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, predictions: Any, batch_indices: Any
    ) -> None:
        path = Path(self.output_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            for batch in predictions:
                for record in batch:
                    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        print(f"predictions written to {path}")
