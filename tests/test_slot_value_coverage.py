"""scripts/slot_value_coverage.py: test slot values the training split holds, and recall on each kind."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import slot_value_coverage  # noqa: E402

TRAIN = [
    ("play the beatles".split(), "O B-artist I-artist".split()),
    ("flights to boston".split(), "O O B-city".split()),
]
TEST = [
    ("play The Beatles".split(), "O B-artist I-artist".split()),  # seen (case-normalised)
    ("play the monkees".split(), "O B-artist I-artist".split()),  # unseen value, unseen word
    ("flights to the beatles".split(), "O O B-city I-city".split()),  # seen words, other type
    ("flights to boston".split(), "O O B-city".split()),  # seen
]


def test_coverage_counts_values_by_type() -> None:
    rows = {row.label: row for row in slot_value_coverage.coverage(TRAIN, TEST)}
    assert rows["artist"] == ("artist", 2, 1, 1)
    assert rows["city"] == ("city", 2, 1, 0)


def test_recall_splits_seen_and_unseen_values() -> None:
    values = slot_value_coverage.training_values(TRAIN)
    predicted = [
        "O B-artist I-artist".split(),  # seen, found
        "O B-artist O".split(),  # unseen, missed (wrong end)
        "O O B-city I-city".split(),  # unseen (as a city), found
        "O O O".split(),  # seen, missed
    ]
    rows = [(words, gold, pred) for (words, gold), pred in zip(TEST, predicted)]
    assert slot_value_coverage.recall_by_coverage(values, rows) == ((1, 2), (1, 2))


def test_command_prints_the_table_and_names_a_bad_file(tmp_path: Path, capsys) -> None:
    for split, sentences in (("train", TRAIN), ("test", TEST)):
        folder = tmp_path / split
        folder.mkdir()
        (folder / "seq.in").write_text("".join(" ".join(w) + "\n" for w, _ in sentences))
        (folder / "seq.out").write_text("".join(" ".join(t) + "\n" for _, t in sentences))
        (folder / "label").write_text("x\n" * len(sentences))
    assert slot_value_coverage.main(["--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| artist | 2 | 50.0 | 50.0 |" in out and "| all | 4 | 50.0 | 25.0 |" in out
    bad = tmp_path / "predictions.txt"
    bad.write_text("play O\n")
    assert slot_value_coverage.main(["--data-dir", str(tmp_path), str(bad)]) == 2
    assert f"{bad}:1" in capsys.readouterr().err
