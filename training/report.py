"""The evaluation report `test` writes next to predictions.txt: scores per slot type and per intent, the
confusions, the sentences with mistakes, and two pictures.

- `report.json`: overall and per slot type precision / recall / F1 / support (conlleval's per-type
  figures), per intent scores and confusion
  counts, sentence accuracy, and what was scored (checkpoint SHA-256, data directory, split, size).
- `report.md`: the same as tables, weakest slot types and intents first, and the most frequent
  confusions.
- `slot_f1.png`, and `intent_confusion.png` when the data has intents.
- `errors.jsonl`: one line per sentence with any mistake.

Slot chunks follow conlleval (`models.spans`): a predicted chunk is right only when its type, first
and last word all match a gold chunk. Everything about intents is left out when the sentences carry
none (`gold_intents is None`).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.spans import Span, bio_to_spans

MISSED = "(missed)"  # predicted side of a gold chunk that no predicted chunk overlaps
SPURIOUS = "(spurious)"  # gold side of a predicted chunk that overlaps no gold chunk
TOP_CONFUSIONS = 20


@dataclass(frozen=True)
class Scored:
    """What `test` compared: per sentence its words, gold and predicted tags, and (when the data has
    intents) gold and predicted intents."""

    words: Sequence[Sequence[str]]
    gold_tags: Sequence[Sequence[str]]
    predicted_tags: Sequence[Sequence[str]]
    gold_intents: Sequence[str] | None = None
    predicted_intents: Sequence[str] | None = None

    def __post_init__(self) -> None:
        sizes = {len(self.words), len(self.gold_tags), len(self.predicted_tags)}
        if self.gold_intents is not None:
            if self.predicted_intents is None:
                raise ValueError("gold intents given without predicted ones")
            sizes |= {len(self.gold_intents), len(self.predicted_intents)}
        if len(sizes) != 1:
            raise ValueError(f"words, tags and intents cover different numbers of sentences: {sorted(sizes)}")
        for number, (words, gold, predicted) in enumerate(zip(self.words, self.gold_tags, self.predicted_tags)):
            if not len(words) == len(gold) == len(predicted):
                raise ValueError(
                    f"sentence {number}: {len(words)} words, {len(gold)} gold tags, {len(predicted)} predicted tags"
                )

    @property
    def has_intents(self) -> bool:
        return self.gold_intents is not None


def scored_from_rows(rows: Sequence[tuple], with_intents: bool) -> Scored:
    """`Scored` from `(words, gold tags, predicted tags, gold intent, predicted intent)` rows; the
    intents are kept only when `with_intents` and every sentence has a gold intent."""
    columns = [list(column) for column in zip(*rows)] if rows else [[] for _ in range(5)]
    words, gold_tags, predicted_tags, gold_intents, predicted_intents = columns
    if not with_intents or not all(gold_intents):
        return Scored(words, gold_tags, predicted_tags)
    return Scored(words, gold_tags, predicted_tags, gold_intents, predicted_intents)


def report_source(checkpoint: str | Path | None, data_dir: str | Path | None, split: str) -> dict[str, Any]:
    """What was scored: the checkpoint file and its SHA-256 (None for weights not loaded from one),
    the data directory and the split."""
    sha256 = None
    if checkpoint is not None and Path(checkpoint).is_file():
        digest = hashlib.sha256()
        with open(checkpoint, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        sha256 = digest.hexdigest()
    return {
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "checkpoint_sha256": sha256,
        "data_dir": None if data_dir is None else str(data_dir),
        "split": split,
    }


def _scores(correct: int, predicted: int, gold: int) -> dict[str, float]:
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def slot_scores(gold_tags: Sequence[Sequence[str]], predicted_tags: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Overall (micro-averaged) and per slot type precision / recall / F1 as fractions, support (gold
    chunks) and `predicted` (predicted chunks, the count conlleval prints at the end of each per-type
    line), as conlleval computes them.

    All come from the chunk counts of `models.spans` that the training metrics use; tests hold them to
    conlleval's rules and to seqeval's conlleval-compatible mode."""
    counts = {"gold": Counter(), "predicted": Counter(), "correct": Counter()}
    for gold, predicted in zip(gold_tags, predicted_tags):
        gold_spans, predicted_spans = set(bio_to_spans(gold)), set(bio_to_spans(predicted))
        counts["gold"].update(span.label for span in gold_spans)
        counts["predicted"].update(span.label for span in predicted_spans)
        counts["correct"].update(span.label for span in gold_spans & predicted_spans)
    totals = {key: sum(counter.values()) for key, counter in counts.items()}
    overall = {**_scores(totals["correct"], totals["predicted"], totals["gold"]), "support": totals["gold"]}
    overall["predicted"] = totals["predicted"]
    names = sorted(counts["gold"].keys() | counts["predicted"].keys())
    types = {
        name: {
            **_scores(counts["correct"][name], counts["predicted"][name], counts["gold"][name]),
            "support": counts["gold"][name],
            "predicted": counts["predicted"][name],
        }
        for name in names
    }
    return {"overall": overall, "types": types}


