"""Run a recurrent layer one time step at a time with its own weights, so that every hidden state h_t is
its own tensor in the graph and ∂L/∂h_t can be read for each t.

torch's fused `nn.RNN`/`nn.GRU`/`nn.LSTM` and our `unroll` (models/unroll.py) return all states from one
call, whose intermediate states autograd cannot address; here each step is a separate call (fused
modules with a one-step input and the previous state) or is written out from the layer's parameters
(Clockwork RNN, SCRN). `tests/test_experiments.py` checks that the outputs and input gradients equal
those of the layer's own forward pass.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from models.cells import SCRN, ClockworkRNN


def step_through(layer: nn.Module, inputs: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(B, T, I) inputs -> ((B, T, output_size) outputs equal to `layer(inputs)[0]`, [h_1, ..., h_T]).

    Each h_t is the tensor that step t + 1 reads (for fused modules shaped (1, B, H)). A layer with a
    `steps(inputs)` method (e.g. a hand-written experimental cell) is asked to do this itself.
    """
    batch, steps, _ = inputs.shape
    if hasattr(layer, "steps"):
        return layer.steps(inputs)
    if isinstance(layer, (nn.RNN, nn.GRU, nn.LSTM)):
        if layer.num_layers != 1 or layer.bidirectional or not layer.batch_first:
            raise ValueError("step_through handles one-layer, one-direction, batch-first torch modules")
        hidden = inputs.new_zeros(1, batch, layer.hidden_size)
        state: torch.Tensor | tuple[torch.Tensor, torch.Tensor] = (
            (hidden, hidden.clone()) if isinstance(layer, nn.LSTM) else hidden
        )
        hiddens = []
        for t in range(steps):
            _, state = layer(inputs[:, t : t + 1], state)
            hiddens.append(state[0] if isinstance(layer, nn.LSTM) else state)
        # outputs built from the states themselves, so a loss on the last output reaches h_T
        return torch.stack([h[0] for h in hiddens], dim=1), hiddens
    if isinstance(layer, ClockworkRNN):
        projected = F.linear(inputs, layer.weight_ih, layer.bias)  # (B, T, H)
        recurrent = (layer.weight_hh * layer.recurrent_mask).t()
        active = layer.active_units(steps)  # (T, H)
        hidden = inputs.new_zeros(batch, layer.hidden_size)
        hiddens = []
        for t in range(steps):
            candidate = torch.tanh(projected[:, t] + hidden @ recurrent)
            hidden = torch.where(active[t], candidate, hidden)  # idle modules keep their state
            hiddens.append(hidden)
        return torch.stack(hiddens, dim=1), hiddens
    if isinstance(layer, SCRN):
        context = inputs.new_zeros(batch, layer.context_size)
        hidden = inputs.new_zeros(batch, layer.hidden_size)
        hiddens, outputs = [], []
        for t in range(steps):
            x = inputs[:, t]
            context = (1.0 - layer.alpha) * layer.context_in(x) + layer.alpha * context
            hidden = torch.sigmoid(layer.hidden_in(x) + layer.context_to_hidden(context) + layer.recurrent(hidden))
            hiddens.append(hidden)
            outputs.append(torch.cat([hidden, context], dim=-1))
        return torch.stack(outputs, dim=1), hiddens
    raise ValueError(f"step_through does not know {type(layer).__name__}")


def gradients_across_time(
    layer: nn.Module, inputs: torch.Tensor, last_step_loss: Callable[[torch.Tensor], torch.Tensor]
) -> dict[str, torch.Tensor]:
    """‖∂L/∂h_t‖ and ‖∂L/∂x_t‖ for a loss on the last output, indexed by distance T - t (0: the last step).

    `last_step_loss` maps the (B, output_size) last outputs to (B,) per-sequence losses; their sum has
    each sequence's own gradient in its row, so the norms are per sequence, then averaged over the batch.
    Returns {"h": (T,), "x": (T,)}.
    """
    batch = inputs.size(0)
    inputs = inputs.detach().requires_grad_(True)
    outputs, hiddens = step_through(layer, inputs)
    loss = last_step_loss(outputs[:, -1]).sum()
    grads = torch.autograd.grad(loss, [inputs, *hiddens], allow_unused=True)
    x_norms = grads[0].norm(dim=-1).mean(dim=0)  # (T,)
    h_norms = torch.stack(
        [torch.zeros(()) if g is None else g.reshape(batch, -1).norm(dim=-1).mean() for g in grads[1:]]
    )
    return {"h": h_norms.flip(0).detach(), "x": x_norms.flip(0).detach()}
