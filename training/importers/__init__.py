"""Readers of annotation formats (one plain function per format) that turn a file into `Sentence`s in
the service's words with BIO tags; `training.import_data` splits and writes them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from training.importers.common import Item, Notes
from training.importers.conll import read_conll
from training.importers.jsonl import read_jsonl, read_tokens
from training.importers.rasa import read_rasa

READERS: dict[str, Callable[[Path, Notes], list[Item]]] = {
    "conll": read_conll,
    "rasa": read_rasa,
    "jsonl": read_jsonl,
    "tokens": read_tokens,
}
