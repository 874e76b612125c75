"""The cliff (lecture claim 4): one linear neuron, recurrent weight w, input [1, 0, ..., 0] of length
1000, so y_1000 = w^999. Autograd through BPTT against the closed form, and y, dL/dw over w."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import torch

from experiments.common import base_parser, run_info, save_figure, start, write_json

LECTURE_POINTS = (1.0, 1.01, 0.99, 0.01)


def unroll_linear_neuron(w: torch.Tensor, steps: int) -> torch.Tensor:
    """y_T of h_t = w·h_{t-1} + x_t, y_t = h_t, x = [1, 0, ..., 0] (T = steps), one neuron per entry of w.

    The loop is the network itself, so autograd's backward through it is BPTT.
    """
    inputs = torch.zeros(steps, dtype=w.dtype)
    inputs[0] = 1.0
    state = torch.zeros_like(w)
    for t in range(steps):
        state = w * state + inputs[t]  # input weight 1, no bias
    return state  # output weight 1


def bptt(w_values: torch.Tensor, steps: int, target: float) -> tuple[torch.Tensor, ...]:
    """y_T, L = (y_T - target)², dL/dw and dy_T/dw by autograd, one independent neuron per w (float64)."""
    w = w_values.to(torch.float64).clone().requires_grad_(True)
    y = unroll_linear_neuron(w, steps)
    loss = (y - target) ** 2
    # neurons are independent, so the gradient of the sum is each one's own
    (dy_dw,) = torch.autograd.grad(y.sum(), w, retain_graph=True)
    (grad,) = torch.autograd.grad(loss.sum(), w)
    return y.detach(), loss.detach(), grad, dy_dw


def closed_form(w_values: torch.Tensor, steps: int, target: float) -> tuple[torch.Tensor, ...]:
    """y_T = w^(T-1), dL/dw = 2 (w^(T-1) - target) (T-1) w^(T-2) and dy_T/dw = (T-1) w^(T-2)."""
    w = w_values.to(torch.float64)
    y = w ** (steps - 1)
    dy_dw = (steps - 1) * w ** (steps - 2)
    return y, 2.0 * (y - target) * dy_dw, dy_dw


def max_relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    """max |value - reference| / |reference|; entries where both are exactly 0 (underflow) agree."""
    scale = reference.abs()
    difference = (value - reference).abs()
    both_zero = (scale == 0) & (difference == 0)
    ratio = torch.where(both_zero, torch.zeros_like(scale), difference / scale)
    return float(ratio.max())


def run(out: Path, steps: int, target: float, grid_points: int) -> dict:
    grid = torch.linspace(0.95, 1.012, grid_points, dtype=torch.float64)
    points = torch.tensor(LECTURE_POINTS, dtype=torch.float64)
    y_grid, _, grad_grid, dy_grid = bptt(grid, steps, target)
    y_points, loss_points, grad_points, dy_points = bptt(points, steps, target)
    exact = closed_form(torch.cat([grid, points]), steps, target)
    autograd = (torch.cat([y_grid, y_points]), torch.cat([grad_grid, grad_points]), torch.cat([dy_grid, dy_points]))
    check = {
        f"{name}_max_relative_error": max_relative_error(value, reference)
        for name, value, reference in zip(("y", "dL_dw", "dy_dw"), autograd, exact)
    }

    rows = []
    for w, y, loss, grad, dy in zip(*(v.tolist() for v in (points, y_points, loss_points, grad_points, dy_points))):
        log10_y = (steps - 1) * torch.log10(torch.tensor(w, dtype=torch.float64)).item()
        rows.append({"w": w, "y": y, "log10_y_exact": log10_y, "loss": loss, "dL_dw": grad, "dy_dw": dy})
        print(
            f"w = {w:<5}  y_{steps} = {y:<10.4g} (w^{steps - 1} = 10^{log10_y:.1f})  "
            f"dy/dw = {dy:<10.4g} dL/dw = {grad:.4g}"
        )
    print(
        "autograd (BPTT) vs closed form, max relative error: "
        + ", ".join(f"{k.removesuffix('_max_relative_error')} {v:.1e}" for k, v in check.items())
    )

    figure, (ax_lin, ax_y, ax_grad) = plt.subplots(1, 3, figsize=(14, 3.8))
    figure.subplots_adjust(wspace=0.3)
    ax_lin.plot(grid, y_grid, color="tab:blue")
    ax_lin.set(xlabel="recurrent weight w", ylabel=f"y_{steps}", title="linear scale: flat, then a wall")
    ax_y.semilogy(grid, y_grid, color="tab:blue")
    ax_y.set(xlabel="recurrent weight w", ylabel=f"y_{steps} = w^{steps - 1}", title="log scale")
    ax_grad.semilogy(grid, grad_grid.abs().clamp(min=1e-300), color="tab:red", label=f"|dL/dw|, L = (y - {target:g})²")
    ax_grad.semilogy(grid, dy_grid.abs().clamp(min=1e-300), color="tab:gray", ls="--", label="dy/dw")
    ax_grad.set(xlabel="recurrent weight w", ylabel="gradient", title="gradient through BPTT")
    ax_grad.legend(fontsize=8, loc="lower right")
    offsets = {1.0: (-60, 8), 1.01: (-80, -4), 0.99: (-30, 10)}
    for ax, values in ((ax_lin, y_points), (ax_y, y_points), (ax_grad, grad_points.abs())):
        for w, value in zip(points.tolist(), values.tolist()):
            visible = value > 0 and (ax is not ax_lin or value > 0.01 * float(y_grid.max()))
            if float(grid[0]) <= w <= float(grid[-1]) and visible:
                ax.plot([w], [value], "ko", markersize=4)
                ax.annotate(
                    f"w={w:g}: {value:.2g}", (w, value), textcoords="offset points", xytext=offsets[w], fontsize=8
                )
        ax.grid(True, which="major", alpha=0.3)
    ax_y.text(
        float(grid[0]),
        float(y_grid[grid_points // 2]),
        f"w = 0.01: y = 10^{rows[-1]['log10_y_exact']:.0f}\n(0 in float64)",
        fontsize=8,
    )
    figure.suptitle(
        f"One linear neuron fed [1, 0, ..., 0] for {steps} steps: the cliff at w = 1 (autograd through BPTT)"
    )
    save_figure(figure, out / "cliff.png")
    return {
        "steps": steps,
        "target": target,
        "lecture_points": rows,
        "closed_form_check": check,
        "grid": {"w": grid, "y": y_grid, "dL_dw": grad_grid, "dy_dw": dy_grid},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = base_parser(__doc__)
    parser.add_argument("--steps", type=int, default=1000, help="sequence length T (the lecture's 1000)")
    parser.add_argument("--target", type=float, default=1.0, help="target of the squared loss on y_T")
    parser.add_argument("--grid-points", type=int, default=400, help="values of w in the plot")
    args = parser.parse_args(argv)
    if args.tiny:
        args.steps, args.grid_points = min(args.steps, 50), min(args.grid_points, 40)
    started = start(args)
    result = run(args.out, args.steps, args.target, args.grid_points)
    result["run"] = run_info("experiments.cliff", args, started)
    write_json(args.out / "cliff.json", result)
    return result


if __name__ == "__main__":
    main()
