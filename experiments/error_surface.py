"""The error surface (lecture claims 2 and 5): the loss of a one-unit RNN over its two weights
(w1 recurrent, w2 input) has plateaus and a wall; gradient descent from one start with and without
clipping."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import matplotlib.pyplot as plt
import torch

from experiments.common import base_parser, run_info, save_figure, start, write_json

Clip = Literal["none", "value", "norm"]


def sequence_loss(w1: torch.Tensor, w2: torch.Tensor, steps: int, target: float = 1.0) -> torch.Tensor:
    """Toy task: after the input sequence [1, 0, ..., 0] of length T the output y_T should be `target`.

    h_t = w1·h_{t-1} + w2·x_t, y_t = h_t, L = (y_T - target)²; elementwise over w1, w2, so a whole grid
    is one call. Unrolled step by step, so autograd through it is BPTT. (y_T = w2·w1^(T-1).)
    """
    state = torch.zeros_like(w1 + w2)
    for t in range(steps):
        state = w1 * state + w2 * (1.0 if t == 0 else 0.0)
    return (state - target) ** 2


def descend(
    start_point: tuple[float, float], steps: int, lr: float, sequence_steps: int, clip: Clip, threshold: float
) -> dict:
    """Plain gradient descent on (w1, w2); stops early once the loss is not finite.

    `value` clips each gradient entry to [-threshold, threshold] (the lecture's rule); `norm` rescales
    the gradient to length `threshold` when it is longer (Pascanu, Mikolov & Bengio 2013).
    """
    weights = torch.tensor(start_point, dtype=torch.float64, requires_grad=True)
    points, losses, grad_norms = [], [], []
    for _ in range(steps + 1):
        loss = sequence_loss(weights[0], weights[1], sequence_steps)
        (grad,) = torch.autograd.grad(loss, weights)
        points.append(weights.detach().tolist())
        losses.append(loss.item())
        grad_norms.append(grad.norm().item())
        if not (torch.isfinite(loss) and torch.isfinite(grad).all()):
            break
        if clip == "value":
            grad = grad.clamp(-threshold, threshold)
        elif clip == "norm" and grad.norm() > threshold:
            grad = grad * (threshold / grad.norm())
        with torch.no_grad():
            weights -= lr * grad
    jumps = [((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2) ** 0.5 for a, b in zip(points, points[1:])]
    return {
        "clip": clip,
        "threshold": None if clip == "none" else threshold,
        "points": points,
        "losses": losses,
        "grad_norms": grad_norms,
        "final_point": points[-1],
        "final_loss": losses[-1],
        "steps_run": len(points) - 1,
        "largest_step": max(jumps, default=0.0),
        "largest_grad_norm": max(grad_norms),
    }


def run(
    out: Path,
    grid_points: int,
    sequence_steps: int,
    start_point: tuple[float, float],
    lr: float,
    steps: int,
    threshold: float,
) -> dict:
    w1_range, w2_range = (-0.6, 1.3), (-0.6, 2.0)
    w1 = torch.linspace(*w1_range, grid_points, dtype=torch.float64)
    w2 = torch.linspace(*w2_range, grid_points, dtype=torch.float64)
    grid_w1, grid_w2 = torch.meshgrid(w1, w2, indexing="xy")  # (w2, w1) layout for plotting
    grid_w1.requires_grad_(True)
    grid_w2.requires_grad_(True)
    grid_loss = sequence_loss(grid_w1, grid_w2, sequence_steps)
    grad_w1, grad_w2 = torch.autograd.grad(grid_loss.sum(), [grid_w1, grid_w2])
    grid_loss, grid_grad = grid_loss.detach(), torch.sqrt(grad_w1**2 + grad_w2**2)
    paths = [descend(start_point, steps, lr, sequence_steps, clip, threshold) for clip in ("none", "value", "norm")]
    for path in paths:
        print(
            f"clip {path['clip']:<5}: {path['steps_run']} steps, final (w1, w2) = "
            f"({path['final_point'][0]:.3g}, {path['final_point'][1]:.3g}), final loss {path['final_loss']:.3g}, "
            f"largest gradient norm {path['largest_grad_norm']:.3g}, largest step {path['largest_step']:.3g}"
        )

    log_loss = torch.log10(grid_loss.clamp(min=1e-6))
    figure = plt.figure(figsize=(13, 5))
    surface = figure.add_subplot(1, 2, 1, projection="3d")
    stride = max(1, grid_points // 60)
    surface.plot_surface(
        grid_w1.detach().numpy(),
        grid_w2.detach().numpy(),
        log_loss.clamp(max=6).numpy(),
        cmap="viridis",
        rstride=stride,
        cstride=stride,
        linewidth=0,
        antialiased=False,
    )
    surface.set(
        xlabel="w1 (recurrent)", ylabel="w2 (input)", zlabel="log10 L", title="error surface (log10 L, capped at 6)"
    )
    surface.view_init(elev=30, azim=-120)
    plane = figure.add_subplot(1, 2, 2)
    image = plane.pcolormesh(w1, w2, log_loss.clamp(max=6), shading="auto", cmap="viridis")
    figure.colorbar(image, ax=plane, label="log10 L (capped at 6)")
    plane.contour(w1, w2, log_loss, levels=[-2, -1, 0.01, 1, 2, 4], colors="white", linewidths=0.5, alpha=0.6)
    styles = {
        "none": ("tab:red", "no clipping"),
        "value": ("tab:orange", f"clip value {threshold:g}"),
        "norm": ("white", f"clip norm {threshold:g}"),
    }
    for path in paths:
        colour, label = styles[path["clip"]]
        xy = torch.tensor(path["points"])
        inside = (
            (xy[:, 0] >= w1_range[0])
            & (xy[:, 0] <= w1_range[1])
            & (xy[:, 1] >= w2_range[0])
            & (xy[:, 1] <= w2_range[1])
        )
        plane.plot(
            xy[inside, 0],
            xy[inside, 1],
            ".-",
            color=colour,
            markersize=2,
            linewidth=1,
            label=f"{label}: final L {path['final_loss']:.2g}",
        )
        if not bool(inside.all()):
            label_point = xy[inside][-1] if bool(inside.any()) else xy[0]
            plane.annotate(
                "thrown off the map",
                label_point.tolist(),
                color=colour,
                fontsize=8,
                xytext=(5, -12),
                textcoords="offset points",
            )
    plane.plot([start_point[0]], [start_point[1]], "k*", markersize=10, label="start")
    plane.set(
        xlabel="w1 (recurrent weight)",
        ylabel="w2 (input weight)",
        xlim=w1_range,
        ylim=w2_range,
        title=f"gradient descent, lr {lr:g}, {steps} steps",
    )
    plane.legend(fontsize=8, loc="upper left")
    figure.suptitle(
        f"One-unit linear RNN, x = [1, 0, ..., 0] (T = {sequence_steps}), L = (y_T - 1)²: "
        "plateau (w1 < 1) and wall (w1 > 1)"
    )
    save_figure(figure, out / "error_surface.png")

    plateau = grid_grad[(grid_w1.detach().abs() < 0.7)]
    wall = grid_grad[(grid_w1.detach() > 1.15)]
    return {
        "sequence_steps": sequence_steps,
        "task": "y_T = w2 * w1^(T-1) after x = [1, 0, ..., 0]; L = (y_T - 1)^2",
        "grid": {"w1_range": w1_range, "w2_range": w2_range, "points": grid_points},
        "gradient_norm": {
            "plateau_abs_w1_below_0.7_median": plateau.median().item(),
            "wall_w1_above_1.15_median": wall.median().item(),
            "max": grid_grad.max().item(),
        },
        "descent": {"start": start_point, "lr": lr, "steps": steps, "paths": paths},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = base_parser(__doc__)
    parser.add_argument("--grid-points", type=int, default=300)
    parser.add_argument("--sequence-steps", type=int, default=20, help="T")
    parser.add_argument("--start", type=float, nargs=2, default=(0.9, 0.2), metavar=("W1", "W2"))
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--steps", type=int, default=500, help="gradient-descent steps")
    parser.add_argument("--threshold", type=float, default=1.0, help="clipping threshold (value and norm)")
    args = parser.parse_args(argv)
    if args.tiny:
        args.grid_points, args.steps = min(args.grid_points, 30), min(args.steps, 50)
    started = start(args)
    result = run(
        args.out, args.grid_points, args.sequence_steps, tuple(args.start), args.lr, args.steps, args.threshold
    )
    result["run"] = run_info("experiments.error_surface", args, started)
    write_json(args.out / "error_surface.json", result)
    return result


if __name__ == "__main__":
    main()
