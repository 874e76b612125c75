"""The one time loop for hand-written cells, with a hand-written backward pass.

    h_t = u_t ⊙ f(a_t + h_{t-1} W) + (1 - u_t) ⊙ h_{t-1},   h_0 = 0

`a` are the input projections of every step, computed before the loop in one matmul; `u_t` says
which units update at step t (all of them when `update` is None); `f` is tanh or sigmoid. Autograd
would record several nodes per step; here the forward loop runs without a graph and the backward loop
is written out (BPTT), so each step costs one matmul each way, and the recurrent weight's gradient
is one matmul over all steps at the end.
"""

from __future__ import annotations

from typing import Literal

import torch

Activation = Literal["tanh", "sigmoid"]


class _Recurrence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, inputs: torch.Tensor, weight: torch.Tensor, update: torch.Tensor | None, activation: str):
        batch, steps, hidden = inputs.shape
        squash = torch.tanh if activation == "tanh" else torch.sigmoid
        outputs = inputs.new_empty(batch, steps, hidden)
        state = inputs.new_zeros(batch, hidden)
        for t in range(steps):
            candidate = squash(torch.addmm(inputs[:, t], state, weight))
            state = candidate if update is None else torch.where(update[t], candidate, state)
            outputs[:, t] = state
        ctx.activation = activation
        ctx.save_for_backward(outputs, weight, update)
        return outputs

    @staticmethod
    def backward(ctx, grad_outputs: torch.Tensor):
        outputs, weight, update = ctx.saved_tensors
        batch, steps, hidden = outputs.shape
        # f'(pre-activation) from f's output: tanh' = 1 - h², sigmoid' = h (1 - h); only read where
        # a unit updated, and there the state is the new candidate.
        if ctx.activation == "tanh":
            derivative = 1.0 - outputs * outputs
        else:
            derivative = outputs * (1.0 - outputs)
        keep = None if update is None else update.to(outputs.dtype)  # (T, H)
        weight_t = weight.t()
        grad_inputs = torch.empty_like(outputs)
        carry = outputs.new_zeros(batch, hidden)  # dL/dh_t arriving from step t + 1
        for t in range(steps - 1, -1, -1):
            grad_state = grad_outputs[:, t] + carry
            grad_pre = grad_state * derivative[:, t]
            if keep is None:
                carry = grad_pre @ weight_t
            else:
                grad_pre = grad_pre * keep[t]
                carry = grad_state * (1.0 - keep[t]) + grad_pre @ weight_t
            grad_inputs[:, t] = grad_pre
        previous = torch.cat([outputs.new_zeros(batch, 1, hidden), outputs[:, :-1]], dim=1)
        grad_weight = previous.reshape(-1, hidden).t() @ grad_inputs.reshape(-1, hidden)
        return grad_inputs, grad_weight, None, None


def unroll(
    inputs: torch.Tensor,
    weight: torch.Tensor,
    update: torch.Tensor | None = None,
    activation: Activation = "tanh",
) -> torch.Tensor:
    """(B, T, H) input projections, (H, H) weight applied as `h @ weight`, optional (T, H) bool
    update mask -> (B, T, H) states."""
    if activation not in ("tanh", "sigmoid"):
        raise ValueError(f"activation must be tanh or sigmoid, got {activation!r}")
    return _Recurrence.apply(inputs, weight, update, activation)
