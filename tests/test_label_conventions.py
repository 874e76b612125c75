"""scripts/label_conventions.py: slot errors that follow the training set's own labels."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import label_conventions  # noqa: E402


def write_train(root: Path, lines: list[tuple[str, str]]) -> Path:
    split = root / "train"
    split.mkdir(parents=True)
    (split / "seq.in").write_text("".join(words + "\n" for words, _ in lines))
    (split / "seq.out").write_text("".join(tags + "\n" for _, tags in lines))
    (split / "label").write_text("atis_flight\n" * len(lines))
    return split


def write_predictions(path: Path, sentences: list[list[tuple[str, str, str]]]) -> Path:
    path.write_text("".join("".join(f"{w} {g} {p}\n" for w, g, p in s) + "\n" for s in sentences))
    return path


TRAIN = [
    ("flights before noon", "O B-depart_time.time_relative B-depart_time.time"),
    ("leave before noon", "O B-depart_time.time_relative B-depart_time.time"),
    ("flights to denver", "O O B-toloc.city_name"),
    ("fares in denver", "O O B-city_name"),
    ("fares in denver", "O O B-city_name"),
]


def test_counts_a_type_error_that_training_labels_the_models_way(tmp_path: Path, capsys) -> None:
    train = write_train(tmp_path / "data", TRAIN)
    predictions = write_predictions(
        tmp_path / "predictions.txt",
        [
            # test says period_of_day, training twice says time after "before": a conflict
            [
                ("before", "B-depart_time.time_relative", "B-depart_time.time_relative"),
                ("noon", "B-depart_time.period_of_day", "B-depart_time.time"),
            ],
            # training says city_name after "in" (2 against 0): the model's toloc is its own error
            [("in", "O", "O"), ("denver", "B-city_name", "B-toloc.city_name")],
            # a boundary error is never a conflict
            [("to", "O", "O"), ("new", "B-toloc.city_name", "B-toloc.city_name"), ("york", "I-toloc.city_name", "O")],
        ],
    )
    table = label_conventions.phrase_labels([(train_words.split(), tags.split()) for train_words, tags in TRAIN])
    sentences = label_conventions.read_predictions(predictions)
    found = [c for s in sentences for c in label_conventions.find_conflicts(s, table)]
    assert found == [
        label_conventions.Conflict("before", "noon", "depart_time.period_of_day", "depart_time.time", 0, 2)
    ]
    assert label_conventions.find_conflicts(sentences[0], table, min_count=3) == []

    label_conventions.main([str(predictions), "--train", str(train)])
    out = capsys.readouterr().out
    # 4 gold chunks, 4 predicted, 1 right -> F1 25.00; with the conflict right, 2 -> 50.00
    assert f"| {predictions} | 25.00 | 1 | 50.00 |" in out
    assert "before [noon]  depart_time.period_of_day -> depart_time.time  (training: 0 vs 2)" in out


def test_a_malformed_predictions_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "predictions.txt"
    path.write_text("show O O\nme O\n")
    with pytest.raises(SystemExit, match=r"predictions\.txt:2: expected 'word gold predicted'"):
        label_conventions.read_predictions(path)


def test_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"nowhere\.txt: file not found"):
        label_conventions.read_predictions(tmp_path / "nowhere.txt")
    predictions = write_predictions(tmp_path / "predictions.txt", [[("to", "O", "O")]])
    with pytest.raises(SystemExit, match="split 'train' not found"):
        label_conventions.main([str(predictions), "--train", str(tmp_path / "train")])
