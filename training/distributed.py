"""Putting per-process outputs back together after a multi-process (DDP) `test` or `predict`.

Lightning feeds each process its share of an evaluation set through a `DistributedSampler` without
shuffling: process r of W gets items r, r + W, r + 2W, ... For `test` the set is padded to a multiple
of W by repeating its first items (so the test metrics count those few items twice); for `predict`
it is not. Interleaving the processes' outputs therefore restores the set's order, and cutting at its
length drops the repeats.
"""

from __future__ import annotations

from typing import Any, TypeVar

import torch.distributed as dist

T = TypeVar("T")


def gather_in_order(items: list[T], total: int) -> list[T]:
    """Every process's `items` (in its sampler's order), interleaved back into dataset order and cut
    to `total` items; unchanged when running in a single process. Call it on every process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return items
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, items)
    return interleave(parts, total)


def interleave(parts: list[list[T]], total: int) -> list[T]:
    """[a0, a1, ...], [b0, b1, ...] -> [a0, b0, a1, b1, ...], cut to `total` items."""
    longest = max((len(part) for part in parts), default=0)
    ordered = [part[i] for i in range(longest) for part in parts if i < len(part)]
    return ordered[:total]


def dataset_size(dataloaders: Any) -> int:
    """Items in the dataset of a trainer's (first) evaluation dataloader."""
    loader = dataloaders[0] if isinstance(dataloaders, (list, tuple)) else dataloaders
    return len(loader.dataset)
