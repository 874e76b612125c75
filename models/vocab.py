"""Token normalisation and the `Vocabulary` that maps words to ids and back."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

import torch

PAD = "<pad>"
UNK = "<unk>"
_DIGIT = re.compile(r"\d")


def normalize_word(word: str) -> str:
    """Lower-case a word and map every digit to `0`, so `1000` and `2500` share one shape."""
    return _DIGIT.sub("0", word.lower())


class Vocabulary:
    """Token <-> id table with `<pad>` at id 0 and `<unk>` at id 1.

    It converts to and from a plain list of strings, which is how it travels in a checkpoint.
    """

    def __init__(self, tokens: Sequence[str]) -> None:
        if len(tokens) < 2 or tokens[0] != PAD or tokens[1] != UNK:
            raise ValueError(f"a vocabulary must start with {PAD!r}, {UNK!r}; got {list(tokens[:2])}")
        self.tokens: list[str] = list(tokens)
        self.index: dict[str, int] = {token: i for i, token in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise ValueError("a vocabulary must not repeat a token")

    pad_id = 0
    unk_id = 1

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], min_freq: int = 1) -> Vocabulary:
        """Vocabulary of the normalised words seen at least `min_freq` times, most frequent first."""
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {min_freq}")
        counts = Counter(normalize_word(word) for sentence in sentences for word in sentence)
        kept = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
        return cls([PAD, UNK, *kept])

    def encode(self, words: Sequence[str]) -> list[int]:
        """Ids of the normalised words; unknown words map to `<unk>`."""
        return [self.index.get(normalize_word(word), self.unk_id) for word in words]

    def to_list(self) -> list[str]:
        return list(self.tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, word: str) -> bool:
        return normalize_word(word) in self.index


# Longer words are cut to this many characters for the character features (no ATIS or SNIPS word
# is longer than 30 characters; the cut only bounds the cost of odd input).
MAX_WORD_CHARS = 30


def build_characters(sentences: Iterable[Sequence[str]], min_freq: int = 1) -> Vocabulary:
    """Vocabulary of the characters of the normalised words (the same normalisation as words)."""
    return Vocabulary.build((normalize_word(word) for sentence in sentences for word in sentence), min_freq=min_freq)


def encode_characters(words: Sequence[str], characters: Vocabulary) -> list[list[int]]:
    """Per word, the ids of its normalised characters (unknown ones -> `<unk>`)."""
    index, unk = characters.index, Vocabulary.unk_id
    return [[index.get(char, unk) for char in normalize_word(word)[:MAX_WORD_CHARS]] or [unk] for word in words]


def pad_token_ids(rows: Sequence[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sentence, word ids -> (B, T) ids right-padded with `<pad>` and the (B, T) mask of real words."""
    longest = max(len(ids) for ids in rows)
    token_ids = torch.tensor([ids + [Vocabulary.pad_id] * (longest - len(ids)) for ids in rows], dtype=torch.long)
    lengths = torch.tensor([len(ids) for ids in rows])
    return token_ids, torch.arange(longest).unsqueeze(0) < lengths.unsqueeze(1)


def pad_characters(rows: Sequence[list[list[int]]]) -> torch.Tensor:
    """Per sentence, per word character ids -> (B, T, C) right-padded with 0 on both axes."""
    steps = max(len(words) for words in rows)
    chars = max(len(word) for words in rows for word in words)
    blank = [0] * chars
    # one torch.tensor call over padded lists: a copy per word costs ~10 µs, 150 of them a millisecond
    return torch.tensor(
        [[word + blank[len(word) :] for word in words] + [blank] * (steps - len(words)) for words in rows],
        dtype=torch.long,
    )
