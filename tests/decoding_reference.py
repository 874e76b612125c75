"""The decoders as they were before `models/decoding.py` batched them differently: one Viterbi step
and one log-space CRF step per word over a (B, K, K) tensor. Kept only as the reference that the
tests (and `scripts/bench_forward.py --check`) compare the served decoders with."""

from __future__ import annotations

import copy

import torch

from models.decoding import LinearChainCRF, penalties


def _log_matmul(log_values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    shift = log_values.amax(dim=1, keepdim=True)
    product = torch.exp(log_values - shift) @ weights
    return torch.log(product.clamp_min(torch.finfo(product.dtype).tiny)) + shift


def viterbi(
    scores: torch.Tensor, mask: torch.Tensor, start: torch.Tensor, transitions: torch.Tensor, end: torch.Tensor
) -> torch.Tensor:
    incoming = transitions.t().contiguous()
    best = start + scores[:, 0]
    history = [best]
    for t in range(1, scores.size(1)):
        step_best = (best.unsqueeze(1) + incoming).amax(dim=2) + scores[:, t]
        best = torch.where(mask[:, t].unsqueeze(1), step_best, best)
        history.append(best)
    tag = (best + end).argmax(dim=1)
    path = [tag]
    for t in range(scores.size(1) - 1, 0, -1):
        previous = (history[t - 1] + incoming[tag]).argmax(dim=1)
        tag = torch.where(mask[:, t], previous, tag)
        path.append(tag)
    path.reverse()
    return torch.stack(path, dim=1).masked_fill(~mask, 0)


def marginals(
    crf: LinearChainCRF, scores: torch.Tensor, mask: torch.Tensor, allowed_start: torch.Tensor, allowed: torch.Tensor
) -> torch.Tensor:
    """Log-space forward-backward in the dtype of `scores` and of `crf`'s parameters."""
    start, transitions = crf.constrained(allowed_start, allowed)
    weights = transitions.exp()
    alpha = start + scores[:, 0]
    alphas = [alpha]
    for t in range(1, scores.size(1)):
        step = _log_matmul(alpha, weights) + scores[:, t]
        alpha = torch.where(mask[:, t].unsqueeze(1), step, alpha)
        alphas.append(alpha)
    log_z = torch.logsumexp(alpha + crf.end, dim=1)
    backward = weights.t()
    beta = crf.end.expand(scores.size(0), -1)
    betas = [beta]
    for t in range(scores.size(1) - 2, -1, -1):
        step = _log_matmul(scores[:, t + 1] + beta, backward)
        beta = torch.where(mask[:, t + 1].unsqueeze(1), step, beta)
        betas.append(beta)
    betas.reverse()
    return torch.exp(torch.stack(alphas, dim=1) + torch.stack(betas, dim=1) - log_z[:, None, None])


def decode(
    tag_logits: torch.Tensor,
    mask: torch.Tensor,
    allowed_start: torch.Tensor,
    allowed: torch.Tensor,
    crf: LinearChainCRF | None = None,
    float64: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tag ids and chosen tags' probabilities as the tagger's `decode` gave them; `float64` runs the
    CRF's marginals in float64 (the same recursion without its float32 rounding)."""
    if crf is not None:
        start, transitions = crf.constrained(allowed_start, allowed)
        tag_ids = viterbi(tag_logits, mask, start, transitions, crf.end)
        if float64:
            probabilities = marginals(copy.deepcopy(crf).double(), tag_logits.double(), mask, allowed_start, allowed)
        else:
            probabilities = marginals(crf, tag_logits, mask, allowed_start, allowed)
    else:
        log_probs = torch.log_softmax(tag_logits.float(), dim=-1)
        tag_ids = log_probs.argmax(dim=-1).masked_fill(~mask, 0)
        bad_start = ~allowed_start[tag_ids[:, 0]]
        bad_step = ~allowed[tag_ids[:, :-1], tag_ids[:, 1:]] & mask[:, 1:]
        invalid = bad_start | bad_step.any(dim=1)
        if invalid.any():
            end = torch.zeros(log_probs.size(-1))
            tag_ids[invalid] = viterbi(
                log_probs[invalid], mask[invalid], penalties(allowed_start), penalties(allowed), end
            )
        probabilities = log_probs.exp()
    return tag_ids, probabilities.gather(2, tag_ids.unsqueeze(2)).squeeze(2)
