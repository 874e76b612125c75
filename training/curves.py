"""`python -m training report RUN_DIR [--out DIR]`: one PNG of a training run's curves, read from the
`metrics.csv` and `config.yaml` that the CLI's CSVLogger and LightningCLI write into the run folder.

Panels: training and validation loss per epoch; validation slot F1 (and intent accuracy when logged)
per epoch; the gradient norm before clipping per step (`train/grad_norm`, log scale) with the clipping
threshold. The best epoch (the checkpoint's monitor, `val/slot_f1` by default) is marked on each.
Under DDP only process 0 writes the folder, and its rows have the same columns, so the same code reads
both.
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FILE_NAME = "training_curves.png"


class RunError(Exception):
    """A run folder that cannot be drawn; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Run:
    """What the curves need from a run folder."""

    folder: Path
    per_epoch: dict[str, dict[int, float]]  # column -> epoch -> value
    per_step: dict[str, list[tuple[int, float]]]  # column -> (step, value) in order
    epoch_end_step: dict[int, int]  # epoch -> last step logged in it
    clip_value: float | None
    clip_algorithm: str
    monitor: str
    mode: str


EPOCH_COLUMNS = ("train/loss_epoch", "val/loss", "val/slot_f1", "val/intent_accuracy")
STEP_COLUMNS = ("train/loss_step", "train/grad_norm")


def find_run_folder(path: Path) -> Path:
    """`path` itself when it holds metrics.csv; else its newest `version_N` that does (a logger's
    `save_dir/name` folder)."""
    if not path.is_dir():
        raise RunError(f"{path}: no such folder")
    if (path / "metrics.csv").is_file():
        return path
    versions = [
        (int(match.group(1)), child)
        for child in path.iterdir()
        if (match := re.fullmatch(r"version_(\d+)", child.name)) and (child / "metrics.csv").is_file()
    ]
    if not versions:
        raise RunError(f"{path}: no metrics.csv here or in a version_N folder below (is it a CSVLogger run folder?)")
    return max(versions)[1]


