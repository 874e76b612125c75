"""BIO tags <-> spans under conlleval's chunking rules, and tag validation.

conlleval starts a new chunk at `B-x`, at `I-x` after `O`, and at `I-x` after a tag of another
type; a chunk ends where the next one starts or at `O`. A predicted chunk counts as correct only
when its start, end and type all match a gold chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple


class Span(NamedTuple):
    """A chunk of words `[start, end)` (word indices, end-exclusive) of one slot type."""

    label: str
    start: int
    end: int


def is_valid_tag(tag: str) -> bool:
    """True for `O`, `B-x` and `I-x` with a non-empty type `x`."""
    return tag == "O" or (len(tag) > 2 and tag[:2] in ("B-", "I-"))


def split_tag(tag: str) -> tuple[str, str]:
    """`B-city` -> (`B`, `city`); `O` -> (`O`, ``)."""
    if tag == "O":
        return "O", ""
    return tag[0], tag[2:]


def bio_to_spans(tags: Sequence[str]) -> list[Span]:
    """Chunks of a BIO sequence, following conlleval (an orphan `I-x` opens a chunk)."""
    spans: list[Span] = []
    open_label: str | None = None
    open_start = 0
    for i, tag in enumerate(tags):
        prefix, label = split_tag(tag)
        starts_new = prefix == "B" or (prefix == "I" and label != open_label)
        if open_label is not None and (prefix == "O" or starts_new):
            spans.append(Span(open_label, open_start, i))
            open_label = None
        if prefix != "O" and (starts_new or open_label is None):
            open_label, open_start = label, i
    if open_label is not None:
        spans.append(Span(open_label, open_start, len(tags)))
    return spans


def count_span_matches(predicted: Sequence[str], gold: Sequence[str]) -> tuple[int, int, int]:
    """(correct, predicted, gold) chunk counts of one sentence."""
    predicted_spans = set(bio_to_spans(predicted))
    gold_spans = set(bio_to_spans(gold))
    return len(predicted_spans & gold_spans), len(predicted_spans), len(gold_spans)
