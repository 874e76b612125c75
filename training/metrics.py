"""torchmetrics for slot filling: conlleval span F1, intent accuracy, sentence accuracy.

States are counters summed across processes, so the figures are exact under DDP.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric

from models.spans import count_span_matches


class SpanF1(Metric):
    """Micro-averaged chunk precision/recall/F1 exactly as conlleval computes them."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for name in ("correct", "predicted", "gold"):
            self.add_state(name, default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, predicted: Sequence[Sequence[str]], gold: Sequence[Sequence[str]]) -> None:
        if len(predicted) != len(gold):
            raise ValueError(f"{len(predicted)} predicted sentences for {len(gold)} gold ones")
        totals = [0, 0, 0]
        for predicted_tags, gold_tags in zip(predicted, gold):
            if len(predicted_tags) != len(gold_tags):
                raise ValueError(f"{len(predicted_tags)} predicted tags for {len(gold_tags)} gold tags")
            for i, count in enumerate(count_span_matches(predicted_tags, gold_tags)):
                totals[i] += count
        self.correct += totals[0]
        self.predicted += totals[1]
        self.gold += totals[2]

    def compute(self) -> dict[str, torch.Tensor]:
        # in float64: long / long gives float32, which is off from conlleval's figures by ~1e-8
        correct, predicted, gold = self.correct.double(), self.predicted.double(), self.gold.double()
        precision = correct / predicted.clamp(min=1)
        recall = correct / gold.clamp(min=1)
        f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
        return {"precision": precision, "recall": recall, "f1": f1}


class Accuracy(Metric):
    """Fraction of items judged right; `update` takes a bool tensor, one entry per item."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("right", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, is_right: torch.Tensor) -> None:
        self.right += int(is_right.sum())
        self.total += is_right.numel()

    def compute(self) -> torch.Tensor:
        return self.right.double() / self.total.double().clamp(min=1)