def _number(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise RunError(f"{where}: not a number: {text!r}") from None


def read_run(path: Path) -> Run:
    folder = find_run_folder(path)
    metrics_path = folder / "metrics.csv"
    per_epoch: dict[str, dict[int, float]] = defaultdict(dict)
    per_step: dict[str, list[tuple[int, float]]] = defaultdict(list)
    epoch_end_step: dict[int, int] = {}
    with open(metrics_path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"epoch", "step"} - set(reader.fieldnames or ())
        if missing:
            raise RunError(f"{metrics_path}:1: no {' or '.join(sorted(missing))} column (not a CSVLogger metrics file)")
        for number, row in enumerate(reader, start=2):
            where = f"{metrics_path}:{number}"
            if not row["epoch"]:
                continue  # rows logged outside an epoch (e.g. by `test`) carry no epoch
            epoch, step = int(_number(row["epoch"], where)), int(_number(row["step"], where))
            epoch_end_step[epoch] = max(step, epoch_end_step.get(epoch, step))
            for column in EPOCH_COLUMNS:
                if row.get(column):
                    per_epoch[column][epoch] = _number(row[column], where)
            for column in STEP_COLUMNS:
                if row.get(column):
                    per_step[column].append((step, _number(row[column], where)))
    if not per_step and "train/loss_epoch" not in per_epoch:
        raise RunError(f"{metrics_path}: no training metrics (train/...): draw a folder that `fit` wrote")
    config = _read_config(folder / "config.yaml")
    trainer, checkpoint = config.get("trainer") or {}, config.get("checkpoint") or {}
    clip_value = trainer.get("gradient_clip_val")
    return Run(
        folder=folder,
        per_epoch=dict(per_epoch),
        per_step=dict(per_step),
        epoch_end_step=epoch_end_step,
        clip_value=float(clip_value) if clip_value else None,
        clip_algorithm=trainer.get("gradient_clip_algorithm") or "norm",
        monitor=checkpoint.get("monitor") or "val/slot_f1",
        mode=checkpoint.get("mode") or "max",
    )


def _read_config(path: Path) -> dict[str, Any]:
    """The config LightningCLI saved with the run; empty when there is none (the curves then draw
    no clipping threshold)."""
    if not path.is_file():
        return {}
    import yaml

    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise RunError(f"{path}: not valid YAML ({error})") from None
    return config if isinstance(config, dict) else {}


def best_epoch(run: Run) -> int | None:
    """The epoch the checkpoint callback kept as best (first one on ties, as it does)."""
    scores = run.per_epoch.get(run.monitor)
    if not scores:
        return None
    pick = max if run.mode == "max" else min
    target = pick(scores.values())
    return min(epoch for epoch, value in scores.items() if value == target)


def running_median(values: list[float], window: int) -> list[float]:
    """Median of each value and the `window - 1` before it (fewer at the start)."""
    import numpy as np

    array = np.asarray(values, dtype=float)
    return [float(np.median(array[max(0, i - window + 1) : i + 1])) for i in range(len(array))]


def plot_run(run: Run, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from training.report_plots import save_png

    best = best_epoch(run)
    figure = Figure(figsize=(8, 9), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    loss_axes, score_axes, norm_axes = figure.subplots(3, 1)
    figure.suptitle(f"Training curves of {run.folder.parent.name}/{run.folder.name}", fontsize=10)

    def per_epoch(axes, column: str, label: str, scale: float = 1.0, **style) -> None:
        values = run.per_epoch.get(column)
        if values:
            epochs = sorted(values)
            axes.plot(epochs, [scale * values[e] for e in epochs], marker="o", markersize=3, label=label, **style)

    per_epoch(loss_axes, "train/loss_epoch", "training loss (epoch mean)")
    per_epoch(loss_axes, "val/loss", "validation loss")
    loss_axes.set_ylabel("loss")
    per_epoch(score_axes, "val/slot_f1", "validation slot F1", scale=100)
    per_epoch(score_axes, "val/intent_accuracy", "validation intent accuracy", scale=100)
    score_axes.set_ylabel("%")
    for axes in (loss_axes, score_axes):
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    if best is not None:
        note = f"best epoch {best} ({run.monitor} {run.per_epoch[run.monitor][best]:.4g})"
        for axes in (loss_axes, score_axes):
            axes.axvline(best, color="green", linestyle=":", label=note if axes is score_axes else None)

    norms = run.per_step.get("train/grad_norm", [])
    if norms:
        steps, values = (list(column) for column in zip(*norms))
        window = max(1, len(values) // 100)
        raw_style = {"linewidth": 0.5, "color": "lightsteelblue"} if window > 1 else {"color": "tab:blue"}
        norm_axes.plot(steps, values, label="gradient norm before clipping", **raw_style)
        if window > 1:
            smooth = running_median(values, window)
            norm_axes.plot(steps, smooth, linewidth=1.2, color="tab:blue", label=f"median of the last {window} logged")
        if all(v > 0 and math.isfinite(v) for v in values):
            norm_axes.set_yscale("log")
    else:
        norm_axes.text(0.5, 0.5, "no train/grad_norm in metrics.csv", ha="center", transform=norm_axes.transAxes)
    if run.clip_value is not None and run.clip_algorithm == "norm":
        clipped = sum(value > run.clip_value for _, value in norms) / max(1, len(norms))
        label = f"clipping threshold {run.clip_value:g} ({100 * clipped:.0f}% of logged steps above)"
        norm_axes.axhline(run.clip_value, color="red", linestyle="--", label=label)
    if best is not None and best in run.epoch_end_step:
        norm_axes.axvline(run.epoch_end_step[best], color="green", linestyle=":", label=f"end of best epoch {best}")
    norm_axes.set_xlabel("step")
    norm_axes.set_ylabel("L2 norm of all gradients")
    for axes in (loss_axes, score_axes, norm_axes):
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(figure, path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training report",
        description="Draw a training run's curves (loss, validation scores, gradient norm) into one PNG.",
    )
    parser.add_argument("run_dir", type=Path, help="a run folder the CLI wrote (holding metrics.csv), or its parent")
    parser.add_argument("--out", type=Path, default=None, help=f"folder for {FILE_NAME} (default: the run folder)")
    args = parser.parse_args(argv)
    try:
        run = read_run(args.run_dir)
    except RunError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    written = plot_run(run, (args.out or run.folder) / FILE_NAME)
    print(f"training curves written to {written}")
    return 0
