"""BIO-valid decoding: the BIO transition constraints, Viterbi under them, and a linear-chain CRF.

Every tag sequence the tagger returns is BIO-valid: `I-x` only directly after `B-x` or `I-x`, never
first. Two decoders give that guarantee:

- `softmax` (the lecture's per-word cross-entropy): Viterbi over the words' log-probabilities with
  the invalid transitions forbidden, i.e. the most probable valid sequence under independent words.
- `crf`: a linear-chain CRF over the words' scores (learned transition, start and end scores) whose
  invalid transitions carry a fixed penalty of `FORBIDDEN` in training and decoding alike, so
  Viterbi never picks one.

All functions take right-padded batches: (B, T, K) scores and a (B, T) bool mask whose real words
come first. Pads never change a real word's result.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

# A finite stand-in for -inf: large enough that no path through a forbidden transition can win,
# small enough that log-sum-exp and gradients stay finite.
FORBIDDEN = -1.0e4


def bio_constraints(tags: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(K,) bool: may a sentence start with tag k; (K, K) bool [previous, next]: may next follow previous.

    `I-x` may start nothing and may only follow `B-x` or `I-x`; every other transition is allowed.
    """
    size = len(tags)
    start = torch.ones(size, dtype=torch.bool)
    transitions = torch.ones(size, size, dtype=torch.bool)
    for j, tag in enumerate(tags):
        if not tag.startswith("I-"):
            continue
        start[j] = False
        for i, previous in enumerate(tags):
            transitions[i, j] = previous[:2] in ("B-", "I-") and previous[2:] == tag[2:]
    return start, transitions


def penalties(allowed: torch.Tensor) -> torch.Tensor:
    """0 where allowed, `FORBIDDEN` where not."""
    return torch.where(allowed, 0.0, FORBIDDEN)


def viterbi(
    scores: torch.Tensor,
    mask: torch.Tensor,
    start: torch.Tensor,
    transitions: torch.Tensor,
    end: torch.Tensor,
) -> torch.Tensor:
    """Best tag ids (B, T) for per-word `scores` (B, T, K) plus `start` (K,), `transitions` (K, K)
    [previous, next] and `end` (K,) scores. Pads get tag 0.

    The forward sweep keeps only the best score of each tag per step (a max over the last,
    contiguous axis, ~3x faster on CPU than a max that also returns indices); the backtrace then
    recomputes one arg-max per word for the tag already chosen after it.
    """
    batch, steps, _ = scores.shape
    incoming = transitions.t().contiguous()  # [next, previous]
    best = start + scores[:, 0]  # (B, K): best score of a path ending in each tag
    history = [best]
    for t in range(1, steps):
        step_best = (best.unsqueeze(1) + incoming).amax(dim=2) + scores[:, t]
        # On pads the path stays where it is, so backtracking passes through them unchanged.
        best = torch.where(mask[:, t].unsqueeze(1), step_best, best)
        history.append(best)
    tag = (best + end).argmax(dim=1)  # (B,)
    path = [tag]
    for t in range(steps - 1, 0, -1):
        previous = (history[t - 1] + incoming[tag]).argmax(dim=1)
        tag = torch.where(mask[:, t], previous, tag)
        path.append(tag)
    path.reverse()
    return torch.stack(path, dim=1).masked_fill(~mask, 0)


def _log_matmul(log_values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """log(exp(log_values) @ weights) for (B, K) log-values and (K, K) non-negative weights, scaled
    so nothing overflows: one matrix product instead of a log-sum-exp over a (B, K, K) tensor, which
    makes the CRF several times faster on CPU. Underflow to 0 is clamped (a path that improbable
    does not matter)."""
    shift = log_values.amax(dim=1, keepdim=True)
    product = torch.exp(log_values - shift) @ weights
    return torch.log(product.clamp_min(torch.finfo(product.dtype).tiny)) + shift


class LinearChainCRF(nn.Module):
    """Transition, start and end scores over K tags, with the BIO constraints built in.

    `allowed_start`/`allowed_transitions` (from `bio_constraints`) are buffers that are not saved:
    they are rebuilt from the tag list, which the checkpoint carries.
    """

    def __init__(self, num_tags: int) -> None:
        super().__init__()
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))

    def constrained(self, allowed_start: torch.Tensor, allowed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.start + penalties(allowed_start), self.transitions + penalties(allowed)

    def log_partition(
        self, scores: torch.Tensor, mask: torch.Tensor, start: torch.Tensor, transitions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """log Z (B,) and the forward log-scores alpha (B, T, K)."""
        weights = transitions.exp()  # forbidden transitions: exactly 0
        alpha = start + scores[:, 0]
        alphas = [alpha]
        for t in range(1, scores.size(1)):
            step = _log_matmul(alpha, weights) + scores[:, t]
            alpha = torch.where(mask[:, t].unsqueeze(1), step, alpha)
            alphas.append(alpha)
        return torch.logsumexp(alpha + self.end, dim=1), torch.stack(alphas, dim=1)

    def negative_log_likelihood(
        self,
        scores: torch.Tensor,
        tags: torch.Tensor,
        mask: torch.Tensor,
        allowed_start: torch.Tensor,
        allowed: torch.Tensor,
    ) -> torch.Tensor:
        """-log p(tags | words) per sentence, (B,). `tags` must be valid ids on real words."""
        start, transitions = self.constrained(allowed_start, allowed)
        log_z, _ = self.log_partition(scores, mask, start, transitions)
        tags = tags.masked_fill(~mask, 0)
        real = mask.float()
        emitted = (scores.gather(2, tags.unsqueeze(2)).squeeze(2) * real).sum(dim=1)
        moved = (transitions[tags[:, :-1], tags[:, 1:]] * real[:, 1:]).sum(dim=1)
        last = tags.gather(1, (mask.sum(dim=1, keepdim=True) - 1).clamp(min=0)).squeeze(1)
        gold = start[tags[:, 0]] + emitted + moved + self.end[last]
        return log_z - gold

    def marginals(
        self, scores: torch.Tensor, mask: torch.Tensor, allowed_start: torch.Tensor, allowed: torch.Tensor
    ) -> torch.Tensor:
        """p(tag_t = k | words) for every word, (B, T, K), by forward-backward."""
        start, transitions = self.constrained(allowed_start, allowed)
        log_z, alphas = self.log_partition(scores, mask, start, transitions)
        weights = transitions.exp().t()
        beta = self.end.expand(scores.size(0), -1)
        betas = [beta]
        for t in range(scores.size(1) - 2, -1, -1):
            step = _log_matmul(scores[:, t + 1] + beta, weights)
            beta = torch.where(mask[:, t + 1].unsqueeze(1), step, beta)
            betas.append(beta)
        betas.reverse()
        return torch.exp(alphas + torch.stack(betas, dim=1) - log_z[:, None, None])

    def decode(
        self, scores: torch.Tensor, mask: torch.Tensor, allowed_start: torch.Tensor, allowed: torch.Tensor
    ) -> torch.Tensor:
        """Best BIO-valid tag ids (B, T); pads get tag 0."""
        start, transitions = self.constrained(allowed_start, allowed)
        return viterbi(scores, mask, start, transitions, self.end)
