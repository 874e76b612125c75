"""Recurrent layers beyond torch's fused modules: IRNN init, Clockwork RNN and SCRN.

Every layer maps (B, T, input_size) right-padded inputs to ((B, T, output_size), final state), like
a batch-first `nn.RNN` with one layer and one direction, and exposes `output_size`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from models.unroll import unroll


def irnn(input_size: int, hidden_size: int) -> nn.RNN:
    """ReLU RNN with the recurrent matrix set to the identity and zero biases; input weights drawn
    from N(0, 0.001²) (Le, Jaitly & Hinton 2015, "A Simple Way to Initialize Recurrent Networks of
    Rectified Linear Units")."""
    layer = nn.RNN(input_size, hidden_size, nonlinearity="relu", batch_first=True)
    with torch.no_grad():
        layer.weight_hh_l0.copy_(torch.eye(hidden_size))
        layer.weight_ih_l0.normal_(0.0, 0.001)
        layer.bias_ih_l0.zero_()
        layer.bias_hh_l0.zero_()
    return layer


def clockwork_periods(num_modules: int) -> list[int]:
    """T_i = 2^(i-1) for modules i = 1..g (Koutník et al. 2014)."""
    return [2**i for i in range(num_modules)]


class ClockworkRNN(nn.Module):
    """Clockwork RNN (Koutník, Greff, Gomez & Schmidhuber, ICML 2014).

    The hidden state is split into modules with increasing periods. Time counts from t = 0, so every
    module updates at the first word (all periods divide 0); at step t only the modules with
    t mod T_i == 0 update and the others keep their previous state exactly. The recurrent matrix is
    block-upper-triangular (modules sorted by increasing period): a module reads the modules at least
    as slow as itself, so slow modules feed fast ones and never the reverse. The mask is applied in
    every forward pass and the masked weights start at zero, so they get zero gradients and stay zero.
    """

    def __init__(self, input_size: int, hidden_size: int, periods: list[int] | None = None) -> None:
        super().__init__()
        periods = periods or clockwork_periods(4 if hidden_size >= 4 else hidden_size)
        if sorted(periods) != list(periods) or any(p < 1 for p in periods):
            raise ValueError(f"clockwork periods must be positive and increasing, got {periods}")
        if hidden_size < len(periods):
            raise ValueError(f"hidden_size {hidden_size} is smaller than the {len(periods)} clockwork modules")
        self.periods = list(periods)
        self.hidden_size = self.output_size = hidden_size
        # Units split into len(periods) contiguous modules of (nearly) equal size.
        module_of_unit = torch.arange(hidden_size) * len(periods) // hidden_size  # (H,)
        self.register_buffer("unit_periods", torch.tensor(self.periods)[module_of_unit], persistent=False)
        # recurrent_mask[i, j] = 1 where unit i may read unit j: j's module is at least as slow as i's.
        self.register_buffer(
            "recurrent_mask", (module_of_unit.unsqueeze(1) <= module_of_unit.unsqueeze(0)).float(), persistent=False
        )
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.zeros(hidden_size))
        bound = 1.0 / math.sqrt(hidden_size)
        nn.init.uniform_(self.weight_ih, -bound, bound)
        nn.init.uniform_(self.weight_hh, -bound, bound)
        with torch.no_grad():
            self.weight_hh.mul_(self.recurrent_mask)

    def active_units(self, steps: int) -> torch.Tensor:
        """(T, H) bool: which units update at each step t = 0..T-1."""
        t = torch.arange(steps, device=self.unit_periods.device).unsqueeze(1)
        return (t % self.unit_periods.unsqueeze(0)) == 0

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, steps, _ = inputs.shape
        projected = torch.nn.functional.linear(inputs, self.weight_ih, self.bias)  # (B, T, H), hoisted
        recurrent = (self.weight_hh * self.recurrent_mask).t()  # (H, H), applied as h @ recurrent
        outputs = unroll(projected, recurrent, self.active_units(steps), "tanh")
        return outputs, outputs[:, -1]


class SCRN(nn.Module):
    """Structurally Constrained Recurrent Network (Mikolov, Joulin, Chopra, Mathieu & Ranzato 2015).

    Context state s_t = (1 - α)·B·x_t + α·s_{t-1} with α fixed (not learned); hidden state
    h_t = σ(P·s_t + A·x_t + R·h_{t-1}); the layer outputs [h_t; s_t], so the tag head sees both.
    We feed s_t (the paper's equations), not s_{t-1} as the authors' code does.
    """

    def __init__(self, input_size: int, hidden_size: int, context_size: int | None = None, alpha: float = 0.95) -> None:
        super().__init__()
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"SCRN alpha must be in [0, 1), got {alpha}")
        self.alpha = alpha
        self.hidden_size = hidden_size
        self.context_size = context_size or max(1, hidden_size // 4)
        self.output_size = hidden_size + self.context_size
        self.context_in = nn.Linear(input_size, self.context_size, bias=False)  # B
        self.hidden_in = nn.Linear(input_size, hidden_size)  # A (with the hidden bias)
        self.context_to_hidden = nn.Linear(self.context_size, hidden_size, bias=False)  # P
        self.recurrent = nn.Linear(hidden_size, hidden_size, bias=False)  # R

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, steps, _ = inputs.shape
        # The context recurrence is linear, so all steps come from one matmul with the decay matrix
        # D[t, k] = α^(t-k) for k <= t: s_t = Σ_k D[t, k]·(1 - α)·B·x_k (no time loop).
        steps_range = torch.arange(steps, device=inputs.device, dtype=inputs.dtype)
        distance = steps_range.unsqueeze(1) - steps_range.unsqueeze(0)  # (T, T): t - k
        decay = torch.where(distance >= 0, self.alpha ** distance.clamp(min=0), torch.zeros_like(distance))
        context_states = torch.matmul(decay, (1.0 - self.alpha) * self.context_in(inputs))  # (B, T, C)
        hidden_input = self.hidden_in(inputs)  # (B, T, H), hoisted
        hidden_input = hidden_input + self.context_to_hidden(context_states)  # P·s_t for all t at once
        hiddens = unroll(hidden_input, self.recurrent.weight.t(), None, "sigmoid")  # (B, T, H)
        return torch.cat([hiddens, context_states], dim=-1), hiddens[:, -1]
