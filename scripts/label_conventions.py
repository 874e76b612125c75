"""Slot errors on which the training set labels the same words the way the model did.

ATIS's test annotation does not always follow its training annotation: "before noon" is
`depart_time.time` 28 times in training and `depart_time.period_of_day` in test; "downtown boston"
in a ground-transport question is `toloc.city_name` in training and `city_name` in test. A model
that learns the training set's convention loses those chunks. This script counts them:

    python scripts/label_conventions.py --train data/atis/train \
        runs/ablation/atis-best-s{5,6,7,8,9}/test/predictions.txt

For each gold chunk that a model tagged over exactly the same words with another type, it looks up
the same words after the same previous word in the training split. When training gives them the
model's type more often than the test's, the error counts as a convention conflict. Per
`predictions.txt` (conlleval's input, as `test` writes it) it prints the slot F1, the number of
conflicts and the F1 if those chunks counted as right: how much of the gap to a perfect score the
training labels themselves rule out. That last figure is a diagnosis, not a score.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.spans import bio_to_spans, count_span_matches  # noqa: E402
from training.data import DataError, read_conlleval_file, read_split  # noqa: E402

SENTENCE_START = "<s>"


class TaggedSentence(NamedTuple):
    words: list[str]
    gold: list[str]
    predicted: list[str]


class Conflict(NamedTuple):
    previous_word: str
    phrase: str
    gold_label: str
    predicted_label: str
    train_gold_count: int  # training chunks with these words after this word, of the test's type
    train_predicted_count: int  # ... and of the model's type


PhraseLabels = dict[tuple[str, str], Counter]


def read_predictions(path: Path) -> list[TaggedSentence]:
    """Sentences of a conlleval input file (`word gold predicted` lines, a blank line after each)."""
    try:
        return [TaggedSentence(*row) for row in read_conlleval_file(path)]
    except DataError as error:
        raise SystemExit(str(error)) from None


def previous_word(words: Sequence[str], start: int) -> str:
    return words[start - 1] if start > 0 else SENTENCE_START


def phrase_labels(sentences: Sequence[tuple[Sequence[str], Sequence[str]]]) -> PhraseLabels:
    """(previous word, chunk words) -> how often each slot type labels them, from (words, tags) pairs."""
    table: PhraseLabels = defaultdict(Counter)
    for words, tags in sentences:
        for span in bio_to_spans(tags):
            key = (previous_word(words, span.start), " ".join(words[span.start : span.end]))
            table[key][span.label] += 1
    return table


def find_conflicts(sentence: TaggedSentence, table: PhraseLabels, min_count: int = 1) -> list[Conflict]:
    """Gold chunks tagged over the same words with another type, where training favours that type
    (and gives it at least `min_count` times)."""
    predicted_by_extent = {(span.start, span.end): span.label for span in bio_to_spans(sentence.predicted)}
    conflicts = []
    for span in bio_to_spans(sentence.gold):
        predicted_label = predicted_by_extent.get((span.start, span.end))
        if predicted_label is None or predicted_label == span.label:
            continue
        key = (previous_word(sentence.words, span.start), " ".join(sentence.words[span.start : span.end]))
        counts = table.get(key, Counter())
        if counts[predicted_label] > counts[span.label] and counts[predicted_label] >= min_count:
            conflicts.append(Conflict(*key, span.label, predicted_label, counts[span.label], counts[predicted_label]))
    return conflicts


def chunk_counts(sentences: Sequence[TaggedSentence]) -> tuple[int, int, int]:
    """(correct, predicted, gold) chunks over all sentences, as conlleval counts them."""
    counts = [count_span_matches(sentence.predicted, sentence.gold) for sentence in sentences]
    return sum(c[0] for c in counts), sum(c[1] for c in counts), sum(c[2] for c in counts)


def f1(correct: int, predicted: int, gold: int) -> float:
    return 200.0 * correct / (predicted + gold) if predicted + gold else 0.0


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("predictions", nargs="+", type=Path, help="predictions.txt files written by `test`")
    parser.add_argument("--train", type=Path, default=Path("data/atis/train"), help="the training split's folder")
    parser.add_argument(
        "--min-count", type=int, default=1, help="training must give the model's type at least this many times"
    )
    parser.add_argument("--examples", type=int, default=15, help="most frequent conflicts to list")
    args = parser.parse_args(argv)

    try:
        train = read_split(args.train.parent, args.train.name)
    except DataError as error:
        raise SystemExit(str(error)) from None
    table = phrase_labels([(example.words, example.tags) for example in train])
    scores, ceilings, all_conflicts = [], [], Counter()
    print("| predictions | slot F1 | conflicts | F1 with them counted right |\n| --- | --- | --- | --- |")
    for path in args.predictions:
        sentences = read_predictions(path)
        conflicts = [conflict for sentence in sentences for conflict in find_conflicts(sentence, table, args.min_count)]
        all_conflicts.update(conflicts)
        correct, predicted, gold = chunk_counts(sentences)
        score, ceiling = f1(correct, predicted, gold), f1(correct + len(conflicts), predicted, gold)
        scores.append(score)
        ceilings.append(ceiling)
        print(f"| {path} | {score:.2f} | {len(conflicts)} | {ceiling:.2f} |")
    print(
        f"\nmedian slot F1 {statistics.median(scores):.2f};"
        f" with the conflicts counted right {statistics.median(ceilings):.2f}"
    )
    print(
        f"\nmost frequent conflicts over {len(args.predictions)} file(s): times, context [words],"
        " test label -> model's label, training counts of each"
    )
    for conflict, times in all_conflicts.most_common(args.examples):
        print(
            f"{times:3d}  {conflict.previous_word} [{conflict.phrase}]"
            f"  {conflict.gold_label} -> {conflict.predicted_label}"
            f"  (training: {conflict.train_gold_count} vs {conflict.train_predicted_count})"
        )


if __name__ == "__main__":
    main()
