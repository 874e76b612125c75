"""CoNLL-style columns: one token a line, the first column the word and the last the tag (tabs or
spaces between), a blank line after each sentence, `-DOCSTART-` lines ignored. Before a sentence,
lines starting with `# ` are comments, and `# intent: NAME` gives the sentence's intent. A file whose
first column holds only prefixed tags and whose last does not is read tag first."""

from __future__ import annotations

import re
from pathlib import Path

from training.data import read_lines
from training.importers.common import (
    Invalid,
    Item,
    ItemError,
    Notes,
    clean_name,
    sentence_from_tokens,
)
from training.importers.tags import find_scheme, to_bio

_INTENT = re.compile(r"^#\s*intent\s*[:=]\s*(.*?)\s*$")
_PREFIXED_TAG = re.compile(r"^(O|[BIESLUM]-\S+)$")


class _Raw:
    """A sentence as read: tokens and tags with their line numbers."""

    def __init__(self, line: int, intent: str | None) -> None:
        self.line = line
        self.intent = intent
        self.tokens: list[str] = []
        self.tags: list[str] = []
        self.lines: list[int] = []
        self.error: Invalid | None = None


def _sentences(path: Path) -> list[_Raw]:
    sentences: list[_Raw] = []
    current: _Raw | None = None
    intent: tuple[int, str] | None = None
    for number, line in enumerate(read_lines(path), start=1):
        fields = line.split()
        if not fields:
            if current is not None:
                sentences.append(current)
            current, intent = None, None
            continue
        if current is None and line.lstrip().startswith("#") and (line.strip() == "#" or line.lstrip()[1:2] == " "):
            match = _INTENT.match(line.strip())
            if match:
                intent = (number, match.group(1))
            continue
        if fields[0] == "-DOCSTART-":
            continue
        if current is None:
            current = _Raw(intent[0] if intent else number, intent[1] if intent else None)
        if len(fields) < 2:
            current.error = current.error or Invalid(
                f"{path}:{number}", f"expected a word and a tag, got {line.strip()!r}"
            )
            continue
        current.tokens.append(fields[0])
        current.tags.append(fields[-1])
        current.lines.append(number)
    if current is not None:
        sentences.append(current)
    return sentences


def _tags_in_first_column(sentences: list[_Raw]) -> bool:
    """True for files written tag first (`B-city<TAB>boston`, as some public corpora are): every first
    column is a prefixed tag or `O` while the last columns are not all tags."""
    firsts = [token for raw in sentences for token in raw.tokens]
    lasts = [tag for raw in sentences for tag in raw.tags]
    return (
        bool(firsts)
        and all(_PREFIXED_TAG.match(first) for first in firsts)
        and not all(_PREFIXED_TAG.match(last) for last in lasts)
    )


def read_conll(path: Path, notes: Notes) -> list[Item]:
    """The sentences of one CoNLL file, converted to BIO and to the service's words."""
    sentences = _sentences(path)
    tags_first = _tags_in_first_column(sentences)
    if tags_first:
        for raw in sentences:
            raw.tokens, raw.tags = raw.tags, raw.tokens
    scheme = find_scheme(
        (f"{path}:{line}", tag) for raw in sentences for line, tag in zip(raw.lines, raw.tags) if raw.error is None
    )
    items: list[Item] = []
    changed = False
    for raw in sentences:
        where = f"{path}:{raw.line}"
        if raw.error is not None:
            items.append(raw.error)
            continue
        try:
            bio = to_bio(raw.tags, scheme)
        except ItemError as error:
            line = raw.lines[error.word - 1] if error.word else raw.line
            items.append(Invalid(f"{path}:{line}", str(error)))
            continue
        changed = changed or (scheme == "bio" and bio != raw.tags)
        try:
            intent = clean_name(raw.intent, "intent", notes) if raw.intent is not None else None
            items.append(sentence_from_tokens(where, raw.tokens, bio, intent, notes))
        except ItemError as error:
            items.append(Invalid(where, str(error)))
    notes.tag_schemes[str(path)] = ("iob1" if changed else scheme) + (
        ", tags in the first column" if tags_first else ""
    )
    return items
