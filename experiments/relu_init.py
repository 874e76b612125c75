"""ReLU vs tanh vs identity init (lecture claims 3 and 8): on ATIS, a ReLU RNN with ordinary random
init, the tanh (Elman) RNN and the IRNN (ReLU, identity recurrence; Le et al. 2015), under plain SGD
without clipping and under the project's recipe (Adam, clip-norm 5)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import torch
from torch import nn

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
from models.tagger import RecurrentTagger

# name -> (cell in models.tagger.CELLS, re-initialise the recurrent layers with torch's default)
VARIANTS = {"relu": ("irnn", True), "tanh": ("elman", False), "irnn": ("irnn", False)}
RECIPES = {
    "sgd": TrainSettings(optimizer="sgd", lr=0.1, clip="none"),
    "adam_clip": TrainSettings(optimizer="adam", lr=1e-3, clip="norm", threshold=5.0),
}


def make_variant(data, name: str, seed: int) -> RecurrentTagger:
    """`relu`: the IRNN's ReLU `nn.RNN` put back to torch's ordinary init, U(-1/√H, 1/√H) for every
    weight and bias, i.e. a ReLU RNN with naive random init."""
    cell, naive_init = VARIANTS[name]
    model = make_tagger(data, cell, seed)
    if naive_init:
        for module in model.encoder.modules():
            if isinstance(module, nn.RNN):
                module.reset_parameters()
    return model


def run(out: Path, data_dir: Path, train_limit: int | None, epochs: int, recipes: list[str], seed: int) -> dict:
    data = load_data(data_dir, train_limit)
    runs = []
    for recipe in recipes:
        for name in VARIANTS:
            base = RECIPES[recipe]
            settings = TrainSettings(
                epochs=epochs, optimizer=base.optimizer, lr=base.lr, clip=base.clip, threshold=base.threshold, seed=seed
            )
            history = train(make_variant(data, name, seed), data, settings)
            runs.append({"recipe": recipe, "variant": name, **vars(settings), **history})
            print(
                f"{recipe:<9} {name:<5}: val F1 {history['final_val_f1']:.2f} (per epoch "
                f"{', '.join(f'{f:.1f}' for f in history['epoch_val_f1'])}), diverged at step "
                f"{history['diverged_at_step']}, grad norm median {torch.tensor(history['grad_norm']).median():.3g} "
                f"max {max(history['grad_norm']):.3g}, {history['train_seconds']:.0f} s",
                flush=True,
            )

    colours = {"relu": "tab:red", "tanh": "tab:blue", "irnn": "tab:green"}
    labels = {"relu": "ReLU, random init", "tanh": "tanh (Elman)", "irnn": "IRNN (ReLU, identity init)"}
    titles = {"sgd": "SGD lr 0.1, no clipping", "adam_clip": "Adam lr 1e-3, clip norm 5"}
    figure, axes = plt.subplots(len(recipes), 2, figsize=(12, 3.8 * len(recipes)), squeeze=False)
    for row, recipe in enumerate(recipes):
        ax_f1, ax_norm = axes[row]
        for item in (r for r in runs if r["recipe"] == recipe):
            colour, label = colours[item["variant"]], labels[item["variant"]]
            diverged = "" if item["diverged_at_step"] is None else f", diverged at step {item['diverged_at_step']}"
            ax_f1.plot(
                range(1, len(item["epoch_val_f1"]) + 1),
                item["epoch_val_f1"],
                "o-",
                color=colour,
                label=f"{label}: {item['final_val_f1']:.1f}{diverged}",
            )
            ax_norm.plot(*window_max(item["grad_norm"]), color=colour, lw=0.8, alpha=0.8, label=label)
        ax_f1.set(xlabel="epoch", ylabel="validation slot F1 (%)", title=f"{titles[recipe]}: validation F1")
        ax_norm.set(
            yscale="log",
            xlabel="step",
            ylabel="gradient norm (before clipping)",
            title=f"{titles[recipe]}: gradient norm",
        )
        ax_f1.legend(fontsize=8)
        ax_norm.legend(fontsize=8)
        ax_f1.grid(True, alpha=0.3)
    subset = f"first {train_limit} training sentences" if train_limit else "all 4,478 training sentences"
    figure.suptitle(f"ReLU vs tanh vs identity init, BiRNN tagger on ATIS ({subset}, {epochs} epochs, seed {seed})")
    figure.tight_layout()
    save_figure(figure, out / "relu_init.png")

    thin_series(runs)
    return {"train_sentences": len(data.train_examples), "epochs": epochs, "runs": runs}


def main(argv: list[str] | None = None) -> dict:
    parser = atis_parser(__doc__, epochs=8)
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    args = parser.parse_args(argv)
    if args.tiny:
        args.train_limit, args.epochs = args.train_limit or 64, 1
    started = start(args)
    result = run(args.out, args.data_dir, args.train_limit, args.epochs, args.recipes, args.seed)
    result["run"] = run_info("experiments.relu_init", args, started)
    write_json(args.out / "relu_init.json", result)
    return result


if __name__ == "__main__":
    main()
