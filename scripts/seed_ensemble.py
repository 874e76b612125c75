"""Seed ensembles: several checkpoints of one recipe (same data, tag list and intent list) tag a
sentence together. A measuring tool for `scripts/bench_ensemble.py`, not part of the installed
product: the service serves one checkpoint.

Each model gives, per word, a distribution over tags (softmax, or the CRF's marginals) and, per
sentence, one over intents; the ensemble averages them. Tags are then decoded from the averaged
distribution exactly as a single `softmax` model decodes its own: the most probable BIO-valid
sequence (constrained Viterbi over the log-probabilities), so the output stays BIO-valid. A single
tagger decodes as it always does (a CRF with its own Viterbi).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from models.checkpoint import LoadedTagger
from models.decoding import penalties, viterbi
from models.vocab import encode_characters, pad_characters, pad_token_ids


def encode_sentences(
    tagger: LoadedTagger, sentences: Sequence[Sequence[str]]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(B, T) word ids, (B, T) mask of real words and, for a model that reads characters,
    (B, T, C) character ids of already split sentences, in this tagger's own vocabulary."""
    token_ids, mask = pad_token_ids([tagger.vocabulary.encode(words) for words in sentences])
    char_ids = None
    if tagger.config.char_channels > 0 and tagger.characters is not None:
        char_ids = pad_characters([encode_characters(words, tagger.characters) for words in sentences])
    return token_ids, mask, char_ids


def check_compatible(taggers: Sequence[LoadedTagger]) -> None:
    """Raise ValueError unless every tagger has the first one's tag and intent lists."""
    if not taggers:
        raise ValueError("an ensemble needs at least one checkpoint")
    first = taggers[0]
    for tagger in taggers[1:]:
        if list(tagger.slot_tags) != list(first.slot_tags):
            raise ValueError(f"{tagger.path}: its slot tags differ from {first.path}'s")
        if list(tagger.intents) != list(first.intents):
            raise ValueError(f"{tagger.path}: its intents differ from {first.path}'s")


@torch.inference_mode()
def predict(
    taggers: Sequence[LoadedTagger], sentences: Sequence[Sequence[str]]
) -> tuple[list[list[str]], list[str | None]]:
    """BIO-valid tags per word and the intent per sentence (None without intent heads), from the
    averaged distributions of `taggers` (one tagger: a softmax model's own decoding)."""
    check_compatible(taggers)
    names, intent_names = taggers[0].slot_tags, taggers[0].intents
    if len(taggers) == 1:
        model = taggers[0].model
        token_ids, mask, char_ids = encode_sentences(taggers[0], sentences)
        output = model(token_ids, mask, char_ids)
        tag_ids = model.decode(output.tag_logits, mask)[0]
        intent_ids = None if output.intent_logits is None else output.intent_logits.argmax(dim=-1)
        return _named(tag_ids, mask, intent_ids, names, intent_names)
    tag_probabilities: torch.Tensor | None = None
    intent_probabilities: torch.Tensor | None = None
    mask = None
    for tagger in taggers:
        token_ids, mask, char_ids = encode_sentences(tagger, sentences)
        output = tagger.model(token_ids, mask, char_ids)
        tags = tagger.model.tag_distribution(output.tag_logits, mask)
        tag_probabilities = tags if tag_probabilities is None else tag_probabilities + tags
        if output.intent_logits is not None:
            intents = torch.softmax(output.intent_logits.float(), dim=-1)
            intent_probabilities = intents if intent_probabilities is None else intent_probabilities + intents
    assert tag_probabilities is not None and mask is not None
    model = taggers[0].model
    log_probabilities = (tag_probabilities / len(taggers)).clamp_min(1e-30).log()
    end = torch.zeros(log_probabilities.size(-1))
    tag_ids = viterbi(
        log_probabilities, mask, penalties(model.allowed_start), penalties(model.allowed_transitions), end
    )
    intent_ids = None if intent_probabilities is None else intent_probabilities.argmax(dim=-1)
    return _named(tag_ids, mask, intent_ids, names, intent_names)


def _named(
    tag_ids: torch.Tensor,
    mask: torch.Tensor,
    intent_ids: torch.Tensor | None,
    names: Sequence[str],
    intent_names: Sequence[str],
) -> tuple[list[list[str]], list[str | None]]:
    lengths = mask.sum(dim=1).tolist()
    tags = [[names[i] for i in row[:n]] for row, n in zip(tag_ids.tolist(), lengths, strict=True)]
    if intent_ids is None:
        return tags, [None] * len(tags)
    return tags, [intent_names[i] for i in intent_ids.tolist()]
