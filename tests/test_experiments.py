"""The lecture experiments (experiments/): each runs on a tiny setting and writes its figure and JSON;
the cliff matches the closed form; step-by-step unrolling gives the layers' own outputs and gradients."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from experiments import cliff, clipping, error_surface, forget_gate, relu_init, vanishing
from experiments.forget_gate import NoForgetLSTM
from experiments.stepping import gradients_across_time, step_through
from models.tagger import CELLS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def written(out: Path, name: str) -> dict:
    """The experiment's PNG is a real, small PNG; returns its JSON."""
    figure = out / f"{name}.png"
    assert figure.read_bytes()[:8] == PNG_MAGIC
    assert 1_000 < figure.stat().st_size < 400_000
    data = json.loads((out / f"{name}.json").read_text())
    assert data["run"]["torch_threads"] == 1
    assert data["run"]["command"].startswith(f"python -m experiments.{name}")
    return data


def test_cliff_autograd_through_bptt_matches_closed_form(tmp_path: Path) -> None:
    data = cliff.main(["--out", str(tmp_path), "--grid-points", "50"])  # the full T = 1000
    saved = written(tmp_path, "cliff")
    assert data["steps"] == saved["steps"] == 1000
    for key in ("y", "dL_dw", "dy_dw"):
        assert data["closed_form_check"][f"{key}_max_relative_error"] < 1e-6
    points = {row["w"]: row for row in data["lecture_points"]}
    assert points[1.0]["y"] == pytest.approx(1.0)
    assert points[1.01]["y"] == pytest.approx(1.01**999, rel=1e-9) and 2.0e4 < points[1.01]["y"] < 2.1e4
    assert points[0.99]["y"] == pytest.approx(4.36e-5, rel=1e-2)
    assert points[0.01]["y"] == 0.0 and points[0.01]["dL_dw"] == 0.0  # 10^-1998 underflows
    assert abs(points[1.01]["dL_dw"]) > 1e11 and abs(points[0.99]["dL_dw"]) < 0.1


def test_cliff_closed_form_check_catches_a_wrong_gradient() -> None:
    w = torch.tensor([0.9, 1.0, 1.005], dtype=torch.float64)
    y, _, grad, _ = cliff.bptt(w, 200, 1.0)
    y_exact, grad_exact, _ = cliff.closed_form(w, 200, 1.0)
    assert cliff.max_relative_error(grad, grad_exact) < 1e-12
    assert cliff.max_relative_error(grad * (1 + 1e-5), grad_exact) > 1e-6
    assert cliff.max_relative_error(torch.zeros(1), torch.zeros(1)) == 0.0


def test_error_surface_clipping_bounds_the_steps(tmp_path: Path) -> None:
    data = error_surface.main(["--out", str(tmp_path), "--tiny", "--steps", "300"])
    written(tmp_path, "error_surface")
    paths = {path["clip"]: path for path in data["descent"]["paths"]}
    lr, threshold = data["descent"]["lr"], 1.0
    assert paths["norm"]["largest_step"] <= lr * threshold * (1 + 1e-9)
    assert paths["value"]["largest_step"] <= lr * threshold * 2**0.5 * (1 + 1e-9)
    assert paths["none"]["largest_step"] > 10 * lr * threshold  # the wall throws the unclipped path
    assert paths["norm"]["final_loss"] < 0.1 < paths["none"]["final_loss"]
    gradient = data["gradient_norm"]
    assert gradient["plateau_abs_w1_below_0.7_median"] < 1e-3 < gradient["wall_w1_above_1.15_median"]


@pytest.mark.parametrize("cell", list(CELLS))
def test_step_through_equals_the_layer(cell: str) -> None:
    torch.manual_seed(0)
    layer = CELLS[cell](5, 8).double()
    inputs = torch.randn(3, 11, 5, dtype=torch.float64)
    outputs, hiddens = step_through(layer, inputs)
    assert len(hiddens) == 11
    torch.testing.assert_close(outputs, layer(inputs)[0])
    stepped, fused = inputs.clone().requires_grad_(True), inputs.clone().requires_grad_(True)
    (grad_stepped,) = torch.autograd.grad(step_through(layer, stepped)[0][:, -1].pow(2).sum(), stepped)
    (grad_fused,) = torch.autograd.grad(layer(fused)[0][:, -1].pow(2).sum(), fused)
    torch.testing.assert_close(grad_stepped, grad_fused)


@pytest.mark.parametrize("cell", ["elman", "gru", "lstm"])
def test_hidden_state_gradients_match_restarting_the_fused_module(cell: str) -> None:
    """∂L/∂h_t from the stepped graph equals the gradient of the fused module restarted from h_t."""
    torch.manual_seed(1)
    layer = CELLS[cell](4, 6).double()
    inputs = torch.randn(2, 9, 4, dtype=torch.float64)
    profile = gradients_across_time(layer, inputs, lambda last: last.sum(dim=-1))
    assert profile["h"].shape == profile["x"].shape == (9,)
    with torch.no_grad():
        _, hiddens = step_through(layer, inputs)
        if isinstance(layer, nn.LSTM):  # the memory c_t too, held fixed as in the stepped graph
            cells = []
            state = None
            for t in range(9):
                _, state = layer(inputs[:, t : t + 1], state)
                cells.append(state[1])
    for distance in (1, 4, 8):
        t = 8 - distance
        start = hiddens[t].clone().requires_grad_(True)
        hx = (start, cells[t]) if isinstance(layer, nn.LSTM) else start
        outputs, _ = layer(inputs[:, t + 1 :], hx)
        (grad,) = torch.autograd.grad(outputs[:, -1].sum(), start)
        expected = grad.reshape(2, -1).norm(dim=-1).mean()
        torch.testing.assert_close(profile["h"][distance], expected)


