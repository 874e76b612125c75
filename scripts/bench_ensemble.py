"""Score several checkpoints of one recipe alone and as a seed ensemble (`scripts/seed_ensemble.py`), on
the validation and test splits: slot F1 (conlleval's), intent accuracy and sentence accuracy.

    python scripts/bench_ensemble.py --data-dir data/atis \
        --checkpoints runs/ablation/atis-best-s{1,2,3}/checkpoints/best.ckpt

With one checkpoint it scores that one (`--intent-errors` lists the sentences whose intent is
wrong). The ensemble needs no training of its own: it averages the models' per-word tag distributions and
intent distributions, then decodes BIO-valid tags with constrained Viterbi. Decide on the
validation rows, not the test rows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from seed_ensemble import predict  # noqa: E402  (scripts/seed_ensemble.py, next to this script)

from models.checkpoint import LoadedTagger, load_bundle  # noqa: E402
from training.data import Example, read_split  # noqa: E402
from training.metrics import SpanF1  # noqa: E402


def score(
    taggers: list[LoadedTagger], examples: list[Example], batch_size: int = 64, intent_errors: list | None = None
) -> dict[str, float]:
    """Slot F1, intent accuracy and sentence accuracy (percentages) of `taggers` voting together;
    appends `(gold, predicted, sentence)` to `intent_errors` for each wrong intent when given."""
    span_f1 = SpanF1()
    intents_right = sentences_right = 0
    for start in range(0, len(examples), batch_size):
        batch = examples[start : start + batch_size]
        tags, intents = predict(taggers, [example.words for example in batch])
        span_f1.update(tags, [list(example.tags) for example in batch])
        for example, predicted_tags, intent in zip(batch, tags, intents, strict=True):
            intent_right = intent == example.intent
            intents_right += intent_right
            if not intent_right and intent_errors is not None:
                intent_errors.append((example.intent, intent, " ".join(example.words)))
            sentences_right += intent_right and predicted_tags == list(example.tags)
    return {
        "slot_f1": 100 * float(span_f1.compute()["f1"]),
        "intent_accuracy": 100 * intents_right / len(examples),
        "sentence_accuracy": 100 * sentences_right / len(examples),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=REPO / "data" / "atis")
    parser.add_argument("--checkpoints", type=Path, nargs="+", required=True, help="checkpoints of one recipe")
    parser.add_argument("--splits", nargs="+", default=["valid", "test"])
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--intent-errors", action="store_true", help="list each wrong intent (gold, predicted, words)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    taggers = [load_bundle(path) for path in args.checkpoints]
    members = [[tagger] for tagger in taggers] + ([taggers] if len(taggers) > 1 else [])
    rows = []
    for split in args.splits:
        examples = read_split(args.data_dir, split)
        for group in members:
            started = time.perf_counter()
            errors: list = []
            figures = score(group, examples, intent_errors=errors)
            name = "ensemble of all" if len(group) > 1 else os.path.relpath(group[0].path, REPO)
            row = {"split": split, "model": name, **figures, "seconds": time.perf_counter() - started}
            rows.append(row)
            print(
                f"{split:<6} {name:<70} F1 {row['slot_f1']:6.2f}  intent {row['intent_accuracy']:6.2f} %  "
                f"sentence {row['sentence_accuracy']:6.2f} %  ({row['seconds']:.1f} s)",
                flush=True,
            )
            if args.intent_errors:
                for gold, predicted, words in sorted(errors):
                    print(f"    {gold} -> {predicted}: {words}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
