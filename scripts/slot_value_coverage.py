"""How many test slot values the training split already holds, and how a model does on the rest.

A gazetteer built from the training split's slot values can only help with test chunks whose words
the training split already tagged with the same type. This script counts them, by slot type:

    python scripts/slot_value_coverage.py --data-dir data/snips \
        runs/ablation/snips-best-s1/test/predictions.txt

For each type it prints the test chunks, the share whose words (normalised as the vocabulary
normalises them) are a training chunk of that type ("seen value"), and the share holding a word the
training split never has. Given `predictions.txt` files (conlleval's input, as `test` writes them,
for the same test split) it also prints each one's recall of seen and of unseen values: where a
model's missed chunks are.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.spans import Span, bio_to_spans  # noqa: E402
from models.vocab import normalize_word  # noqa: E402
from training.data import DataError, read_conlleval_file, read_split  # noqa: E402


def chunk_value(words: Sequence[str], span: Span) -> str:
    return " ".join(normalize_word(word) for word in words[span.start : span.end])


def training_values(sentences: Iterable[tuple[Sequence[str], Sequence[str]]]) -> dict[str, set[str]]:
    """Slot type -> the normalised values the training split tags with it."""
    values: dict[str, set[str]] = defaultdict(set)
    for words, tags in sentences:
        for span in bio_to_spans(tags):
            values[span.label].add(chunk_value(words, span))
    return values


class TypeCoverage(NamedTuple):
    label: str
    chunks: int
    seen_value: int
    unseen_word: int


def coverage(
    train: Iterable[tuple[Sequence[str], Sequence[str]]], test: Iterable[tuple[Sequence[str], Sequence[str]]]
) -> list[TypeCoverage]:
    """Per slot type of the test chunks (most chunks first): how many, how many with a value the
    training split tags with the same type, how many with a word the training split lacks."""
    train = list(train)
    values = training_values(train)
    vocabulary = {normalize_word(word) for words, _ in train for word in words}
    chunks, seen, unseen = Counter(), Counter(), Counter()
    for words, tags in test:
        for span in bio_to_spans(tags):
            chunks[span.label] += 1
            seen[span.label] += chunk_value(words, span) in values.get(span.label, ())
            unseen[span.label] += any(normalize_word(w) not in vocabulary for w in words[span.start : span.end])
    return [TypeCoverage(label, n, seen[label], unseen[label]) for label, n in chunks.most_common()]


def recall_by_coverage(
    values: dict[str, set[str]], rows: Iterable[tuple[Sequence[str], Sequence[str], Sequence[str]]]
) -> tuple[tuple[int, int], tuple[int, int]]:
    """((found, total) for gold chunks with a seen value, (found, total) for the others)."""
    found, total = Counter(), Counter()
    for words, gold, predicted in rows:
        predicted_spans = set(bio_to_spans(predicted))
        for span in bio_to_spans(gold):
            key = chunk_value(words, span) in values.get(span.label, ())
            total[key] += 1
            found[key] += span in predicted_spans
    return (found[True], total[True]), (found[False], total[False])


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}" if whole else "—"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="data/atis", help="ATIS-format data set (train and test splits)")
    parser.add_argument("predictions", nargs="*", type=Path, help="predictions.txt files of its test split")
    args = parser.parse_args(argv)
    try:
        train = [(ex.words, ex.tags) for ex in read_split(args.data_dir, "train")]
        test = [(ex.words, ex.tags) for ex in read_split(args.data_dir, "test")]
        prediction_rows = [read_conlleval_file(path) for path in args.predictions]
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    rows = coverage(train, test)
    print("| slot type | test chunks | seen value % | with an unseen word % |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row.label} | {row.chunks} | {_percent(row.seen_value, row.chunks)} | "
            f"{_percent(row.unseen_word, row.chunks)} |"
        )
    chunks = sum(row.chunks for row in rows)
    seen = sum(row.seen_value for row in rows)
    unseen = sum(row.unseen_word for row in rows)
    print(f"| all | {chunks} | {_percent(seen, chunks)} | {_percent(unseen, chunks)} |")
    values = training_values(train)
    for path, prediction in zip(args.predictions, prediction_rows, strict=True):
        (seen_found, seen_total), (other_found, other_total) = recall_by_coverage(values, prediction)
        print(
            f"{path}: recall {_percent(seen_found, seen_total)} % of {seen_total} seen values, "
            f"{_percent(other_found, other_total)} % of {other_total} others "
            f"({seen_total - seen_found} and {other_total - other_found} chunks missed)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
