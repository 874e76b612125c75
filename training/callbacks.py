"""Callbacks: JSON-lines output for `predict` (the CLI adds it), and an exponential moving average of
the weights (on in a config's `trainer.callbacks`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import BasePredictionWriter, WeightAveraging
from torch.optim.swa_utils import get_ema_multi_avg_fn


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


class ExponentialWeightAveraging(WeightAveraging):
    """Keeps an exponential moving average of the weights, updated after every optimiser step;
    validation, checkpoints (and so the served model) use the average.

    Adam with a constant learning rate keeps the weights moving around a good region; the average
    sits nearer its middle, so it usually scores a little higher and varies less between epochs.

    Args:
        decay: weight of the old average at each step (0.999: about the last 1,000 steps).
    """

    def __init__(self, decay: float = 0.999) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        super().__init__(multi_avg_fn=get_ema_multi_avg_fn(decay))
        self.decay = decay
