"""`WordCache`: word key -> value (vocabulary id, character ids), least recently used first out, bounded
in bytes. Keys longer than `max_key_chars` are computed every time and never stored: no vocabulary
word is that long, and NFKC can grow one input character into 18 (U+FDFA), so storing them would let
clients choose how much memory each entry takes."""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

# What one entry costs besides its key and value: the ordered dict's slot and link (measured with
# tracemalloc on CPython 3.11: 100-110 bytes an entry), rounded up.
ENTRY_OVERHEAD_BYTES = 128


def value_bytes(value: Any) -> int:
    """Approximate size of a cached value: an int, or a list of small ints (which CPython shares)."""
    return sys.getsizeof(value)


class WordCache:
    """An LRU map from word keys to values, holding at most `max_bytes` (keys, values and entries)."""

    def __init__(self, max_bytes: int, max_key_chars: int = 64) -> None:
        if max_bytes < 0 or max_key_chars < 1:
            raise ValueError(f"need max_bytes >= 0 and max_key_chars >= 1, got {max_bytes}, {max_key_chars}")
        self.max_bytes = max_bytes
        self.max_key_chars = max_key_chars
        self.bytes = 0
        self._entries: OrderedDict[str, tuple[Any, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def lookup(self, keys: Iterable[str], compute: Callable[[str], Any]) -> list[Any]:
        """`compute(key)` for each key, remembered for the next time (the most recent kept)."""
        entries = self._entries
        values = []
        for key in keys:
            entry = entries.get(key)
            if entry is not None:
                entries.move_to_end(key)
                values.append(entry[0])
                continue
            value = compute(key)
            values.append(value)
            if len(key) <= self.max_key_chars:
                self._store(key, value)
        return values

    def _store(self, key: str, value: Any) -> None:
        size = sys.getsizeof(key) + value_bytes(value) + ENTRY_OVERHEAD_BYTES
        if size > self.max_bytes:
            return
        entries = self._entries
        entries[key] = (value, size)
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, (_, freed) = entries.popitem(last=False)
            self.bytes -= freed
