"""The `predict` callback: JSON-lines output (the CLI adds it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import BasePredictionWriter

from training.distributed import dataset_size, gather_in_order


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
        records = [record for batch in predictions for record in batch]
        # Under DDP each process tagged a share of the file: gather them, in order, and write once.
        records = gather_in_order(records, dataset_size(trainer.predict_dataloaders))
        if not trainer.is_global_zero:
            return
        path = Path(self.output_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        print(f"predictions written to {path}")
