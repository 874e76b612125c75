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


def intent_loss(
    intent_logits: torch.Tensor,
    intent_ids: torch.Tensor,
    class_weights: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Intent cross-entropy over the batch; (B, I) logits, (B,) ids -> scalar. The mean over the
    sentences, or with (I,) `class_weights` each sentence's term times its intent's weight, summed
    and divided by the number of sentences (not by the weights' sum, which would undo them within a
    batch of one intent). `label_smoothing` moves that share of each target onto all intents
    uniformly (Szegedy et al. 2016), so no intent is pushed to probability 1."""
    known = intent_ids != IGNORE_INDEX
    if not bool(known.any()):
        return intent_logits.sum() * 0.0
    per_sentence = F.cross_entropy(
        intent_logits, intent_ids, ignore_index=IGNORE_INDEX, reduction="none", label_smoothing=label_smoothing
    )
    if class_weights is not None:
        per_sentence = per_sentence * class_weights[intent_ids.clamp(min=0)]
    return per_sentence[known].mean()


def language_model_loss(
    next_word_logits: torch.Tensor,
    previous_word_logits: torch.Tensor | None,
    token_ids: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """The auxiliary language-model loss (Rei 2017), reduced like the slot loss: each word's
    cross-entropy summed over the sentence, averaged over the batch, for each direction, added.

    The forward scores at word t are scored against word t + 1 and the backward scores against word
    t - 1; past either edge of the sentence the target is the boundary class, id 0 (`<pad>`, never a
    word). Ids beyond the scores' width count as `<unk>` (id 1). (B, T, V) logits, (B, T) token ids
    as the data gave them (before word dropout), (B, T) mask of real words -> scalar.
    """
    vocab = next_word_logits.size(-1)
    targets = token_ids.masked_fill(token_ids >= vocab, 1).masked_fill(~mask, 0)
    boundary = targets.new_zeros(targets.size(0), 1)
    next_words = torch.cat([targets[:, 1:], boundary], dim=1).masked_fill(~mask, IGNORE_INDEX)
    loss = slot_loss(next_word_logits, next_words)
    if previous_word_logits is not None:
        previous_words = torch.cat([boundary, targets[:, :-1]], dim=1).masked_fill(~mask, IGNORE_INDEX)
        loss = loss + slot_loss(previous_word_logits, previous_words)
    return loss
