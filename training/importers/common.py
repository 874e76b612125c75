"""What every format reader produces: `Sentence`s (words as the service splits them, BIO tags, an
optional intent) or `Invalid` items naming `file:line` and what is wrong, plus the `Notes` that end up
in `import.json`."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from models.spans import bio_to_spans, split_tag
from models.text import Word, tokenize

# The service's default limits (`serving.settings.Settings.max_words` / `max_chars`): an example the
# service would refuse to tag is not trained on either. (training must not import serving; a test
# checks that the two stay equal.)
MAX_WORDS = 200
MAX_CHARS = 1000

_SPACE = re.compile(r"\s+")


class ItemError(ValueError):
    """One example that cannot be imported; the message says what is wrong (the caller adds file:line).
    `word` is the 1-based position of the word at fault, where one is."""

    def __init__(self, message: str, word: int | None = None) -> None:
        super().__init__(message)
        self.word = word


class Sentence(NamedTuple):
    """One imported example: `words` are the vocabulary keys written to `seq.in`, `tags` BIO."""

    where: str  # "path:line"
    words: tuple[str, ...]
    tags: tuple[str, ...]
    intent: str | None


class Invalid(NamedTuple):
    """An example that was not imported, and why."""

    where: str
    why: str


Item = Sentence | Invalid


@dataclass
class Notes:
    """What a reader saw besides the examples, for `import.json`."""

    ignored: Counter = field(default_factory=Counter)  # feature -> how many times it was met and left out
    synonyms: dict[str, dict[str, str]] = field(default_factory=dict)  # slot type or "*" -> written form -> canonical
    synonym_conflicts: list[str] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)  # label with whitespace -> the name used
    tag_schemes: dict[str, str] = field(default_factory=dict)  # file -> tag scheme found there
    tokens_dropped: int = 0  # tokens holding no word (punctuation only)
    tokens_split: int = 0  # tokens the service splits into several words

    def add_synonym(self, slot_type: str, written: str, canonical: str, where: str) -> None:
        table = self.synonyms.setdefault(slot_type, {})
        key = written.strip().lower()
        if not key:
            return
        known = table.get(key)
        if known is None:
            table[key] = canonical
        elif known != canonical:
            self.synonym_conflicts.append(f"{where}: {key!r} ({slot_type}) -> {canonical!r}; kept {known!r}")


def clean_name(name: object, what: str, notes: Notes) -> str:
    """A slot type or intent as written to the seq files: a non-empty string; whitespace runs become `_`
    (the seq files are whitespace-separated) and the renaming is noted."""
    if not isinstance(name, str) or not name.strip():
        raise ItemError(f"{what} must be a non-empty string, got {name!r}")
    cleaned = _SPACE.sub("_", name.strip())
    if cleaned != name:
        notes.renamed[name] = cleaned
    return cleaned


def check_limits(text: str, words: Sequence[object]) -> None:
    """No words, or more words/characters than the service accepts -> `ItemError`."""
    if not words:
        raise ItemError("the text holds no words" if text.strip() else "empty text")
    if len(text) > MAX_CHARS:
        raise ItemError(f"{len(text)} characters; the service accepts at most {MAX_CHARS}")
    if len(words) > MAX_WORDS:
        raise ItemError(f"{len(words)} words; the service accepts at most {MAX_WORDS}")


def _key(word: Word) -> str:
    if any(char.isspace() for char in word.key):
        raise ItemError(f"word {word.text!r} holds whitespace once normalised ({word.key!r})")
    return word.key


class CharSpan(NamedTuple):
    """An entity by character offsets `text[start:end]` (end-exclusive)."""

    start: int
    end: int
    label: str


def sentence_from_text(where: str, text: str, spans: Sequence[CharSpan], intent: str | None) -> Sentence:
    """Split `text` with the service's tokenizer and tag its words from character spans.

    An entity may include the spaces or punctuation next to its words (they belong to no word); an
    edge inside a word, two entities on one word, or an entity covering no word is an `ItemError`."""
    if not isinstance(text, str):
        raise ItemError(f"text must be a string, got {type(text).__name__}")
    words = tokenize(text)
    check_limits(text, words)
    tags = ["O"] * len(words)
    owner: list[CharSpan | None] = [None] * len(words)
    for span in spans:
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in (span.start, span.end)):
            raise ItemError(f"entity {span.label!r}: start and end must be integers, got {span.start!r}, {span.end!r}")
    for span in sorted(spans, key=lambda s: (s.start, s.end)):
        if not 0 <= span.start < span.end <= len(text):
            raise ItemError(
                f"entity {span.label!r} at {span.start}-{span.end} is outside the text (0-{len(text)}) or empty"
            )
        shown = text[span.start : span.end]
        covered = [i for i, word in enumerate(words) if word.start < span.end and word.end > span.start]
        if not covered:
            raise ItemError(f"entity {span.label!r} {shown!r} at {span.start}-{span.end} holds no word")
        first, last = words[covered[0]], words[covered[-1]]
        if first.start < span.start:
            raise ItemError(
                f"entity {span.label!r} {shown!r} starts at {span.start}, inside the word {first.text!r} "
                f"({first.start}-{first.end}); entity edges must be word edges"
            )
        if last.end > span.end:
            raise ItemError(
                f"entity {span.label!r} {shown!r} ends at {span.end}, inside the word {last.text!r} "
                f"({last.start}-{last.end}); entity edges must be word edges"
            )
        for i in covered:
            other = owner[i]
            if other is not None:
                raise ItemError(
                    f"entities {other.label!r} at {other.start}-{other.end} and {span.label!r} at "
                    f"{span.start}-{span.end} overlap (on the word {words[i].text!r})"
                )
            owner[i] = span
            tags[i] = ("B-" if i == covered[0] else "I-") + span.label
    return Sentence(where, tuple(_key(word) for word in words), tuple(tags), intent)


def sentence_from_tokens(
    where: str, tokens: Sequence[str], bio_tags: Sequence[str], intent: str | None, notes: Notes
) -> Sentence:
    """Pre-split tokens with BIO tags -> the words the service makes of the same tokens joined by spaces.

    A token holding only punctuation makes no word and is dropped; a token the service splits (`a,b`)
    gives several words, the later ones continuing the token's entity."""
    words: list[str] = []
    tags: list[str] = []
    for token, tag in zip(tokens, bio_tags, strict=True):
        pieces = tokenize(token)
        notes.tokens_dropped += not pieces
        notes.tokens_split += len(pieces) > 1
        prefix, label = split_tag(tag)
        for index, piece in enumerate(pieces):
            words.append(_key(piece))
            tags.append(tag if index == 0 or prefix == "O" else f"I-{label}")
    text = " ".join(tokens)
    check_limits(text, words)
    return Sentence(where, tuple(words), tuple(repair_starts(tags)), intent)


def repair_starts(tags: Sequence[str]) -> list[str]:
    """`I-x` that opens a chunk (after `O`, another type, or at the start) becomes `B-x`; the chunks
    are unchanged under conlleval's rules, only written as BIO (IOB2)."""
    repaired = list(tags)
    previous = ""
    for i, tag in enumerate(tags):
        prefix, label = split_tag(tag)
        if prefix == "I" and previous != label:
            repaired[i] = f"B-{label}"
        previous = label
    return repaired


def char_spans(text: str, tags: Sequence[str]) -> list[CharSpan]:
    """BIO tags of `tokenize(text)`'s words -> entities by character offsets into `text` (the inverse
    of `sentence_from_text` for entities whose edges are word edges)."""
    words = tokenize(text)
    if len(words) != len(tags):
        raise ValueError(f"{len(tags)} tags for {len(words)} words")
    return [CharSpan(words[s.start].start, words[s.end - 1].end, s.label) for s in bio_to_spans(tags)]
