"""Read ATIS-style splits (`seq.in`, `seq.out`, `label`), validate them, and batch them; write and read
conlleval input files (`predictions.txt`).

Every problem in the data is reported as a `DataError` naming the file and line. A split without a
`label` file has no intents (entity-only data): its examples carry `intent=None`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch

from models.loss import IGNORE_INDEX
from models.spans import is_valid_tag
from models.vocab import Vocabulary, encode_characters, pad_characters

SPLITS = ("train", "valid", "test")
FILES = ("seq.in", "seq.out", "label")


class DataError(Exception):
    """Bad or missing data; the message starts with `path:line` where a line is at fault."""


class Example(NamedTuple):
    """One utterance. A NamedTuple, not a frozen dataclass: Lightning rebuilds batch contents when
    moving them to a device, and it refuses frozen dataclasses."""

    words: tuple[str, ...]
    tags: tuple[str, ...]
    intent: str | None


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file (a byte-order mark is dropped); `DataError` naming file:line
    for bytes that are not UTF-8."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 (byte 0x{raw[error.start]:02x})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start a new one
    return [line.rstrip("\r") for line in lines]


def read_split(data_dir: str | Path, split: str) -> list[Example]:
    """Examples of one split, e.g. `read_split("data/atis", "train")`."""
    split_dir = Path(data_dir) / split
    if not split_dir.is_dir():
        raise DataError(f"{split_dir}: split {split!r} not found (expected {split_dir}/{{seq.in,seq.out,label}})")
    words_path, tags_path, label_path = (split_dir / name for name in FILES)
    has_intents = label_path.exists() or not (words_path.is_file() and tags_path.is_file())
    paths = (words_path, tags_path, label_path) if has_intents else (words_path, tags_path)
    all_lines = [read_lines(p) for p in paths]
    word_lines, tag_lines = all_lines[:2]
    label_lines = all_lines[2] if has_intents else [None] * len(word_lines)
    counts = {path: len(lines) for path, lines in zip(paths, all_lines)}
    for path, lines in zip(paths, all_lines, strict=True):
        # before comparing counts, so that a stray blank line is reported where it is
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                raise DataError(f"{path}:{number}: empty line")
    if len(set(counts.values())) != 1:
        detail = ", ".join(f"{p.name}: {n}" for p, n in counts.items())
        shortest, longest = min(counts.values()), max(counts, key=counts.get)
        raise DataError(
            f"{longest}:{shortest + 1}: the files have different line counts ({detail}); "
            f"this line has no counterpart in the shorter file(s)"
        )
    examples = []
    for number, (word_line, tag_line, label_line) in enumerate(zip(word_lines, tag_lines, label_lines), start=1):
        words, tags = word_line.split(), tag_line.split()
        intent = label_line.strip() if label_line is not None else None
        if len(words) != len(tags):
            raise DataError(f"{tags_path}:{number}: {len(tags)} tags for {len(words)} words")
        for position, tag in enumerate(tags, start=1):
            if not is_valid_tag(tag):
                raise DataError(f"{tags_path}:{number}: tag {position} {tag!r} is not O, B-<type> or I-<type>")
        if label_line is not None and len(label_line.split()) != 1:
            raise DataError(f"{label_path}:{number}: expected one intent, got {label_line.strip()!r}")
        examples.append(Example(tuple(words), tuple(tags), intent))
    return examples


def read_utterances(path: str | Path) -> list[list[str]]:
    """Raw utterances, one a line (blank lines skipped), split on whitespace."""
    return [line.split() for line in read_lines(Path(path)) if line.strip()]


def label_list(values: Sequence[str], first: str | None = None) -> list[str]:
    """Sorted distinct labels, with `first` (e.g. `O`) at index 0 when given."""
    distinct = sorted(set(values) - {first})
    return [first, *distinct] if first is not None else distinct


@dataclass(frozen=True)
class EncodedExample:
    token_ids: list[int]
    tag_ids: list[int]
    intent_id: int
    example: Example
    char_ids: list[list[int]] | None = None


def encode(
    example: Example,
    vocabulary: Vocabulary,
    tag_index: dict[str, int],
    intent_index: dict[str, int],
    characters: Vocabulary | None = None,
) -> EncodedExample:
    """Ids for one example (and its words' character ids when `characters` is given); tags and
    intents unseen in training get `IGNORE_INDEX` (no loss; metrics still compare the gold strings,
    so they count as errors)."""
    return EncodedExample(
        token_ids=vocabulary.encode(example.words),
        tag_ids=[tag_index.get(tag, IGNORE_INDEX) for tag in example.tags],
        intent_id=intent_index.get(example.intent, IGNORE_INDEX),
        example=example,
        char_ids=encode_characters(example.words, characters) if characters is not None else None,
    )


def collate(batch: Sequence[EncodedExample]) -> dict:
    """Right-pad a batch: token_ids/tag_ids/mask (B, T), intent_ids (B,), char_ids (B, T, C) or None,
    plus the raw examples."""
    max_len = max(len(item.token_ids) for item in batch)
    token_ids = torch.full((len(batch), max_len), Vocabulary.pad_id, dtype=torch.long)
    tag_ids = torch.full((len(batch), max_len), IGNORE_INDEX, dtype=torch.long)
    for row, item in enumerate(batch):
        token_ids[row, : len(item.token_ids)] = torch.tensor(item.token_ids)
        tag_ids[row, : len(item.tag_ids)] = torch.tensor(item.tag_ids)
    lengths = torch.tensor([len(item.token_ids) for item in batch])
    return {
        "token_ids": token_ids,
        "tag_ids": tag_ids,
        "mask": torch.arange(max_len).unsqueeze(0) < lengths.unsqueeze(1),
        "intent_ids": torch.tensor([item.intent_id for item in batch]),
        "char_ids": pad_characters([item.char_ids for item in batch]) if batch[0].char_ids is not None else None,
        "examples": [item.example for item in batch],
    }


def write_conlleval_file(path: Path, rows: list[tuple]) -> None:
    """conlleval input: `word gold predicted` per line, a blank line between sentences."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for words, gold, predicted in rows:
            for word, gold_tag, predicted_tag in zip(words, gold, predicted):
                handle.write(f"{word} {gold_tag} {predicted_tag}\n")
            handle.write("\n")


def read_conlleval_file(path: Path) -> list[tuple[list[str], list[str], list[str]]]:
    """(words, gold tags, predicted tags) per sentence of a file `write_conlleval_file` wrote; a
    `DataError` naming file and line for anything else."""
    rows: list[tuple[list[str], list[str], list[str]]] = []
    current: tuple[list[str], list[str], list[str]] = ([], [], [])
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            if current[0]:
                rows.append(current)
            current = ([], [], [])
            continue
        fields = line.split(" ")
        if len(fields) != 3:
            raise DataError(f"{path}:{number}: expected 'word gold predicted', got {line!r}")
        for column, value in zip(current, fields, strict=True):
            column.append(value)
    if current[0]:
        rows.append(current)
    return rows
