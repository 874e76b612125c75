"""scripts/bench_training.py: records appended to a JSON-lines file, and the tables rendered from it."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import bench_training  # noqa: E402


def record(config: str, seed: int, f1: float, **more) -> dict:
    return {"config": config, "seed": seed, "test_slot_f1": f1, "test_intent_accuracy": 96.0,
            "test_sentence_accuracy": 85.0, "val_slot_f1": 97.0 + seed / 10, "fit_wall_seconds": 300.0 + seed,
            "commit": f"{seed}" * 40, "date": f"2026-12-0{seed}", "machine": "x86_64, 2 CPU cores",
            "threads": 1, **more}  # fmt: skip


def test_parse_seeds_and_seed_text_invert_each_other() -> None:
    assert bench_training.parse_seeds("3") == [1, 2, 3]
    assert bench_training.parse_seeds("4-6") == [4, 5, 6]
    assert bench_training.parse_seeds("1-3,5-9") == [1, 2, 3, 5, 6, 7, 8, 9]
    assert bench_training.parse_seeds("2,7") == [2, 7]
    for seeds in ([1, 2, 3], [4], [1, 2, 3, 5, 6, 7, 8, 9], [2, 7]):
        assert bench_training.parse_seeds(bench_training.seed_text(seeds)) == seeds
    assert bench_training.seed_text([3, 1, 2]) == "3"
    with pytest.raises(ValueError, match="bad seeds"):
        bench_training.parse_seeds("1-x")
    assert bench_training.parse_spec("atis-lstm:2-3 --model.tagger.decoder=crf") == (
        "atis-lstm",
        ["--model.tagger.decoder=crf"],
        [2, 3],
    )
    label = bench_training.spec_label("atis-lstm:2-3 --model.tagger.decoder=crf")
    assert label == "atis-lstm --model.tagger.decoder=crf"


def test_records_are_appended_and_read_back_in_order(tmp_path: Path) -> None:
    path = tmp_path / "benchmarks" / "records.jsonl"
    first, second = record("atis-lstm", 1, 95.0), record("atis-lstm", 2, 95.5)
    bench_training.append_record(first, path)
    bench_training.append_record(second, path)
    assert path.read_text().count("\n") == 2
    assert bench_training.read_records(path) == [first, second]


def test_a_bad_records_line_is_named_by_its_line_number(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    path.write_text(json.dumps(record("atis-lstm", 1, 95.0)) + "\n{not json\n")
    with pytest.raises(SystemExit, match=r"records.jsonl:2: not JSON"):
        bench_training.read_records(path)
    path.write_text('{"seed": 1}\n')
    with pytest.raises(SystemExit, match=r"records.jsonl:1: a record needs"):
        bench_training.read_records(path)


def test_the_newest_record_of_a_seed_wins_and_missing_seeds_are_named() -> None:
    records = [record("atis-lstm", 1, 94.0), record("atis-lstm", 2, 95.5), record("atis-lstm", 1, 95.0),
               record("atis-lstm --model.tagger.decoder=crf", 1, 90.0)]  # fmt: skip
    newest = bench_training.newest_by_seed(records, "atis-lstm")
    assert [(r["seed"], r["test_slot_f1"]) for r in newest] == [(1, 95.0), (2, 95.5)]
    assert [r["test_slot_f1"] for r in bench_training.select(records, ["atis-lstm:2"])] == [95.0, 95.5]
    with pytest.raises(SystemExit, match="no record of 'atis-lstm' seed 3"):
        bench_training.select(records, ["atis-lstm:3"])


def test_table_gives_median_and_range_over_seeds() -> None:
    runs = [record("atis-gru", seed, f1) for seed, f1 in ((1, 95.30), (2, 95.64), (3, 95.38), (4, 95.50))]
    runs.append(record("snips-lstm", 1, 85.2))
    runs[1].pop("val_slot_f1")  # an older record without validation figures
    lines = bench_training.table(runs).splitlines()
    assert lines[0].startswith("| config | seeds | test slot F1 |")
    gru = lines[2].split(" | ")
    assert gru[1] == "4"
    assert gru[2] == "95.44 (95.30–95.64)"  # median of four: the mean of the middle two
    assert gru[5] == "97.30 (97.10–97.40) (3 of 4)"
    assert gru[6] == "—"  # no record has validation intent
    assert gru[-1].rstrip(" |") == "302 (301–304)"
    assert lines[3].split(" | ")[2] == "85.20"  # one seed: the value alone


def test_render_rewrites_only_the_marked_sections(tmp_path: Path) -> None:
    crf = "atis-lstm --model.tagger.decoder=crf"
    records = [record("atis-lstm", 1, 95.0), record("atis-lstm", 2, 96.0), record("atis-lstm", 3, 95.2),
               record(crf, 1, 99.0), record("atis-gru", 1, 94.0, note="alone")]  # fmt: skip
    sections = bench_training.render_sections(records, ["atis-gru", "atis-lstm", "snips-best"])
    shipped = sections["shipped-configs"].splitlines()
    assert [line.split(" | ")[0] for line in shipped[2:]] == ["| atis-gru", "| atis-lstm"]  # no snips-best record
    assert " | 95.20 (95.00–96.00) | " in shipped[3]  # the override's 99.0 is not atis-lstm
    provenance = sections["shipped-provenance"]
    assert "`python scripts/bench_training.py --runs atis-lstm:3`" in provenance
    assert "`1111111`, `2222222`, `3333333`" in provenance and "2026-12-01 – 2026-12-03" in provenance
    assert "| alone |" in provenance
    timing = [
        record("atis-gru", 4, 95.1, train_epoch_seconds=8.04, epochs=30, command="cmd", threads=2),
        record("atis-lstm --model.tagger.decoder=crf", 4, 95.1, train_epoch_seconds=8.0, epochs=30, command="x"),
    ]
    rows = bench_training.render_sections(records, ["atis-gru"], timing)["shipped-timing"].splitlines()[2:]
    assert rows == ["| atis-gru | `cmd` | 304 | 8.0 | 30 | 95.10 / 96.00 / 85.00 | 2 | `4444444` |"]
    doc = tmp_path / "benchmarks.md"
    doc.write_text(
        "# B\n\nprose\n<!-- shipped-configs:start -->\nold\n<!-- shipped-configs:end -->\nmiddle\n"
        "<!-- shipped-provenance:start -->\n<!-- shipped-provenance:end -->\nend\n"
    )
    bench_training.write_sections(doc, sections)
    text = doc.read_text()
    assert "old" not in text and text.startswith("# B\n\nprose\n") and text.endswith("end\n")
    assert f"<!-- shipped-configs:start -->\n{sections['shipped-configs']}\n<!-- shipped-configs:end -->" in text
    bench_training.write_sections(doc, sections)
    assert doc.read_text() == text  # rendering twice changes nothing
    doc.write_text("# no markers\n")
    with pytest.raises(SystemExit, match="no '<!-- shipped-configs:start -->'"):
        bench_training.write_sections(doc, sections)


def test_main_render_and_table_read_the_records_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "records.jsonl"
    for seed, f1 in ((1, 95.0), (2, 95.5)):
        bench_training.append_record(record("atis-lstm", seed, f1), path)
    bench_training.main(["--table", "atis-lstm:2", "--records", str(path)])
    assert "| atis-lstm | 2 | 95.25 (95.00–95.50) |" in capsys.readouterr().out
    doc = tmp_path / "benchmarks.md"
    doc.write_text("<!-- shipped-configs:start -->\n<!-- shipped-configs:end -->\n"
                   "<!-- shipped-provenance:start -->\n<!-- shipped-provenance:end -->\n")  # fmt: skip
    bench_training.main(["--render", "--records", str(path), "--doc", str(doc), "--timing", str(tmp_path / "none")])
    assert "| atis-lstm | 2 | 95.25 (95.00–95.50) |" in doc.read_text()


def test_the_repository_records_render_every_shipped_config() -> None:
    """benchmarks/records.jsonl is valid, and docs/benchmarks.md holds what --render makes of it."""
    records = bench_training.read_records()
    timing = bench_training.read_records(bench_training.TIMING)
    assert all({"config", "seed", "test_slot_f1", "commit", "machine"} <= r.keys() for r in records + timing)
    sections = bench_training.render_sections(records, bench_training.shipped_configs(), timing)
    assert set(sections) == {"shipped-configs", "shipped-provenance", "shipped-timing"}
    doc = bench_training.DOC.read_text()
    for name, body in sections.items():
        assert f"<!-- {name}:start -->\n{body}\n<!-- {name}:end -->" in doc, f"rerun --render: {name} is stale"


def test_best_validation_row_is_the_first_epoch_at_the_highest_f1() -> None:
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


def write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fields)
        writer.writeheader()
        writer.writerows(rows)


def test_run_figures_read_a_finished_run(tmp_path: Path) -> None:
    """The figures of a run come from its two metrics.csv files, its predictions and its checkpoint."""
    run = tmp_path / "run"
    write_csv(run / "fit" / "metrics.csv", [
        {"epoch": 0, "train/loss_step": 2.0, "train/epoch_seconds": 10.0},
        {"epoch": 0, "val/slot_f1": 0.5, "val/intent_accuracy": 0.6, "val/sentence_accuracy": 0.3},
        {"epoch": 1, "train/loss_step": 1.0, "train/epoch_seconds": 12.0},
        {"epoch": 1, "val/slot_f1": 0.8, "val/intent_accuracy": 0.9, "val/sentence_accuracy": 0.7},
    ])  # fmt: skip
    # two gold chunks, one found: precision 1, recall 1/2, F1 2/3
    (run / "test").mkdir()
    (run / "test" / "predictions.txt").write_text("from O O\nboston B-city B-city\n\nto O O\ndallas B-city O\n\n")
    write_csv(run / "test" / "metrics.csv", [{"test/slot_f1": 2 / 3, "test/intent_accuracy": 1.0,
                                              "test/sentence_accuracy": 0.5}])  # fmt: skip
    best = tmp_path / "best.ckpt"
    torch.save({"epoch": 1, "state_dict": {"w": torch.zeros(3, 4), "b": torch.zeros(4)}}, best)
    figures = bench_training.run_figures(run, best, fit_seconds=42.0)
    assert figures["val_slot_f1"] == pytest.approx(80.0) and figures["best_epoch"] == 1
    assert figures["test_slot_f1"] == pytest.approx(200 / 3) == pytest.approx(figures["seqeval_slot_f1"])
    assert figures["train_epoch_seconds"] == 11.0 and figures["epochs"] == 2 and figures["parameters"] == 16
    assert figures["fit_wall_seconds"] == 42.0 and figures["diverged"] is False
    torch.save({"epoch": 0, "state_dict": {}}, best)
    with pytest.raises(RuntimeError, match="from epoch 0, its metrics.csv says 1"):
        bench_training.run_figures(run, best, fit_seconds=42.0)
