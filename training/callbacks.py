"""Callbacks: JSON-lines output for `predict` (the CLI adds it), and an exponential moving average of
the weights (on in a config's `trainer.callbacks`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, WeightAveraging

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


def bias_corrected_ema(decay: float) -> Callable[[list[torch.Tensor], list[torch.Tensor], Any], None]:
    """`multi_avg_fn` for `AveragedModel`: after t updates the average is

        sum_s (1 - decay) decay^(t-s) w_s / (1 - decay^t),   s = 1..t

    i.e. the usual EMA's weights, rescaled to sum to one (Adam's bias correction). The plain EMA
    starts from w_1 and keeps decay^(t-1) of it: with decay 0.999 that is still 97 % after 30 steps,
    so a short run would validate and save nearly its initial weights. After a few thousand steps the
    two agree (decay^t -> 0)."""

    @torch.no_grad()
    def update(averages: list[torch.Tensor], currents: list[torch.Tensor], num_averaged: Any) -> None:
        n = int(num_averaged)  # updates so far; AveragedModel copies w_1 itself at the first one
        keep = decay * (1.0 - decay**n) / (1.0 - decay ** (n + 1))
        if torch.is_floating_point(averages[0]):
            torch._foreach_lerp_(averages, currents, 1.0 - keep)
        else:  # integer buffers, if any: the nearest value
            for average, current in zip(averages, currents, strict=True):
                average.copy_(torch.round(average * keep + current * (1.0 - keep)).to(average.dtype))

    return update


class ExponentialWeightAveraging(WeightAveraging):
    """Keeps an exponential moving average of the weights, updated after every optimiser step;
    validation, checkpoints (and so the served model) use the average.

    Adam with a constant learning rate keeps the weights moving around a good region; the average
    sits nearer its middle, so it usually scores a little higher and varies less between epochs.
    The average is bias-corrected (`bias_corrected_ema`), so short runs average their own steps
    instead of keeping most of the first one.

    Args:
        decay: weight of the old average at each step (0.999: about the last 1,000 steps).
    """

    def __init__(self, decay: float = 0.999) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        super().__init__(multi_avg_fn=bias_corrected_ema(decay))
        self.decay = decay
