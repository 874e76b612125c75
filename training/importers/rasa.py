"""Rasa NLU training data (YAML, `version: "3.1"` style).

`nlu:` items `- intent: NAME` with `examples: |` lines `- text` annotated `[text](entity)`,
`[text](entity:value)`, `[text]{"entity": "e", "value": "v"}` (a list `[text][{...}, ...]` keeps its
first entity). Values and `- synonym: NAME` items go to the synonym table; `lookup:` and `regex:`
items, entity roles and groups, and keys other than `nlu` are read and left out (counted in
`Notes.ignored`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from training.data import DataError, read_lines
from training.importers.common import (
    CharSpan,
    Invalid,
    Item,
    ItemError,
    Notes,
    clean_name,
    sentence_from_text,
)

# [text] followed by (entity) / (entity:value), {json} or [{json}, ...]
_ANNOTATION = re.compile(
    r"\[(?P<text>[^\]]+?)\]"
    r"(?:\((?P<short>[^)]+?)\)|(?P<json>\{[^}]*?\})|\[(?P<list>\{.*?\})\])"
)
# what remains of an annotation the pattern above could not read: `](`, `]{` or `][`
_LEFTOVER = re.compile(r"\]\s*[({\[]")


def _parse_example(example: str, notes: Notes) -> tuple[str, list[CharSpan], list[tuple[str, str, str]]]:
    """An annotated example -> (plain text, its entities, (type, written, value) synonyms)."""
    text_parts: list[str] = []
    spans: list[CharSpan] = []
    values: list[tuple[str, str, str]] = []
    position = 0
    length = 0
    for match in _ANNOTATION.finditer(example):
        before = example[position : match.start()]
        text_parts.append(before)
        length += len(before)
        written = match.group("text")
        if match.group("short") is not None:
            entity, _, value = match.group("short").partition(":")
            details: dict = {"entity": entity.strip(), **({"value": value.strip()} if value else {})}
        else:
            source = match.group("json") or f"[{match.group('list')}]"
            try:
                details = json.loads(source)
            except json.JSONDecodeError as error:
                raise ItemError(f"entity annotation {source!r} is not JSON ({error.msg})") from None
            if isinstance(details, list):
                if len(details) > 1:
                    notes.ignored["rasa: entities after the first on one text"] += len(details) - 1
                details = details[0] if details else {}
            if not isinstance(details, dict) or "entity" not in details:
                raise ItemError(f'entity annotation {source!r} has no "entity"')
        label = clean_name(details["entity"], "entity", notes)
        for feature in ("role", "group"):
            if feature in details:
                notes.ignored[f"rasa: entity {feature}s"] += 1
        value = details.get("value")
        if value is not None and str(value) != written:
            values.append((label, written, str(value)))
        spans.append(CharSpan(length, length + len(written), label))
        text_parts.append(written)
        length += len(written)
        position = match.end()
    text_parts.append(example[position:])
    plain = "".join(text_parts)
    leftover = _LEFTOVER.search(plain)
    if leftover:
        raise ItemError(
            f"annotation not understood near {plain[max(0, leftover.start() - 20) : leftover.end() + 20]!r}"
        )
    return plain, spans, values


def _example_lines(node: yaml.Node, path: Path) -> list[tuple[int, str]]:
    """(line number, example text) of an `examples:` value: a `|` block of `- text` lines, or a list of
    strings or of `{text: ...}` mappings."""
    if isinstance(node, yaml.ScalarNode):
        # in a literal block the n-th line of the value is the n-th line after the `|` indicator
        first = node.start_mark.line + (2 if node.style == "|" else 1)
        lines = []
        for offset, line in enumerate(str(node.value).split("\n")):
            stripped = line.strip()
            if not stripped:
                continue
            number = first + offset if node.style == "|" else first
            if not stripped.startswith("-"):
                lines.append((number, "\0" + stripped))  # marked: not an example line
                continue
            lines.append((number, stripped[1:].strip()))
        return lines
    if isinstance(node, yaml.SequenceNode):
        lines = []
        for entry in node.value:
            number = entry.start_mark.line + 1
            if isinstance(entry, yaml.MappingNode):
                texts = [v for k, v in entry.value if k.value == "text"]
                entry = texts[0] if texts else None
            if isinstance(entry, yaml.ScalarNode):
                lines.append((number, str(entry.value)))
            else:
                lines.append((number, "\0" + "an example must be a string or have a text"))
        return lines
    raise DataError(f"{path}:{node.start_mark.line + 1}: examples must be a `|` block or a list")


def _mapping(node: yaml.Node) -> dict[str, yaml.Node]:
    return {str(key.value): value for key, value in node.value} if isinstance(node, yaml.MappingNode) else {}


def read_rasa(path: Path, notes: Notes) -> list[Item]:
    """The intent examples of one Rasa NLU YAML file; synonyms and values go to `notes.synonyms`."""
    text = "\n".join(read_lines(path))
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise DataError(f"{path}{line}: not valid YAML ({getattr(error, 'problem', None) or error})") from None
    top = _mapping(root) if root is not None else {}
    if root is not None and not isinstance(root, yaml.MappingNode):
        raise DataError(f"{path}:1: expected Rasa training data (a mapping with an `nlu:` list)")
    for key in top:
        if key not in ("version", "nlu"):
            notes.ignored[f"rasa: top-level {key}"] += 1
    nlu = top.get("nlu")
    if nlu is None:
        return []
    if not isinstance(nlu, yaml.SequenceNode):
        raise DataError(f"{path}:{nlu.start_mark.line + 1}: `nlu:` must be a list of items")
    items: list[Item] = []
    for entry in nlu.value:
        fields = _mapping(entry)
        where = f"{path}:{entry.start_mark.line + 1}"
        examples = fields.get("examples")
        kind = next((k for k in ("intent", "synonym", "lookup", "regex") if k in fields), None)
        if kind is None:
            items.append(Invalid(where, "an nlu item needs one of intent, synonym, lookup, regex"))
            continue
        name = str(fields[kind].value) if isinstance(fields[kind], yaml.ScalarNode) else ""
        for key in fields:
            if key not in (kind, "examples"):
                notes.ignored[f"rasa: item {key}"] += 1
        if kind in ("lookup", "regex"):
            notes.ignored[f"rasa: {kind} items"] += 1
            continue
        if examples is None:
            items.append(Invalid(where, f"{kind} {name!r} has no examples"))
            continue
        for number, example in _example_lines(examples, path):
            line_where = f"{path}:{number}"
            if example.startswith("\0"):
                items.append(Invalid(line_where, f"expected '- example', got {example[1:]!r}"))
            elif kind == "synonym":
                notes.add_synonym("*", example, name, line_where)
            else:
                try:
                    plain, spans, values = _parse_example(example, notes)
                    intent = clean_name(name, "intent", notes)
                    items.append(sentence_from_text(line_where, plain, spans, intent))
                except ItemError as error:
                    items.append(Invalid(line_where, str(error)))
                    continue
                for label, written, value in values:
                    notes.add_synonym(label, written, value, line_where)
    return items
