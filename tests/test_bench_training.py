"""scripts/bench_training.py: records restored from the docs' per-run blocks drive --collect."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def bench_training(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    sys.path.insert(0, str(REPO / "scripts"))
    import bench_training

    record = {"config": "atis-lstm", "seed": 1, "test_slot_f1": 95.0, "test_intent_accuracy": 96.0,
              "test_sentence_accuracy": 85.0, "train_epoch_seconds": 10.0, "fit_wall_seconds": 300.0,
              "best_epoch": 20}  # fmt: skip
    other = dict(record, seed=2, test_slot_f1=95.5)
    doc = tmp_path / "benchmarks.md"
    block = "Per-run figures:\n\n```\n" + "\n".join(json.dumps(r) for r in (record, other)) + "\n```\n"
    doc.write_text("# Benchmarks\n\n" + block + "\nlater section\n\n" + block)  # the same runs in two sections
    monkeypatch.setattr(bench_training, "DOC", doc)
    return bench_training


def test_restore_records_adds_each_docs_record_once(bench_training, tmp_path: Path) -> None:
    out_dir = tmp_path / "runs"
    out_dir.mkdir()
    assert bench_training.restore_records(out_dir) == 2
    assert bench_training.restore_records(out_dir) == 0  # already there
    lines = (out_dir / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["seed"] for line in lines] == [1, 2]
    results = bench_training.collect(["atis-lstm:2"], out_dir)
    assert [r["test_slot_f1"] for r in results] == [95.0, 95.5]
    assert "| atis-lstm | 2 | 95.25 (95.00–95.50) |" in bench_training.table(results)


def test_best_validation_row_is_the_first_epoch_at_the_highest_f1(bench_training) -> None:
    # ModelCheckpoint keeps the first of tied epochs, so the recorded figures must come from it.
    rows = [{"epoch": "0", "val/slot_f1": "0.90", "val/intent_accuracy": "0.95"},
            {"epoch": "0", "train/loss_step": "1.0"},
            {"epoch": "1", "val/slot_f1": "0.98", "val/intent_accuracy": "0.98"},
            {"epoch": "2", "val/slot_f1": "0.97", "val/intent_accuracy": "0.99"},
            {"epoch": "3", "val/slot_f1": "0.98", "val/intent_accuracy": "0.96"}]  # fmt: skip
    val_rows = bench_training.validation_rows(rows)
    assert [r["epoch"] for r in val_rows] == ["0", "1", "2", "3"]
    assert bench_training.best_validation_row(val_rows)["epoch"] == "1"
    rows[3]["val/slot_f1"] = "0.99"
    assert bench_training.best_validation_row(val_rows)["epoch"] == "2"
