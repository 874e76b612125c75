"""Canonical slot values: a table of synonyms that maps a value as written ("NYC") to the value an
application expects ("New York"), per slot type where one is given.

Two file forms load into one `SynonymTable`:

* **JSON** (`DIR/synonyms.json`, written by a Rasa import; also the form stored in a checkpoint
  bundle under the `synonyms` key)::

      {
        "format": "slotfill-synonyms",
        "version": 1,
        "synonyms": [
          {"canonical": "New York", "written": ["nyc", "new york city"], "slot": "toloc.city_name"},
          {"canonical": "Boston", "written": ["bos", "beantown"]}
        ]
      }

  Each entry maps every string of `written` to `canonical`. `slot` names the slot type the entry
  applies to; absent or null, it applies to every slot type. `format` and `version` are required
  so that a file of another kind is refused rather than half-read.

* **Rasa YAML** (`--data.synonyms FILE.yml`): the `synonym:` items of Rasa's NLU training data;
  every other item (`intent:`, `regex:`, `lookup:`) is ignored. Rasa's synonyms have no slot type::

      nlu:
      - synonym: New York
        examples: |
          - nyc
          - new york city

Matching: a written form matches a slot's text when both are equal after case-folding and
collapsing runs of whitespace to one space ("NYC", "nyc" and "N Y C" are three forms, "New  York"
and "new york" one). An entry for the slot's type wins over an entry for every type. One written
form may not map to two different canonical values for the same slot type (or both for every
type): that is refused with both places named.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT_NAME = "slotfill-synonyms"
FORMAT_VERSION = 1


class SynonymError(ValueError):
    """A synonym file (or bundle entry) that cannot be used; the message starts with `file:line`."""


@dataclass(frozen=True)
class Synonym:
    """One written form and the canonical value it stands for; `where` is `file:line` of its source."""

    written: str
    canonical: str
    slot: str | None = None
    where: str = ""


def match_key(written: str) -> str:
    """The form compared when matching: case-folded, whitespace runs collapsed, ends stripped."""
    return " ".join(written.casefold().split())


class SynonymTable:
    """Written form (and slot type) -> canonical value."""

    def __init__(self, synonyms: Iterable[Synonym] = ()) -> None:
        self._entries: dict[tuple[str, str | None], Synonym] = {}
        for synonym in synonyms:
            self._add(synonym)

    def _add(self, synonym: Synonym) -> None:
        key = match_key(synonym.written)
        if not key:
            raise SynonymError(f"{synonym.where}: a written form of {synonym.canonical!r} is empty")
        if not synonym.canonical.strip():
            raise SynonymError(f"{synonym.where}: the canonical value for {synonym.written!r} is empty")
        seen = self._entries.get((key, synonym.slot))
        if seen is not None and seen.canonical != synonym.canonical:
            scope = f"slot {synonym.slot!r}" if synonym.slot else "every slot"
            raise SynonymError(
                f"{synonym.where}: {synonym.written!r} ({scope}) maps to {synonym.canonical!r} here "
                f"but to {seen.canonical!r} at {seen.where}"
            )
        if seen is None:
            self._entries[(key, synonym.slot)] = synonym

    def canonical(self, slot: str, written: str) -> str | None:
        """The canonical value of `written` found as a `slot`, or None when no synonym applies."""
        if not self._entries:
            return None
        key = match_key(written)
        found = self._entries.get((key, slot)) or self._entries.get((key, None))
        return found.canonical if found is not None else None

    def merged(self, other: SynonymTable) -> SynonymTable:
        """Both tables' entries in one (conflicts between them are refused like conflicts in one file)."""
        return SynonymTable([*self._entries.values(), *other._entries.values()])

    def __len__(self) -> int:
        return len(self._entries)

    def to_json(self) -> dict[str, Any]:
        """The JSON form: one entry per canonical value and slot type, written forms in first-seen order."""
        grouped: dict[tuple[str, str | None], list[str]] = {}
        for synonym in self._entries.values():
            grouped.setdefault((synonym.canonical, synonym.slot), []).append(synonym.written)
        entries = []
        for (canonical, slot), written in grouped.items():
            entry: dict[str, Any] = {"canonical": canonical, "written": written}
            if slot is not None:
                entry["slot"] = slot
            entries.append(entry)
        return {"format": FORMAT_NAME, "version": FORMAT_VERSION, "synonyms": entries}

    @classmethod
    def from_json(cls, data: Any, source: str = "<synonyms>", lines: list[int] | None = None) -> SynonymTable:
        """Read the JSON form (already parsed); `lines[i]` is the line of entry `i` when known."""

        def where(index: int | None = None) -> str:
            if index is None:
                return source
            if lines is not None and index < len(lines):
                return f"{source}:{lines[index]}"
            return f"{source}: synonyms[{index}]"

        if not isinstance(data, dict):
            raise SynonymError(f"{where()}: expected a JSON object with format, version and synonyms")
        if data.get("format") != FORMAT_NAME:
            raise SynonymError(f"{where()}: 'format' must be {FORMAT_NAME!r}, got {data.get('format')!r}")
        if data.get("version") != FORMAT_VERSION:
            raise SynonymError(f"{where()}: version {data.get('version')!r}; this code reads version {FORMAT_VERSION}")
        entries = data.get("synonyms")
        if not isinstance(entries, list):
            raise SynonymError(f"{where()}: 'synonyms' must be a list of entries")
        synonyms: list[Synonym] = []
        for index, entry in enumerate(entries):
            here = where(index)
            if not isinstance(entry, dict):
                raise SynonymError(f"{here}: each entry must be an object with canonical and written")
            unknown = sorted(set(entry) - {"canonical", "written", "slot"})
            if unknown:
                raise SynonymError(f"{here}: unknown key(s) {', '.join(unknown)}; valid: canonical, written, slot")
            canonical, written, slot = entry.get("canonical"), entry.get("written"), entry.get("slot")
            if not isinstance(canonical, str):
                raise SynonymError(f"{here}: 'canonical' must be a string")
            if not isinstance(written, list) or not written or not all(isinstance(w, str) for w in written):
                raise SynonymError(f"{here}: 'written' must be a non-empty list of strings")
            if slot is not None and (not isinstance(slot, str) or not slot.strip()):
                raise SynonymError(f"{here}: 'slot' must be a slot type name, or absent for every slot type")
            synonyms.extend(Synonym(w, canonical, slot, here) for w in written)
        return cls(synonyms)


