"""JSON lines, one example an object:
- `jsonl`: `{"text": ..., "intent": ... (optional), "entities": [{"start": s, "end": e, "label": L}]}`
  with character offsets into `text` (`start_offset`/`end_offset` are read as well, and `spans` in
  place of `entities`), or a labelling tool's export `{"text": ..., "label": [[s, e, "L"], ...]}`.
- `tokens`: `{"tokens": [...], "tags": [...], "intent": ... (optional)}` with string tags in one
  scheme per file (see `training.importers.tags`).
Blank lines are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from training.data import read_lines
from training.importers.common import (
    CharSpan,
    Invalid,
    Item,
    ItemError,
    Notes,
    clean_name,
    sentence_from_text,
    sentence_from_tokens,
)
from training.importers.tags import find_scheme, to_bio


def _objects(path: Path) -> Iterator[tuple[str, dict[str, Any] | Invalid]]:
    """(`path:line`, the object or why the line is not one) for each non-blank line."""
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            yield where, Invalid(where, f"not JSON ({error.msg} at column {error.colno})")
            continue
        if not isinstance(value, dict):
            yield where, Invalid(where, f"expected a JSON object, got {type(value).__name__}")
            continue
        yield where, value


def _intent(value: dict[str, Any], notes: Notes) -> str | None:
    intent = value.get("intent")
    return None if intent is None else clean_name(intent, "intent", notes)


def _entity(entity: object, notes: Notes) -> CharSpan:
    if isinstance(entity, dict):
        start = entity.get("start", entity.get("start_offset"))
        end = entity.get("end", entity.get("end_offset"))
        label = entity.get("label", entity.get("entity"))
    elif isinstance(entity, list) and len(entity) == 3:
        start, end, label = entity
    else:
        raise ItemError(f'an entity must be {{"start", "end", "label"}} or [start, end, label], got {entity!r}')
    return CharSpan(start, end, clean_name(label, "entity label", notes))


def read_jsonl(path: Path, notes: Notes) -> list[Item]:
    """Texts with character-offset entities, split into the service's words."""
    items: list[Item] = []
    for where, value in _objects(path):
        if isinstance(value, Invalid):
            items.append(value)
            continue
        try:
            if "text" not in value:
                raise ItemError('no "text" field')
            entities = next((value[key] for key in ("entities", "spans", "label") if key in value), [])
            if entities is None:
                entities = []
            if not isinstance(entities, list):
                raise ItemError(f'"entities" must be a list, got {type(entities).__name__}')
            spans = [_entity(entity, notes) for entity in entities]
            items.append(sentence_from_text(where, value["text"], spans, _intent(value, notes)))
        except ItemError as error:
            items.append(Invalid(where, str(error)))
    return items


def read_tokens(path: Path, notes: Notes) -> list[Item]:
    """Pre-split tokens with one tag each, converted to BIO and to the service's words."""
    raw: list[tuple[str, dict[str, Any] | Invalid]] = []
    for where, value in _objects(path):
        if not isinstance(value, Invalid):
            tokens, tags = value.get("tokens"), value.get("tags")
            if not isinstance(tokens, list) or not all(isinstance(token, str) for token in tokens):
                value = Invalid(where, '"tokens" must be a list of strings')
            elif not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
                value = Invalid(where, '"tags" must be a list of strings (map class ids to tag names first)')
            elif len(tokens) != len(tags):
                value = Invalid(where, f"{len(tags)} tags for {len(tokens)} tokens")
        raw.append((where, value))
    scheme = find_scheme((where, tag) for where, value in raw if isinstance(value, dict) for tag in value["tags"])
    items: list[Item] = []
    changed = False
    for where, value in raw:
        if isinstance(value, Invalid):
            items.append(value)
            continue
        try:
            tags = [tag if tag == "O" else clean_name(tag, "tag", notes) for tag in value["tags"]]
            bio = to_bio(tags, scheme)
            changed = changed or (scheme == "bio" and bio != tags)
            items.append(sentence_from_tokens(where, value["tokens"], bio, _intent(value, notes), notes))
        except ItemError as error:
            items.append(Invalid(where, str(error)))
    notes.tag_schemes[str(path)] = "iob1" if changed else scheme
    return items
