"""Tag schemes of token-level data -> BIO (IOB2).

One file uses one scheme, found from all its tags:
- `bio`: only `B-`/`I-` prefixes. Covers IOB2 and IOB1 (where `I-x` opens a chunk and `B-x` only
  separates two adjacent chunks of one type); `I-x` opening a chunk becomes `B-x`.
- `bioes`: any `E-`/`S-` (BIOES) or `L-`/`U-` (BILOU) prefix (`M-` is read as `I-`). `S-`/`U-`
  become `B-`, `E-`/`L-`/`M-` become `I-`; an inside or end tag that does not continue an open chunk
  of its type cannot be converted.
- `bare`: no prefixes, just the type (IO tagging); adjacent words of one type form one chunk.
`O` is outside in every scheme.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Literal

from training.importers.common import ItemError, repair_starts

Scheme = Literal["bio", "bioes", "bare"]

_PREFIXED = re.compile(r"^([BIESLUM])-(.*)$")
_BIOES_ONLY = frozenset("ESLUM")


class SchemeError(ValueError):
    """The tags of one file mix schemes; the message names the two places that disagree."""


def find_scheme(tags: Iterable[tuple[str, str]]) -> Scheme:
    """The scheme of `(where, tag)` pairs from one file; mixing prefixed and bare tags -> `SchemeError`."""
    first_prefixed: tuple[str, str] | None = None
    first_bare: tuple[str, str] | None = None
    bioes = False
    for where, tag in tags:
        if tag == "O":
            continue
        match = _PREFIXED.match(tag)
        if match:
            first_prefixed = first_prefixed or (where, tag)
            bioes = bioes or match.group(1) in _BIOES_ONLY
        else:
            first_bare = first_bare or (where, tag)
    if first_prefixed and first_bare:
        raise SchemeError(
            f"{first_bare[0]}: tag {first_bare[1]!r} has no B-/I-/E-/S- prefix, but {first_prefixed[0]} has "
            f"{first_prefixed[1]!r}; one file must use one tag scheme (BIO, IOB1, BIOES, BILOU or bare types)"
        )
    if first_bare:
        return "bare"
    return "bioes" if bioes else "bio"


def to_bio(tags: Sequence[str], scheme: Scheme) -> list[str]:
    """One sentence's tags in `scheme` -> BIO; a tag that cannot be converted -> `ItemError`."""
    if scheme == "bare":
        bio, previous = [], "O"
        for tag in tags:
            bio.append("O" if tag == "O" else ("I-" if tag == previous else "B-") + tag)
            previous = tag
        return bio
    bio = []
    open_type: str | None = None  # the type of the chunk an inside/end tag may continue
    for position, tag in enumerate(tags, start=1):
        if tag == "O":
            bio.append("O")
            open_type = None
            continue
        match = _PREFIXED.match(tag)
        if not match or not match.group(2):
            raise ItemError(
                f"word {position}: tag {tag!r} is not O or <prefix>-<type> like the rest of the file", position
            )
        prefix, label = match.groups()
        if scheme == "bio":
            if prefix not in "BI":
                raise ItemError(f"word {position}: tag {tag!r} in a file of B-/I- tags", position)
            bio.append(tag)
            continue
        if prefix in "IMEL" and open_type != label:
            opened = f"a {open_type} chunk" if open_type else "no chunk"
            raise ItemError(
                f"word {position}: {tag!r} must continue a {label} chunk (BIOES/BILOU), but {opened} is open",
                position,
            )
        bio.append(("B-" if prefix in "BSU" else "I-") + label)
        open_type = label if prefix in "BIM" else None
    return repair_starts(bio) if scheme == "bio" else bio