def _entry_lines(text: str) -> list[int] | None:
    """The line of each element of the top-level object's `synonyms` list, found by decoding the
    file step by step (the json module keeps no positions); None when the layout is unexpected."""
    decoder = json.JSONDecoder()
    position = 0

    def skip(at: int) -> int:
        while at < len(text) and text[at] in " \t\r\n":
            at += 1
        return at

    def line(at: int) -> int:
        return text.count("\n", 0, at) + 1

    try:
        position = skip(position)
        if text[position] != "{":
            return None
        position += 1
        while True:
            position = skip(position)
            if text[position] == "}":
                return None
            key, position = decoder.raw_decode(text, position)
            position = skip(position)
            position = skip(position + 1)  # the ':'
            if key != "synonyms":
                _, position = decoder.raw_decode(text, position)
                position = skip(position)
                if text[position] == ",":
                    position += 1
                continue
            if text[position] != "[":
                return None
            lines: list[int] = []
            position = skip(position + 1)
            while text[position] != "]":
                lines.append(line(position))
                _, position = decoder.raw_decode(text, position)
                position = skip(position)
                if text[position] == ",":
                    position = skip(position + 1)
            return lines
    except (IndexError, ValueError):
        return None


def load_json(path: Path) -> SynonymTable:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SynonymError(f"{path}: cannot read the synonym file ({error})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise SynonymError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
    return SynonymTable.from_json(data, str(path), _entry_lines(text))


def load_rasa_yaml(path: Path) -> SynonymTable:
    """The `synonym:` items of a Rasa NLU YAML file (every other item is ignored)."""
    import yaml  # only training reads YAML synonym files; the service reads bundles

    try:
        text = path.read_text(encoding="utf-8")
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError) as error:
        raise SynonymError(f"{path}: cannot read the synonym file ({error})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        raise SynonymError(f"{path}{at}: not valid YAML ({getattr(error, 'problem', error)})") from None

    def here(node: yaml.Node) -> str:
        return f"{path}:{node.start_mark.line + 1}"

    if root is None:
        return SynonymTable()
    if not isinstance(root, yaml.MappingNode):
        raise SynonymError(f"{here(root)}: expected Rasa NLU data (a mapping with an 'nlu' list)")
    nlu = next((value for key, value in root.value if key.value == "nlu"), None)
    if nlu is None:
        raise SynonymError(f"{path}: no 'nlu' key; Rasa synonyms are '- synonym: VALUE' items of the 'nlu' list")
    if not isinstance(nlu, yaml.SequenceNode):
        raise SynonymError(f"{here(nlu)}: 'nlu' must be a list of items")
    synonyms: list[Synonym] = []
    for item in nlu.value:
        if not isinstance(item, yaml.MappingNode):
            raise SynonymError(f"{here(item)}: each 'nlu' item must be a mapping")
        fields = {key.value: value for key, value in item.value}
        if "synonym" not in fields:
            continue
        name = fields["synonym"]
        if not isinstance(name, yaml.ScalarNode) or not str(name.value).strip():
            raise SynonymError(f"{here(item)}: 'synonym' must name the canonical value")
        examples = fields.get("examples")
        if not isinstance(examples, yaml.ScalarNode):
            raise SynonymError(f"{here(item)}: synonym {name.value!r} needs 'examples' as a '- form' list in a string")
        # a block scalar (`|`) starts on the line after its indicator
        first_line = examples.start_mark.line + (2 if examples.style in ("|", ">") else 1)
        count = 0
        for offset, raw in enumerate(str(examples.value).splitlines()):
            line = raw.strip()
            if not line:
                continue
            where = f"{path}:{first_line + offset}"
            if not line.startswith("- "):
                raise SynonymError(f"{where}: expected '- written form', got {line!r}")
            synonyms.append(Synonym(line[2:].strip(), str(name.value), None, where))
            count += 1
        if count == 0:
            raise SynonymError(f"{here(examples)}: synonym {name.value!r} lists no written forms")
    return SynonymTable(synonyms)


def load_synonyms(path: str | Path) -> SynonymTable:
    """Read a synonym file: `.json` in the JSON form, `.yml`/`.yaml` in Rasa's form."""
    path = Path(path)
    if not path.is_file():
        raise SynonymError(f"{path}: no such synonym file")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return load_json(path)
    if suffix in (".yml", ".yaml"):
        return load_rasa_yaml(path)
    raise SynonymError(f"{path}: unknown synonym file type {suffix!r}; use .json (slotfill) or .yml/.yaml (Rasa)")
