"""Clipping on real data (lecture claim 5): the Elman tagger on ATIS trained with plain SGD without
clipping, with clip-by-value at 15 (the lecture's threshold) and with clip-by-norm at 5 (the shipped
configs'): training loss, gradient norm before clipping per step, validation F1."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import torch

from experiments.atis import TrainSettings, load_data, make_tagger, train
from experiments.common import (
    atis_parser,
    run_info,
    save_figure,
    start,
    thin_series,
    window_max,
    write_json,
)

SETTINGS = (("none", None), ("value", "value_threshold"), ("norm", "norm_threshold"))


def smooth(values: list[float], window: int) -> torch.Tensor:
    """Running mean over `window` steps (for readable curves; the JSON keeps the raw values)."""
    series = torch.tensor(values, dtype=torch.float64)
    window = max(1, min(window, len(series)))
    return torch.nn.functional.avg_pool1d(series.view(1, 1, -1), window, stride=1).view(-1)


def run(
    out: Path,
    data_dir: Path,
    train_limit: int | None,
    epochs: int,
    lrs: list[float],
    value_threshold: float,
    norm_threshold: float,
    seed: int,
) -> dict:
    data = load_data(data_dir, train_limit)
    thresholds = {"value": value_threshold, "norm": norm_threshold}
    runs = []
    for lr in lrs:
        for clip, _ in SETTINGS:
            model = make_tagger(data, "elman", seed)
            settings = TrainSettings(
                epochs=epochs, optimizer="sgd", lr=lr, clip=clip, threshold=thresholds.get(clip, 0.0), seed=seed
            )
            history = train(model, data, settings)
            runs.append({"lr": lr, "clip": clip, "threshold": thresholds.get(clip), **history})
            print(
                f"lr {lr:g} clip {clip:<5}: val F1 {history['final_val_f1']:.2f} (per epoch "
                f"{', '.join(f'{f:.1f}' for f in history['epoch_val_f1'])}), grad norm median "
                f"{torch.tensor(history['grad_norm']).median():.3g} max {max(history['grad_norm']):.3g}, "
                f"clipped {100 * history['clipped_fraction']:.0f}% of steps, {history['train_seconds']:.0f} s",
                flush=True,
            )

    figure, axes = plt.subplots(len(lrs), 3, figsize=(15, 3.6 * len(lrs)), squeeze=False)
    labels = {
        "none": "no clipping",
        "value": f"clip value {value_threshold:g}",
        "norm": f"clip norm {norm_threshold:g}",
    }
    colours = {"none": "tab:red", "value": "tab:orange", "norm": "tab:blue"}
    for row, lr in enumerate(lrs):
        ax_loss, ax_norm, ax_f1 = axes[row]
        for item in (r for r in runs if r["lr"] == lr):
            window = max(1, len(item["loss"]) // 100)
            ax_loss.plot(smooth(item["loss"], window), color=colours[item["clip"]], label=labels[item["clip"]], lw=1)
            ax_norm.plot(
                *window_max(item["grad_norm"]),
                color=colours[item["clip"]],
                lw=0.8,
                alpha=0.8,
                label=labels[item["clip"]],
            )
            ax_f1.plot(
                range(1, len(item["epoch_val_f1"]) + 1),
                item["epoch_val_f1"],
                "o-",
                color=colours[item["clip"]],
                label=f"{labels[item['clip']]}: {item['final_val_f1']:.1f}",
            )
        ax_loss.set(
            yscale="log",
            xlabel="step",
            ylabel=f"training loss (running mean of {window})",
            title=f"SGD lr {lr:g}: loss",
        )
        ax_norm.set(
            yscale="log", xlabel="step", ylabel="gradient norm before clipping", title=f"SGD lr {lr:g}: gradient norm"
        )
        ax_norm.axhline(norm_threshold, color="tab:blue", ls=":", lw=1)
        ax_f1.set(xlabel="epoch", ylabel="validation slot F1 (%)", title=f"SGD lr {lr:g}: validation F1")
        for ax in (ax_loss, ax_f1):
            ax.legend(fontsize=8)
            ax.grid(True, alpha=0.3)
    subset = f"first {train_limit} training sentences" if train_limit else "all 4,478 training sentences"
    figure.suptitle(f"Elman BiRNN tagger on ATIS ({subset}, {epochs} epochs, batch 16, plain SGD, seed {seed})")
    figure.tight_layout()
    save_figure(figure, out / "clipping.png", dpi=90)

    thin_series(runs)
    return {"train_sentences": len(data.train_examples), "epochs": epochs, "runs": runs}


def main(argv: list[str] | None = None) -> dict:
    parser = atis_parser(__doc__, epochs=8)
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.1, 0.3], help="SGD learning rates")
    parser.add_argument("--value-threshold", type=float, default=15.0)
    parser.add_argument("--norm-threshold", type=float, default=5.0)
    args = parser.parse_args(argv)
    if args.tiny:
        args.train_limit, args.epochs, args.lrs = args.train_limit or 64, 1, args.lrs[:1]
    started = start(args)
    result = run(
        args.out,
        args.data_dir,
        args.train_limit,
        args.epochs,
        args.lrs,
        args.value_threshold,
        args.norm_threshold,
        args.seed,
    )
    result["run"] = run_info("experiments.clipping", args, started)
    write_json(args.out / "clipping.json", result)
    return result


if __name__ == "__main__":
    main()
