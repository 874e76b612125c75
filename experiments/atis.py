"""A short ATIS training run for the experiments: the project's data module, tagger and loss in a plain
torch loop that records what the experiments plot (loss and gradient norm before clipping, per step)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from models.loss import slot_loss
from models.tagger import RecurrentTagger, TaggerConfig, build_tagger
from training.datamodule import SlotDataModule
from training.metrics import SpanF1

Clip = Literal["none", "value", "norm"]


@dataclass(frozen=True)
class TrainSettings:
    """One short run. The loss is the lecture's (slot cross-entropy summed over the words of a sentence,
    mean over sentences); the intent head is off so nothing else is in the gradient."""

    epochs: int = 3
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.1
    clip: Clip = "none"
    threshold: float = 5.0
    seed: int = 0


def load_data(data_dir: str | Path, train_limit: int | None, batch_size: int = 16) -> SlotDataModule:
    """The project's data module; `train_limit` keeps the first N training sentences (vocabulary too)."""
    return SlotDataModule(data_dir=str(data_dir), batch_size=batch_size, train_limit=train_limit)


def tagger_config(data: SlotDataModule, cell: str, **overrides: object) -> TaggerConfig:
    """A smaller tagger than the shipped configs (embedding 64, hidden 100, one bidirectional layer) so a
    run fits the experiments' time budget; `overrides` go straight into `TaggerConfig`."""
    values: dict[str, object] = {
        "vocab_size": len(data.vocabulary),
        "num_tags": len(data.slot_tags),
        "num_intents": len(data.intents),
        "cell": cell,
        "embedding_dim": 64,
        "hidden_size": 100,
        "dropout": 0.0,
        "intent_head": False,
    }
    values.update(overrides)
    return TaggerConfig(**values)


def make_tagger(data: SlotDataModule, cell: str, seed: int, **overrides: object) -> RecurrentTagger:
    torch.manual_seed(seed)
    return build_tagger(tagger_config(data, cell, **overrides))


def gradient_norm(parameters: list[nn.Parameter]) -> tuple[float, float]:
    """(total L2 norm, largest absolute entry) of the current gradients."""
    grads = [p.grad for p in parameters if p.grad is not None]
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    largest = max(float(g.abs().max()) for g in grads)
    return float(total), largest


@torch.no_grad()
def validation_f1(model: RecurrentTagger, data: SlotDataModule) -> float:
    """conlleval slot F1 (in %) on the validation split."""
    model.eval()
    metric = SpanF1()
    for batch in data.val_dataloader():
        tag_ids = model(batch["token_ids"], batch["mask"]).tag_logits.argmax(dim=-1).tolist()
        lengths = batch["mask"].sum(dim=1).tolist()
        predicted = [[data.slot_tags[i] for i in row[:n]] for row, n in zip(tag_ids, lengths)]
        metric.update(predicted, [list(ex.tags) for ex in batch["examples"]])
    model.train()
    return 100.0 * float(metric.compute()["f1"])


def train(model: RecurrentTagger, data: SlotDataModule, settings: TrainSettings) -> dict:
    """Train in place; returns per-step loss and gradient norms (before clipping) and per-epoch F1.

    A step whose loss or gradient is not finite is not applied and ends the run (as the project's
    trainer stops on a non-finite loss); the F1 is then that of the last finite weights.
    """
    torch.manual_seed(settings.seed)
    parameters = [p for p in model.parameters() if p.requires_grad]
    if settings.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(parameters, lr=settings.lr)
    else:
        optimizer = torch.optim.Adam(parameters, lr=settings.lr)
    history: dict = {
        "loss": [],
        "grad_norm": [],
        "grad_max": [],
        "clipped": [],
        "epoch_val_f1": [],
        "diverged_at_step": None,
    }
    started = time.perf_counter()
    model.train()
    for _ in range(settings.epochs):
        for batch in data.train_dataloader():
            optimizer.zero_grad(set_to_none=True)
            loss = slot_loss(model(batch["token_ids"], batch["mask"]).tag_logits, batch["tag_ids"])
            loss.backward()
            norm, largest = gradient_norm(parameters)
            history["loss"].append(loss.item())
            history["grad_norm"].append(norm)
            history["grad_max"].append(largest)
            if not (math.isfinite(loss.item()) and math.isfinite(norm)):
                history["diverged_at_step"] = len(history["loss"]) - 1
                break
            if settings.clip == "value":
                torch.nn.utils.clip_grad_value_(parameters, settings.threshold)
                history["clipped"].append(largest > settings.threshold)
            elif settings.clip == "norm":
                torch.nn.utils.clip_grad_norm_(parameters, settings.threshold)
                history["clipped"].append(norm > settings.threshold)
            optimizer.step()
        if history["diverged_at_step"] is not None:
            break
        history["epoch_val_f1"].append(validation_f1(model, data))
    history["final_val_f1"] = validation_f1(model, data)
    history["train_seconds"] = time.perf_counter() - started
    history["steps"] = len(history["loss"])
    history["clipped_fraction"] = sum(history["clipped"]) / len(history["clipped"]) if history["clipped"] else 0.0
    del history["clipped"]
    return history
