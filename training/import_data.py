"""`python -m training import` / `slotfill-import`: annotated data in another format -> a data set in
the `seq.in` / `seq.out` / `label` layout that `fit` trains on, with `import.json` saying what was
read, split, skipped and left out.

    python -m training import rasa nlu.yml --out data/mine
    python -m training fit --config configs/default.yaml --data.data_dir data/mine
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models.spans import bio_to_spans
from training.data import DataError
from training.importers import READERS
from training.importers.common import Invalid, Item, Notes, Sentence
from training.importers.split import split_examples
from training.importers.tags import SchemeError
from training.importers.write import SYNONYMS, write_dataset

SPLITS = ("train", "valid", "test")
SHOWN_PROBLEMS = 10


def parse_shares(value: str) -> dict[str, float]:
    """`0.8,0.1,0.1` -> shares of train/valid/test (normalised to sum 1)."""
    try:
        numbers = [float(part) for part in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three numbers like 0.8,0.1,0.1, got {value!r}") from None
    if len(numbers) != 3 or any(n < 0 for n in numbers) or numbers[0] <= 0:
        raise argparse.ArgumentTypeError(f"expected three shares >= 0 (train > 0) like 0.8,0.1,0.1, got {value!r}")
    total = sum(numbers)
    return {name: n / total for name, n in zip(SPLITS, numbers)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training import",
        description="Import annotated utterances into the seq.in/seq.out/label layout that `fit` reads.",
    )
    parser.add_argument("format", choices=sorted(READERS), help="the annotation format of the input files")
    parser.add_argument(
        "train", nargs="+", type=Path, metavar="TRAIN_FILE", help="training data (several files make one set)"
    )
    parser.add_argument("--out", required=True, type=Path, help="folder to write train/, valid/, test/ and import.json")
    parser.add_argument("--valid", nargs="+", type=Path, default=[], metavar="FILE", help="validation data")
    parser.add_argument("--test", nargs="+", type=Path, default=[], metavar="FILE", help="test data")
    parser.add_argument(
        "--split",
        type=parse_shares,
        default=parse_shares("0.8,0.1,0.1"),
        metavar="TRAIN,VALID,TEST",
        help="shares of the training files that make the splits not given as files (default 0.8,0.1,0.1)",
    )
    parser.add_argument("--seed", type=int, default=42, help="seed of the split (default 42)")
    parser.add_argument(
        "--skip-invalid",
        action="store_true",
        help="leave out examples that cannot be imported (listed in import.json) instead of failing",
    )
    return parser


def read_files(reader_name: str, paths: Sequence[Path], notes: Notes) -> list[Item]:
    reader = READERS[reader_name]
    items: list[Item] = []
    for path in paths:
        items.extend(reader(path, notes))
    return items


def mark_missing_intents(groups: dict[str, list[Item]]) -> None:
    """Some examples with an intent and some without is an error: those without become `Invalid`."""
    with_intent = [i for items in groups.values() for i in items if isinstance(i, Sentence) and i.intent is not None]
    if not with_intent:
        return
    example = with_intent[0].where
    for items in groups.values():
        for index, item in enumerate(items):
            if isinstance(item, Sentence) and item.intent is None:
                items[index] = Invalid(
                    item.where, f"no intent, while {len(with_intent)} other examples have one (e.g. {example})"
                )


def split_counts(sentences: Sequence[Sentence]) -> dict[str, int]:
    return {
        "sentences": len(sentences),
        "words": sum(len(s.words) for s in sentences),
        "entities": sum(len(bio_to_spans(s.tags)) for s in sentences),
    }


def per_split(splits: dict[str, list[Sentence]], values: Any) -> dict[str, dict[str, int]]:
    """{value: {split: count}} for a function giving each sentence's values."""
    table: dict[str, dict[str, int]] = {}
    for name, sentences in splits.items():
        counts = Counter(value for s in sentences for value in values(s))
        for value, count in counts.items():
            table.setdefault(value, dict.fromkeys(splits, 0))[name] = count
    return dict(sorted(table.items()))


