"""Exactness of the lecture's RNN family: IRNN init, Clockwork RNN schedule and mask, SCRN equations."""

from __future__ import annotations

import pytest
import torch

from models.cells import SCRN, ClockworkRNN, irnn
from models.tagger import TaggerConfig, build_tagger
from models.unroll import unroll


def test_irnn_is_identity_initialised_relu() -> None:
    torch.manual_seed(0)
    layer = irnn(50, 64)
    assert layer.nonlinearity == "relu"
    assert torch.equal(layer.weight_hh_l0, torch.eye(64))
    assert not layer.bias_ih_l0.any() and not layer.bias_hh_l0.any()
    assert 0.0008 < layer.weight_ih_l0.std().item() < 0.0012


def test_elman_is_torch_tanh_rnn() -> None:
    model = build_tagger(TaggerConfig(vocab_size=5, num_tags=3, num_intents=2, cell="elman"))
    layer = model.encoder.forward_layers[0]
    assert isinstance(layer, torch.nn.RNN) and layer.nonlinearity == "tanh"


def test_clockwork_updates_only_modules_whose_period_divides_t() -> None:
    torch.manual_seed(0)
    layer = ClockworkRNN(3, 8, periods=[1, 2, 4, 8])  # modules of 2 units
    outputs, _ = layer(torch.randn(2, 9, 3))
    for t in range(1, 9):
        for module, period in enumerate([1, 2, 4, 8]):
            units = slice(2 * module, 2 * module + 2)
            same = torch.equal(outputs[:, t, units], outputs[:, t - 1, units])
            assert same == (t % period != 0), (t, period)


def test_clockwork_matches_a_step_by_step_reference() -> None:
    torch.manual_seed(0)
    layer = ClockworkRNN(3, 6, periods=[1, 2, 4])
    inputs = torch.randn(2, 7, 3)
    outputs, _ = layer(inputs)
    weight_hh = layer.weight_hh * layer.recurrent_mask
    state = torch.zeros(2, 6)
    for t in range(7):
        candidate = torch.tanh(inputs[:, t] @ layer.weight_ih.t() + layer.bias + state @ weight_hh.t())
        for module, period in enumerate([1, 2, 4]):
            if t % period == 0:
                state[:, 2 * module : 2 * module + 2] = candidate[:, 2 * module : 2 * module + 2]
        torch.testing.assert_close(outputs[:, t], state)


def test_clockwork_slow_modules_never_read_fast_ones_even_after_training() -> None:
    torch.manual_seed(0)
    layer = ClockworkRNN(3, 8, periods=[1, 2, 4, 8])
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        layer(torch.randn(4, 10, 3))[0].pow(2).sum().backward()
        optimizer.step()
    module_of_unit = torch.arange(8) // 2
    below_diagonal = module_of_unit.unsqueeze(1) > module_of_unit.unsqueeze(0)  # slow row reading fast column
    assert below_diagonal.any()
    assert not layer.weight_hh[below_diagonal].any()
    assert layer.weight_hh[~below_diagonal].abs().sum() > 0


def test_scrn_follows_the_paper_equations() -> None:
    torch.manual_seed(0)
    layer = SCRN(3, 5, context_size=2, alpha=0.95)
    assert "alpha" not in dict(layer.named_parameters())  # fixed, not learned
    inputs = torch.randn(2, 6, 3)
    outputs, _ = layer(inputs)
    assert outputs.shape == (2, 6, 7)
    B, A, P, R = (
        layer.context_in.weight,
        layer.hidden_in.weight,
        layer.context_to_hidden.weight,
        layer.recurrent.weight,
    )
    context, hidden = torch.zeros(2, 2), torch.zeros(2, 5)
    for t in range(6):
        context = 0.05 * inputs[:, t] @ B.t() + 0.95 * context
        hidden = torch.sigmoid(context @ P.t() + inputs[:, t] @ A.t() + layer.hidden_in.bias + hidden @ R.t())
        torch.testing.assert_close(outputs[:, t], torch.cat([hidden, context], dim=-1))


def test_hand_written_cells_train_in_the_tagger() -> None:
    for cell in ("clockwork", "scrn", "irnn"):
        torch.manual_seed(0)
        model = build_tagger(TaggerConfig(vocab_size=20, num_tags=4, num_intents=2, cell=cell, hidden_size=8))
        token_ids = torch.tensor([[2, 3, 4, 0], [5, 6, 7, 8]])
        output = model(token_ids, token_ids != 0)
        (output.tag_logits.sum() + output.intent_logits.sum()).backward()
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
@pytest.mark.parametrize("with_update", [False, True])
def test_unroll_backward_matches_autograd(activation: str, with_update: bool) -> None:
    """The hand-written BPTT equals autograd through a plain loop (gradcheck, float64)."""
    torch.manual_seed(0)
    inputs = torch.randn(3, 6, 4, dtype=torch.float64, requires_grad=True)
    weight = (0.5 * torch.randn(4, 4, dtype=torch.float64)).requires_grad_()
    update = (torch.arange(6).unsqueeze(1) % torch.tensor([1, 1, 2, 4])) == 0 if with_update else None
    assert torch.autograd.gradcheck(lambda a, w: unroll(a, w, update, activation), (inputs, weight))

    squash = torch.tanh if activation == "tanh" else torch.sigmoid
    state, reference = torch.zeros(3, 4, dtype=torch.float64), []
    for t in range(6):
        candidate = squash(inputs[:, t] + state @ weight)
        state = candidate if update is None else torch.where(update[t], candidate, state)
        reference.append(state)
    torch.testing.assert_close(unroll(inputs, weight, update, activation), torch.stack(reference, dim=1))
