"""Draw valid/test splits from the training examples: a seeded shuffle per intent (stratified), so each
intent appears in every split in about the requested shares."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

from training.importers.common import Sentence


def split_examples(sentences: Sequence[Sentence], shares: dict[str, float], seed: int) -> dict[str, list[Sentence]]:
    """Split `sentences` into the splits named in `shares` (`train` first, shares summing to 1).

    Groups by intent (one group when there are none), shuffles each with `seed`, and gives each split
    its share of every group, rounding so that the totals stay as close to the shares as the whole
    data allows; every intent keeps at least one training example. Within a split the examples keep
    their input order."""
    names = list(shares)
    if names[0] != "train":
        raise ValueError(f"the first split must be train, got {names}")
    groups: dict[str | None, list[int]] = defaultdict(list)
    for index, sentence in enumerate(sentences):
        groups[sentence.intent].append(index)
    rng = random.Random(seed)
    chosen: dict[str, list[int]] = {name: [] for name in names}
    wanted = dict.fromkeys(names[1:], 0.0)  # running exact share of the held-out splits
    given = dict.fromkeys(names[1:], 0)
    for intent in sorted(groups, key=lambda name: (name is None, name or "")):
        members = groups[intent]
        rng.shuffle(members)
        room = len(members) - 1
        taken = 0
        for name in names[1:]:
            wanted[name] += len(members) * shares[name]
            count = max(0, min(round(wanted[name]) - given[name], room - taken))
            chosen[name].extend(members[taken : taken + count])
            given[name] += count
            taken += count
        chosen["train"].extend(members[taken:])
    return {name: [sentences[i] for i in sorted(indices)] for name, indices in chosen.items()}
