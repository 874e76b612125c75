"""Vanishing gradients (lecture claims 4, 6, 8): ‖∂L/∂h_t‖ for a loss at the last step against the
distance T - t, for every cell in `models.tagger.CELLS`, at initialisation and after training on the
adding problem (long synthetic sequences)."""

from __future__ import annotations

import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from torch import nn

from experiments.common import base_parser, run_info, save_figure, start, write_json
from experiments.stepping import gradients_across_time
from models.tagger import CELLS, _output_size, init_forget_bias

REPORT_DISTANCES = (0, 1, 5, 10, 25, 50, 99, 199)


def adding_problem(batch: int, steps: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The adding problem (Hochreiter & Schmidhuber 1997; used for the IRNN by Le et al. 2015).

    Input (B, T, 2): a random value in [0, 1) and a marker that is 1 at two steps, one in each half;
    the target (B,) is the sum of the two marked values, read at the last step. Predicting 1 always
    gives a mean squared error of 1/6 ≈ 0.167.
    """
    values = torch.rand(batch, steps, generator=generator)
    first = torch.randint(0, steps // 2, (batch,), generator=generator)
    second = torch.randint(steps // 2, steps, (batch,), generator=generator)
    markers = torch.zeros(batch, steps)
    markers[torch.arange(batch), first] = 1.0
    markers[torch.arange(batch), second] = 1.0
    return torch.stack([values, markers], dim=-1), (values * markers).sum(dim=1)


def make_layer(cell: str, hidden_size: int) -> nn.Module:
    """The cell as the tagger builds it: `CELLS[cell]`, and for the LSTM the tagger's default forget-gate
    bias of 1 (models/tagger.py)."""
    layer = CELLS[cell](2, hidden_size)
    if cell == "lstm":
        init_forget_bias(layer, 1.0)
    return layer


def measure(
    layer: nn.Module, readout: nn.Linear, inputs: torch.Tensor, targets: torch.Tensor
) -> dict[str, torch.Tensor]:
    def squared_error(last: torch.Tensor) -> torch.Tensor:
        return (readout(last).squeeze(-1) - targets) ** 2

    return gradients_across_time(layer, inputs, squared_error)


def train_cell(
    layer: nn.Module,
    readout: nn.Linear,
    steps: int,
    train_steps: int,
    batch: int,
    lr: float,
    generator: torch.Generator,
) -> list[float]:
    """Adam with gradient-norm clipping at 1 on fresh adding-problem batches; returns the losses."""
    parameters = [*layer.parameters(), *readout.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=lr)
    losses = []
    for _ in range(train_steps):
        inputs, targets = adding_problem(batch, steps, generator)
        outputs, _ = layer(inputs)
        loss = ((readout(outputs[:, -1]).squeeze(-1) - targets) ** 2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        losses.append(loss.item())
    return losses


def run(
    out: Path, cells: list[str], steps: int, hidden_size: int, train_steps: int, batch: int, lr: float, seed: int
) -> dict:
    generator = torch.Generator().manual_seed(seed)
    eval_inputs, eval_targets = adding_problem(256, steps, generator)
    results = {}
    for cell in cells:
        started = time.perf_counter()
        torch.manual_seed(seed)
        layer = make_layer(cell, hidden_size)
        readout = nn.Linear(_output_size(layer), 1)
        at_init = measure(layer, readout, eval_inputs, eval_targets)
        losses = train_cell(layer, readout, steps, train_steps, batch, lr, generator)
        trained = measure(layer, readout, eval_inputs, eval_targets)
        with torch.no_grad():
            test_mse = ((readout(layer(eval_inputs)[0][:, -1]).squeeze(-1) - eval_targets) ** 2).mean().item()
        results[cell] = {
            "init": at_init,
            "trained": trained,
            "test_mse": test_mse,
            "train_loss_last_100": sum(losses[-100:]) / len(losses[-100:]),
            "seconds": time.perf_counter() - started,
        }
        ratio = {k: (v["h"] / v["h"][0]) for k, v in (("init", at_init), ("trained", trained))}
        print(
            f"{cell:<9} ‖∂L/∂h_(T-d)‖/‖∂L/∂h_T‖ at d = {steps - 1}: init {ratio['init'][-1]:.2e}, trained "
            f"{ratio['trained'][-1]:.2e}; adding-problem test MSE {test_mse:.3f} (predicting 1: 0.167), "
            f"{results[cell]['seconds']:.0f} s",
            flush=True,
        )

    figure, axes = plt.subplots(2, 2, figsize=(12, 8), sharex=True)
    for column, phase in enumerate(("init", "trained")):
        for row, (key, symbol) in enumerate((("h", "h_t"), ("x", "x_t"))):
            ax = axes[row, column]
            for cell, item in results.items():
                norms = item[phase][key]
                ax.semilogy(
                    norms / norms[0].clamp(min=1e-30),
                    label=cell if phase == "init" else f"{cell} (MSE {item['test_mse']:.3f})",
                )
            title = "at initialisation" if phase == "init" else f"after {train_steps} Adam steps"
            ax.set(ylabel=f"‖∂L/∂{symbol}‖ / ‖∂L/∂{symbol.replace('t', 'T')}‖", title=f"{title}: ∂L/∂{symbol}")
            ax.set_ylim(bottom=1e-12, top=1e3)
            ax.grid(True, which="major", alpha=0.3)
            if row == 1:
                ax.set_xlabel("distance T - t (steps back from the loss)")
        axes[0, column].legend(fontsize=8, ncol=2)
    figure.suptitle(
        f"Gradient reaching back from a loss at the last step (adding problem, T = {steps}, "
        f"hidden {hidden_size}, mean over 256 sequences)"
    )
    figure.tight_layout()
    save_figure(figure, out / "vanishing.png", dpi=85)

    summary = {}
    for cell, item in results.items():
        summary[cell] = {
            phase: {
                f"h_ratio_at_{d}": (item[phase]["h"][d] / item[phase]["h"][0]).item()
                for d in REPORT_DISTANCES
                if d < steps
            }
            | {
                f"x_ratio_at_{d}": (item[phase]["x"][d] / item[phase]["x"][0]).item()
                for d in REPORT_DISTANCES
                if d < steps
            }
            for phase in ("init", "trained")
        }
        summary[cell]["test_mse"] = item["test_mse"]
        summary[cell]["train_loss_last_100"] = item["train_loss_last_100"]
        summary[cell]["seconds"] = item["seconds"]
    curves = {
        cell: {phase: {k: v for k, v in item[phase].items()} for phase in ("init", "trained")}
        for cell, item in results.items()
    }
    return {
        "steps": steps,
        "hidden_size": hidden_size,
        "train_steps": train_steps,
        "batch": batch,
        "lr": lr,
        "summary": summary,
        "curves_by_distance": curves,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = base_parser(__doc__)
    parser.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS))
    parser.add_argument("--steps", type=int, default=100, help="sequence length T")
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--train-steps", type=int, default=600)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args(argv)
    if args.tiny:
        args.steps, args.hidden_size, args.train_steps = (
            min(args.steps, 12),
            min(args.hidden_size, 8),
            min(args.train_steps, 3),
        )
    started = start(args)
    result = run(args.out, args.cells, args.steps, args.hidden_size, args.train_steps, args.batch, args.lr, args.seed)
    result["run"] = run_info("experiments.vanishing", args, started)
    write_json(args.out / "vanishing.json", result)
    return result


if __name__ == "__main__":
    main()