def _overlaps(a: Span, b: Span) -> int:
    return max(0, min(a.end, b.end) - max(a.start, b.start))


def chunk_confusions(gold: Sequence[str], predicted: Sequence[str]) -> list[tuple[str, str]]:
    """(gold type, predicted type) for every chunk of one sentence that is not exactly right.

    A gold chunk without an exact match pairs with the predicted chunk that overlaps it most (a
    wrong type, or the same type with wrong boundaries), or with `MISSED`; a predicted chunk that
    overlaps no gold chunk pairs `SPURIOUS` with its type."""
    gold_spans, predicted_spans = bio_to_spans(gold), bio_to_spans(predicted)
    exact = set(gold_spans) & set(predicted_spans)
    pairs = []
    for span in gold_spans:
        if span in exact:
            continue
        overlapping = [(_overlaps(span, other), -other.start, other) for other in predicted_spans if other not in exact]
        best = max((item for item in overlapping if item[0] > 0), default=None)
        pairs.append((span.label, best[2].label if best else MISSED))
    for span in predicted_spans:
        if span not in exact and not any(_overlaps(span, other) for other in gold_spans):
            pairs.append((SPURIOUS, span.label))
    return pairs


def intent_scores(gold: Sequence[str], predicted: Sequence[str]) -> dict[str, Any]:
    """Per intent precision / recall / F1 / support, and the confusion counts over every intent
    seen in either column (`matrix[i][j]`: sentences of gold intent i predicted as j)."""
    labels = sorted(set(gold) | set(predicted))
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(matrix, ([index[g] for g in gold], [index[p] for p in predicted]), 1)
    right = np.diag(matrix)
    gold_counts, predicted_counts = matrix.sum(axis=1), matrix.sum(axis=0)
    per_intent = {
        label: {**_scores(int(right[i]), int(predicted_counts[i]), int(gold_counts[i])), "support": int(gold_counts[i])}
        for i, label in enumerate(labels)
    }
    off_diagonal = [
        {"gold": labels[i], "predicted": labels[j], "count": int(matrix[i, j])}
        for i, j in zip(*np.nonzero(matrix))
        if i != j
    ]
    off_diagonal.sort(key=lambda pair: (-pair["count"], pair["gold"], pair["predicted"]))
    return {
        "accuracy": float(right.sum() / max(1, matrix.sum())),
        "intents": per_intent,
        "confusion": {"labels": labels, "matrix": matrix.tolist()},
        "confused_pairs": off_diagonal,
    }


def span_records(words: Sequence[str], tags: Sequence[str]) -> list[dict[str, Any]]:
    """Chunks as the API reports slots: type, value, character offsets into the words joined by
    single spaces (end-exclusive), word offsets."""
    starts = np.cumsum([0] + [len(word) + 1 for word in words]).tolist()
    return [
        {
            "slot": span.label,
            "value": " ".join(words[span.start : span.end]),
            "start": starts[span.start],
            "end": starts[span.end] - 1,
            "token_start": span.start,
            "token_end": span.end,
        }
        for span in bio_to_spans(tags)
    ]


def error_records(scored: Scored) -> list[dict[str, Any]]:
    """One record per sentence with a wrong tag or (when there are intents) a wrong intent."""
    records = []
    for number, (words, gold, predicted) in enumerate(zip(scored.words, scored.gold_tags, scored.predicted_tags)):
        intents_differ = scored.has_intents and scored.gold_intents[number] != scored.predicted_intents[number]
        if list(gold) == list(predicted) and not intents_differ:
            continue
        record: dict[str, Any] = {"sentence": number, "text": " ".join(words)}
        if scored.has_intents:
            record["gold_intent"] = scored.gold_intents[number]
            record["predicted_intent"] = scored.predicted_intents[number]
        record["gold_slots"] = span_records(words, gold)
        record["predicted_slots"] = span_records(words, predicted)
        records.append(record)
    return records


