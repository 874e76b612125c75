"""The training loss, as the lecture defines it, plus the intent term."""

from __future__ import annotations

import torch
from torch.nn import functional as F

IGNORE_INDEX = -100  # pads and gold tags/intents unseen in training


def slot_loss(tag_logits: torch.Tensor, tag_ids: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each word's output against its label, summed over the words of each
    sentence (pads, marked `IGNORE_INDEX`, contribute nothing), then averaged over the sentences of
    the batch, so the learning rate does not depend on the batch size.

    (B, T, K) logits, (B, T) tag ids -> scalar.
    """
    per_word = F.cross_entropy(tag_logits.transpose(1, 2), tag_ids, ignore_index=IGNORE_INDEX, reduction="none")
    return per_word.sum(dim=1).mean()


def intent_loss(intent_logits: torch.Tensor, intent_ids: torch.Tensor) -> torch.Tensor:
    """Intent cross-entropy, the mean over the sentences whose intent was seen in training;
    (B, I) logits, (B,) ids -> scalar (0 when there is none)."""
    known = intent_ids != IGNORE_INDEX
    if not bool(known.any()):
        return intent_logits.sum() * 0.0
    per_sentence = F.cross_entropy(intent_logits, intent_ids, ignore_index=IGNORE_INDEX, reduction="none")
    return per_sentence[known].mean()
