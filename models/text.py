"""Raw text -> words with character offsets: the one tokenizer of the service, the terminal tool and
any importer of new data, so that every path splits text the same way (docs/serving.md, "Words").

A word is a run of characters between whitespace, control characters and the punctuation that never
sits inside an ATIS word; punctuation and format characters are stripped from its edges, except the
final `.` of a known abbreviation. Its vocabulary key is NFKC-normalised with plain apostrophes.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import NamedTuple

# Characters that always end a word: whitespace (any Unicode space), control characters, and
# punctuation that never sits inside an ATIS word.
_WORD_RUN = re.compile(r"[^\s\x00-\x1f\x7f-\x9f,;!?\"()\[\]{}<>«»“”„‟¿¡…]+")
_ASCII_EDGE = "".join(chr(c) for c in range(128) if unicodedata.category(chr(c)).startswith("P"))
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "`": "'", "´": "'", "ʼ": "'"})

# Words that keep their final `.`: the abbreviations the ATIS data writes as one word (`st.`) and a
# few more of the same kind. A word missing from the checkpoint's vocabulary still maps to `<unk>`.
ABBREVIATIONS = frozenset({"st.", "mt.", "ft.", "dr.", "mr.", "mrs.", "ms.", "jr.", "sr.", "a.m.", "p.m.", "u.s."})


class InputError(ValueError):
    """Input the model cannot tag (no words, too many words, a bad token); the message says why."""


class Word(NamedTuple):
    """One word of the input: its characters `text[start:end]` and the key looked up in the vocabulary.
    (A tuple: thousands are made per second, and tuples are the cheapest to build.)"""

    text: str
    start: int
    end: int
    key: str


def _is_edge(char: str) -> bool:
    category = unicodedata.category(char)
    return category[0] == "P" or category == "Cf"


# Words longer than this are longer than any word of the training data. Their key is built from
# their first LONGEST_KEY characters and ends in CUT, which no vocabulary word holds, so it still
# maps to `<unk>`; the character features read only the first 30 characters anyway. This bounds the
# cost of NFKC, which can take 15 ms for one 1,000-character word (U+FDFA becomes 18 characters).
LONGEST_KEY = 64
CUT = "\x00"


def lookup_key(word: str) -> str:
    """The form of a word looked up in the vocabulary (which then lower-cases it and maps digits to 0):
    NFKC-normalised (full-width letters, ligatures) with typographic apostrophes made plain."""
    if len(word) > LONGEST_KEY:
        return lookup_key(word[:LONGEST_KEY]) + CUT
    if not word.isascii():
        word = unicodedata.normalize("NFKC", word).translate(_APOSTROPHES)
    return word


def tokenize(text: str) -> list[Word]:
    """Split raw text into words with end-exclusive character offsets into `text` (see docs/serving.md)."""
    words: list[Word] = []
    append = words.append
    for match in _WORD_RUN.finditer(text):
        run = match.group()
        if run.isascii():
            if run[0] not in _ASCII_EDGE and run[-1] not in _ASCII_EDGE:  # the common case: a plain word
                append(Word(run, match.start(), match.end(), run))
                continue
            core = run.strip(_ASCII_EDGE)
            if not core:
                continue
            left = run.find(core)
            right = left + len(core)
        else:
            left, right = 0, len(run)
            while left < right and _is_edge(run[left]):
                left += 1
            while right > left and _is_edge(run[right - 1]):
                right -= 1
            if left == right:
                continue
        if right < len(run) and run[right] == "." and run[left : right + 1].lower() in ABBREVIATIONS:
            right += 1
        start = match.start() + left
        word = run[left:right]
        append(Word(word, start, start + len(word), lookup_key(word)))
    return words


def _invisible(char: str) -> bool:
    """Whitespace, control and format characters: what text splits on or strips from a word's edges."""
    return char.isspace() or unicodedata.category(char) in ("Cc", "Cf")


def words_from_tokens(tokens: Sequence[str]) -> tuple[str, list[Word]]:
    """Pre-split tokens -> (the tokens joined by single spaces, their words). Tokens are taken as they
    are (no punctuation stripping); only the vocabulary key is normalised. A token follows the rule a
    word of text follows: no whitespace or control character inside, and at least one visible
    character (not only format characters such as U+200B)."""
    words: list[Word] = []
    position = 0
    for index, token in enumerate(tokens):
        if not (token and token.isascii() and token.isprintable() and " " not in token):  # a plain ASCII word passes
            if all(_invisible(char) for char in token):
                raise InputError(
                    f"tokens[{index}] is empty or invisible; every token must hold at least one visible character"
                )
            if any(char.isspace() or unicodedata.category(char) == "Cc" for char in token):
                raise InputError(f"tokens[{index}] contains whitespace or a control character; send one word per token")
        words.append(Word(token, position, position + len(token), lookup_key(token)))
        position += len(token) + 1
    return " ".join(tokens), words