def build_report(
    args: argparse.Namespace,
    splits: dict[str, list[Sentence]],
    drawn: list[str],
    skipped: list[Invalid],
    notes: Notes,
) -> dict[str, Any]:
    has_intents = any(s.intent is not None for s in splits["train"])
    return {
        "format": args.format,
        "files": {
            "train": [str(p) for p in args.train],
            "valid": [str(p) for p in args.valid],
            "test": [str(p) for p in args.test],
        },
        "split": {
            "drawn_from_train": drawn,
            "shares": {name: round(args.split[name], 6) for name in SPLITS} if drawn else None,
            "seed": args.seed if drawn else None,
            "stratified_by": "intent" if drawn and has_intents else None,
        },
        "counts": {name: split_counts(sentences) for name, sentences in splits.items()},
        "slot_types": per_split(splits, lambda s: [span.label for span in bio_to_spans(s.tags)]),
        "intents": per_split(splits, lambda s: [s.intent]) if has_intents else None,
        "skipped": {"count": len(skipped), "items": [{"where": i.where, "why": i.why} for i in skipped]},
        "ignored": dict(sorted(notes.ignored.items())),
        "tag_schemes": notes.tag_schemes,
        "tokens": {"dropped_punctuation_only": notes.tokens_dropped, "split_into_words": notes.tokens_split},
        "renamed": notes.renamed,
        "synonyms": {
            "file": SYNONYMS if notes.synonyms else None,
            "entries": sum(len(table) for table in notes.synonyms.values()),
            "conflicts": notes.synonym_conflicts,
        },
    }


def run_import(args: argparse.Namespace) -> dict[str, Any]:
    """Read, check, split and write; returns the report written to import.json (`DataError` on failure)."""
    notes = Notes()
    try:
        groups = {name: read_files(args.format, getattr(args, name), notes) for name in SPLITS}
    except SchemeError as error:
        raise DataError(str(error)) from None
    mark_missing_intents(groups)
    problems = [item for items in groups.values() for item in items if isinstance(item, Invalid)]
    if problems and not args.skip_invalid:
        lines = [f"{p.where}: {p.why}" for p in problems[:SHOWN_PROBLEMS]]
        more = len(problems) - len(lines)
        tail = f"\n... and {more} more" if more else ""
        raise DataError(
            "\n".join(lines) + tail + f"\n{len(problems)} example(s) cannot be imported; nothing was written "
            "(--skip-invalid imports the rest and lists these in import.json)"
        )
    sentences = {name: [i for i in items if isinstance(i, Sentence)] for name, items in groups.items()}
    drawn = [name for name in ("valid", "test") if not getattr(args, name)]
    if drawn:
        shares = {"train": args.split["train"], **{name: args.split[name] for name in drawn}}
        total = sum(shares.values())
        drawn_splits = split_examples(sentences["train"], {k: v / total for k, v in shares.items()}, args.seed)
        sentences.update(drawn_splits)
    for name in SPLITS:
        if not sentences[name]:
            source = "drawn from the training files" if name in drawn else "read"
            raise DataError(
                f"the {name} split would be empty ({len(sentences[name])} examples {source}); "
                f"give more data, --{name} FILE, or other --split shares"
                if name != "train"
                else f"{', '.join(map(str, args.train))}: no examples to train on"
            )
    report = build_report(args, sentences, drawn, problems, notes)
    write_dataset(args.out, sentences, report, notes.synonyms)
    return report


def summary(report: dict[str, Any], out: Path) -> str:
    counts = ", ".join(f"{name} {report['counts'][name]['sentences']}" for name in SPLITS)
    intents = report["intents"]
    lines = [
        f"wrote {out}: sentences {counts}",
        f"slot types: {len(report['slot_types'])}; intents: {len(intents) if intents is not None else 'none'}",
    ]
    if report["skipped"]["count"]:
        lines.append(f"skipped {report['skipped']['count']} example(s): see {out / 'import.json'}")
    if report["ignored"]:
        lines.append("left out: " + ", ".join(f"{k} ({v})" for k, v in report["ignored"].items()))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = run_import(args)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(summary(report, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