def test_no_forget_lstm_is_an_lstm_with_the_forget_gate_held_open() -> None:
    torch.manual_seed(2)
    cell = NoForgetLSTM(3, 5).double()
    reference = nn.LSTM(3, 5, batch_first=True).double()
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            ours = getattr(cell, name).chunk(3)  # i, g, o
            theirs = getattr(reference, f"{name}_l0")
            forget = torch.full_like(ours[0], 50.0 if name == "bias_ih" else 0.0)  # sigmoid(50) = 1 in float64
            theirs.copy_(torch.cat([ours[0], forget, ours[1], ours[2]]))
    inputs = torch.randn(2, 7, 3, dtype=torch.float64)
    torch.testing.assert_close(cell(inputs)[0], reference(inputs)[0])


def test_vanishing_tiny(tmp_path: Path) -> None:
    vanishing.main(["--out", str(tmp_path), "--tiny"])
    data = written(tmp_path, "vanishing")
    assert set(data["summary"]) == set(CELLS)
    for cell, curves in data["curves_by_distance"].items():
        for phase in ("init", "trained"):
            assert len(curves[phase]["h"]) == len(curves[phase]["x"]) == data["steps"]
            assert all(v >= 0 for v in curves[phase]["h"])
        assert data["summary"][cell]["init"]["h_ratio_at_0"] == pytest.approx(1.0)


def test_adding_problem_targets_are_the_marked_sums() -> None:
    inputs, targets = vanishing.adding_problem(4, 10, torch.Generator().manual_seed(0))
    assert inputs.shape == (4, 10, 2)
    assert torch.equal(inputs[..., 1].sum(dim=1), torch.full((4,), 2.0))
    torch.testing.assert_close(targets, (inputs[..., 0] * inputs[..., 1]).sum(dim=1))


def test_clipping_tiny(tmp_path: Path, tiny_data: Path) -> None:
    clipping.main(["--out", str(tmp_path), "--tiny", "--data-dir", str(tiny_data)])
    data = written(tmp_path, "clipping")
    runs = {run["clip"]: run for run in data["runs"]}
    assert set(runs) == {"none", "value", "norm"}
    assert runs["norm"]["threshold"] == 5.0 and runs["value"]["threshold"] == 15.0
    # the same seed and batches: the first step's gradient (before clipping) is the same in every run
    assert runs["none"]["grad_norm"][0] == runs["norm"]["grad_norm"][0] == runs["value"]["grad_norm"][0]
    assert runs["none"]["clipped_fraction"] == 0.0
    assert 0.0 <= runs["norm"]["final_val_f1"] <= 100.0


def test_relu_init_tiny(tmp_path: Path, tiny_data: Path) -> None:
    relu_init.main(["--out", str(tmp_path), "--tiny", "--data-dir", str(tiny_data)])
    data = written(tmp_path, "relu_init")
    assert {(run["recipe"], run["variant"]) for run in data["runs"]} == {
        (recipe, variant) for recipe in relu_init.RECIPES for variant in relu_init.VARIANTS
    }


def test_relu_variant_has_random_not_identity_recurrence(tiny_data: Path) -> None:
    from experiments.atis import load_data

    data = load_data(tiny_data, None)
    relu = relu_init.make_variant(data, "relu", 0).encoder.forward_layers[0]
    irnn = relu_init.make_variant(data, "irnn", 0).encoder.forward_layers[0]
    assert relu.nonlinearity == irnn.nonlinearity == "relu"
    assert torch.equal(irnn.weight_hh_l0, torch.eye(irnn.hidden_size))
    bound = 1 / irnn.hidden_size**0.5
    assert not torch.equal(relu.weight_hh_l0, torch.eye(relu.hidden_size))
    assert relu.weight_hh_l0.abs().max() <= bound and relu.bias_hh_l0.abs().max() > 0


def test_forget_gate_tiny(tmp_path: Path, tiny_data: Path) -> None:
    forget_gate.main(["--out", str(tmp_path), "--tiny", "--data-dir", str(tiny_data)])
    data = written(tmp_path, "forget_gate")
    runs = {run["variant"]: run for run in data["runs"]}
    assert set(runs) == set(forget_gate.VARIANTS)
    for run in runs.values():
        assert len(run["grad_h_init"]) == len(run["grad_h_trained"]) == data["gradient_steps"]
        assert run["grad_h_init"][0] == pytest.approx(1.0)  # L = u·h_T with ‖u‖ = 1
    # a more open forget gate at init carries more gradient back
    assert runs["bias 5"]["grad_h_init"][-1] > runs["bias 0"]["grad_h_init"][-1]


def test_recorded_paths_are_relative_to_the_repository(tmp_path: Path) -> None:
    from experiments.common import DATA_DIR, repo_relative

    assert repo_relative(DATA_DIR) == "data/atis"
    assert repo_relative(tmp_path) == str(tmp_path)  # outside the repository: kept as given