def build_report(scored: Scored, source: dict[str, Any]) -> dict[str, Any]:
    """Everything `report.json` holds; `source` says what was scored (checkpoint, data, split)."""
    slots = slot_scores(scored.gold_tags, scored.predicted_tags)
    pairs = zip(scored.gold_tags, scored.predicted_tags)
    confusions = Counter(pair for gold, predicted in pairs for pair in chunk_confusions(gold, predicted))
    right = [list(g) == list(p) for g, p in zip(scored.gold_tags, scored.predicted_tags)]
    report: dict[str, Any] = {"source": {**source, "sentences": len(scored.words)}, "slots": slots}
    report["slot_confusions"] = [
        {"gold": gold, "predicted": predicted, "count": count}
        for (gold, predicted), count in sorted(confusions.items(), key=lambda item: (-item[1], item[0]))
    ]
    if scored.has_intents:
        report["intents"] = intent_scores(scored.gold_intents, scored.predicted_intents)
        right = [r and g == p for r, g, p in zip(right, scored.gold_intents, scored.predicted_intents)]
    report["sentence_accuracy"] = sum(right) / max(1, len(right))
    return report


def _percent(value: float) -> str:
    return f"{100 * value:.2f}"


def render_markdown(report: dict[str, Any], top: int = TOP_CONFUSIONS) -> str:
    """`report.md`: the report as tables, weakest slot types and intents first."""
    source, slots = report["source"], report["slots"]
    checkpoint = source.get("checkpoint")
    sha256 = source.get("checkpoint_sha256")
    scored = f"`{checkpoint}` (SHA-256 `{sha256[:16]}…`)" if checkpoint and sha256 else "Weights not loaded from a file"
    lines = [
        "# Evaluation report",
        "",
        f"{scored} on the `{source['split']}` split of `{source['data_dir']}`, {source['sentences']} sentences.",
        "",
        "| measure | value |",
        "| --- | ---: |",
        f"| slot precision | {_percent(slots['overall']['precision'])} |",
        f"| slot recall | {_percent(slots['overall']['recall'])} |",
        f"| slot F1 (conlleval) | {_percent(slots['overall']['f1'])} |",
    ]
    if "intents" in report:
        lines.append(f"| intent accuracy | {_percent(report['intents']['accuracy'])} |")
    lines += [f"| sentence accuracy | {_percent(report['sentence_accuracy'])} |", ""]
    lines += [
        "## Slot types by F1",
        "",
        "Support: gold chunks; predicted: chunks the model predicted (conlleval's last column).",
        "",
        "| slot type | precision | recall | F1 | support | predicted |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in sorted(slots["types"].items(), key=lambda item: (item[1]["f1"], -item[1]["support"], item[0])):
        cells = [_percent(row[key]) for key in ("precision", "recall", "f1")]
        lines.append(f"| {name} | {' | '.join(cells)} | {row['support']} | {row['predicted']} |")
    lines += [
        "",
        f"## Most frequent slot confusions (top {top})",
        "",
        f"Each chunk that is not exactly right: gold type → type of the predicted chunk overlapping it most "
        f"(same type: wrong boundaries), {MISSED} when none overlaps; {SPURIOUS} → type for a predicted chunk "
        "overlapping no gold chunk.",
        "",
        "| gold type | predicted type | chunks |",
        "| --- | --- | ---: |",
    ]
    lines += [f"| {row['gold']} | {row['predicted']} | {row['count']} |" for row in report["slot_confusions"][:top]]
    if "intents" in report:
        intents = report["intents"]
        lines += [
            "",
            "## Intents by F1",
            "",
            "| intent | precision | recall | F1 | support |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        ordered = sorted(intents["intents"].items(), key=lambda item: (item[1]["f1"], -item[1]["support"], item[0]))
        for name, row in ordered:
            cells = [_percent(row[key]) for key in ("precision", "recall", "f1")]
            lines.append(f"| {name} | {' | '.join(cells)} | {row['support']} |")
        lines += [
            "",
            f"## Most confused intent pairs (top {top})",
            "",
            "| gold intent | predicted intent | sentences |",
            "| --- | --- | ---: |",
        ]
        lines += [f"| {row['gold']} | {row['predicted']} | {row['count']} |" for row in intents["confused_pairs"][:top]]
    return "\n".join(lines) + "\n"


def write_report(directory: str | Path, scored: Scored, source: dict[str, Any]) -> dict[str, Any]:
    """Write report.json, report.md, errors.jsonl, slot_f1.png and (with intents)
    intent_confusion.png into `directory`; returns the report."""
    from training.report_plots import plot_intent_confusion, plot_slot_f1

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    report = build_report(scored, source)
    (directory / "report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    (directory / "report.md").write_text(render_markdown(report), encoding="utf-8")
    with open(directory / "errors.jsonl", "w", encoding="utf-8") as handle:
        for record in error_records(scored):
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    title = f"{source['split']} split of {source['data_dir']}, {len(scored.words)} sentences"
    plot_slot_f1(report["slots"]["types"], directory / "slot_f1.png", title)
    if "intents" in report:
        plot_intent_confusion(report["intents"]["confusion"], directory / "intent_confusion.png", title)
    return report
