"""Mention replacement: training sentences with their slot values swapped for other values of the
same slot type (Dai & Adel 2020, "An analysis of simple data augmentation for named entity
recognition").

SNIPS's test set is full of names never seen in training (5.8 % of its words). Seeing each carrier
sentence with many different values teaches the tagger to read the slot from its context ("add ... to
my playlist") rather than from the value itself. Values come from the training split only.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from torch.utils.data import Dataset

from models.spans import bio_to_spans
from training.data import EncodedExample, Example


def slot_values(examples: Sequence[Example]) -> dict[str, list[tuple[str, ...]]]:
    """Every value each slot type takes in `examples` (repeats kept, so common values stay common)."""
    values: dict[str, list[tuple[str, ...]]] = {}
    for example in examples:
        for span in bio_to_spans(example.tags):
            values.setdefault(span.label, []).append(example.words[span.start : span.end])
    return values


def replace_mentions(
    example: Example, values: dict[str, list[tuple[str, ...]]], probability: float, rng: random.Random
) -> Example:
    """`example` with each slot value, independently with `probability`, replaced by a value of the
    same type drawn from `values`; tags are rewritten `B-x I-x ...` to the new length, the intent
    is kept."""
    words: list[str] = []
    tags: list[str] = []
    position = 0
    for span in bio_to_spans(example.tags):
        words += example.words[position : span.start]
        tags += example.tags[position : span.start]
        value = example.words[span.start : span.end]
        if span.label in values and rng.random() < probability:
            value = rng.choice(values[span.label])
        words += value
        tags += [f"B-{span.label}"] + [f"I-{span.label}"] * (len(value) - 1)
        position = span.end
    words += example.words[position:]
    tags += example.tags[position:]
    return Example(tuple(words), tuple(tags), example.intent)


class MentionReplacement(Dataset):
    """Training examples, each drawn with its slot values replaced afresh every time it is read.

    `encode` turns an `Example` into model inputs (the data module's vocabularies). The data module
    checks `probability` (in [0, 1]) when it is configured.
    """

    def __init__(self, examples: Sequence[Example], probability: float, encode) -> None:
        self.examples = list(examples)
        self.values = slot_values(self.examples)
        self.probability = probability
        self.encode = encode

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> EncodedExample:
        # Drawn from the global stream, which seed_everything seeds and DataLoader workers reseed
        # each their own way, so workers do not repeat each other's replacements.
        rng = random.Random(random.getrandbits(64))
        return self.encode(replace_mentions(self.examples[index], self.values, self.probability, rng))
