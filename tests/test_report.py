"""The evaluation report `test` writes (training.report) and the training curves (training.curves)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from training import curves
from training.cli import main, run_cli
from training.data import read_conlleval_file
from training.metrics import SpanF1
from training.report import (
    MISSED,
    SPURIOUS,
    Scored,
    chunk_confusions,
    error_records,
    intent_scores,
    scored_from_rows,
    slot_scores,
    write_report,
)

REPO = Path(__file__).resolve().parents[1]

# conlleval input with the chunks that trip up simple readers (word, gold, predicted):
# sentence 1: a predicted type change inside a chunk (B-a I-b), an I-b that continues it over a gold O,
#             and an I-c after O (gold) and after I-b (predicted), which opens a chunk on both sides;
# sentence 2: a spurious chunk, a gold chunk split in two by a second B-b, and a gold I-a after I-b;
# sentence 3: an I-b opening the sentence, and a missed chunk.
TRICKY = """\
w1 B-a B-a
w2 I-a I-b
w3 O I-b
w4 I-c I-c

w1 O B-a
w2 B-b B-b
w3 I-b B-b
w4 I-a I-a
w5 I-a I-a

w1 I-b I-b
w2 O O
w3 B-c O
"""
# What conlleval prints for TRICKY, worked out by hand from its chunking rules (a chunk starts at B-x,
# at I-x after O, and at I-x after another type; a predicted chunk is correct when type, start and end
# all match): gold chunks a[0,2) c[3,4) | b[1,3) a[3,5) | b[0,1) c[2,3); predicted a[0,1) b[1,3)
# c[3,4) | a[0,1) b[1,2) b[2,3) a[3,5) | b[0,1); correct c[3,4), a[3,5), b[0,1).
#   processed 12 tokens with 6 phrases; found: 8 phrases; correct: 3.
#   accuracy: ...; precision:  37.50%; recall:  50.00%; FB1:  42.86
#                 a: precision:  33.33%; recall:  50.00%; FB1:  40.00  3
#                 b: precision:  25.00%; recall:  50.00%; FB1:  33.33  4
#                 c: precision: 100.00%; recall:  50.00%; FB1:  66.67  1
CONLLEVAL_TYPES = {"a": (33.33, 50.00, 40.00, 3), "b": (25.00, 50.00, 33.33, 4), "c": (100.00, 50.00, 66.67, 1)}
CONLLEVAL_OVERALL = (37.50, 50.00, 42.86)
GOLD_CHUNKS = {"a": 2, "b": 2, "c": 2}


def tricky_rows(tmp_path: Path) -> list[tuple[list[str], list[str], list[str]]]:
    path = tmp_path / "predictions.txt"
    path.write_text(TRICKY)
    return read_conlleval_file(path)


def percent(value: float) -> float:
    return round(100 * value, 2)


def test_per_type_and_overall_scores_are_conllevals(tmp_path: Path) -> None:
    rows = tricky_rows(tmp_path)
    scores = slot_scores([gold for _, gold, _ in rows], [predicted for _, _, predicted in rows])
    printed = {
        name: (percent(row["precision"]), percent(row["recall"]), percent(row["f1"]), row["predicted"])
        for name, row in scores["types"].items()
    }
    assert printed == CONLLEVAL_TYPES
    assert {name: row["support"] for name, row in scores["types"].items()} == GOLD_CHUNKS
    overall = scores["overall"]
    assert (percent(overall["precision"]), percent(overall["recall"]), percent(overall["f1"])) == CONLLEVAL_OVERALL
    assert (overall["support"], overall["predicted"]) == (6, 8)
    # the training metric agrees to the last bit
    metric = SpanF1()
    metric.update([predicted for _, _, predicted in rows], [gold for _, gold, _ in rows])
    assert {key: float(value) for key, value in metric.compute().items()} == {
        key: overall[key] for key in ("precision", "recall", "f1")
    }


TAGS = st.sampled_from(["O", "B-x", "I-x", "B-y", "I-y", "B-z", "I-z"])
SENTENCE = st.integers(min_value=1, max_value=8).flatmap(
    lambda n: st.tuples(st.lists(TAGS, min_size=n, max_size=n), st.lists(TAGS, min_size=n, max_size=n))
)


@settings(max_examples=150, deadline=None)
@given(st.lists(SENTENCE, min_size=1, max_size=6))
def test_per_type_figures_equal_seqevals_conlleval_mode(sentences) -> None:
    """The report counts chunks with `models.spans`; seqeval, a separately kept implementation of
    conlleval's chunking, must give the same per-type figures on any tag sequences."""
    from seqeval.metrics.sequence_labeling import precision_recall_fscore_support

    gold = [list(g) for g, _ in sentences]
    predicted = [list(p) for _, p in sentences]
    scores = slot_scores(gold, predicted)
    if not scores["types"]:
        return
    names = sorted(scores["types"])  # seqeval orders the types by name
    columns = precision_recall_fscore_support(gold, predicted, average=None, zero_division=0)
    for name, precision, recall, f1, support in zip(names, *columns, strict=True):
        row = scores["types"][name]
        assert row["support"] == int(support)
        assert row["precision"] == pytest.approx(float(precision), abs=1e-12)
        assert row["recall"] == pytest.approx(float(recall), abs=1e-12)
        assert row["f1"] == pytest.approx(float(f1), abs=1e-12)


def test_confusions_pair_each_wrong_chunk_with_what_was_predicted_there(tmp_path: Path) -> None:
    rows = tricky_rows(tmp_path)
    pairs = [chunk_confusions(gold, predicted) for _, gold, predicted in rows]
    # a[0,2) overlaps a[0,1) and b[1,3) by one word each: the earlier one wins (same type, boundary error)
    assert pairs[0] == [("a", "a")]
    assert pairs[1] == [("b", "b"), (SPURIOUS, "a")]
    assert pairs[2] == [("c", MISSED)]
    assert chunk_confusions(["B-city", "I-city"], ["B-state", "I-state"]) == [("city", "state")]


def test_intent_scores_and_confusion_counts() -> None:
    gold = ["flight", "flight", "flight", "fare", "fare", "meal"]
    predicted = ["flight", "flight", "fare", "fare", "flight", "ground"]
    result = intent_scores(gold, predicted)
    assert result["confusion"]["labels"] == ["fare", "flight", "ground", "meal"]
    assert result["confusion"]["matrix"] == [[1, 1, 0, 0], [1, 2, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0]]
    flight = result["intents"]["flight"]
    assert (flight["precision"], flight["recall"], flight["support"]) == (2 / 3, 2 / 3, 3)
    assert result["intents"]["meal"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert result["intents"]["ground"]["support"] == 0
    assert result["accuracy"] == 3 / 6
    assert [(p["gold"], p["predicted"], p["count"]) for p in result["confused_pairs"]] == [
        ("fare", "flight", 1),
        ("flight", "fare", 1),
        ("meal", "ground", 1),
    ]


def test_errors_list_every_wrong_sentence_with_offsets_into_the_text(tmp_path: Path) -> None:
    rows = tricky_rows(tmp_path)
    words = [w for w, _, _ in rows] + [["all", "right"]]
    gold = [g for _, g, _ in rows] + [["O", "O"]]
    predicted = [p for _, _, p in rows] + [["O", "O"]]
    scored = Scored(words, gold, predicted, ["i", "i", "i", "j"], ["i", "i", "i", "k"])
    records = error_records(scored)
    assert [r["sentence"] for r in records] == [0, 1, 2, 3]  # the last one for its intent alone
    assert (records[3]["gold_intent"], records[3]["predicted_intent"]) == ("j", "k")
    for record in records:
        for span in record["gold_slots"] + record["predicted_slots"]:
            assert record["text"][span["start"] : span["end"]] == span["value"]
    assert records[1]["predicted_slots"][0] == {
        "slot": "a", "value": "w1", "start": 0, "end": 2, "token_start": 0, "token_end": 1
    }  # fmt: skip
    no_intents = error_records(Scored(words, gold, predicted))
    assert [r["sentence"] for r in no_intents] == [0, 1, 2]
    assert "gold_intent" not in no_intents[0]


def test_rows_keep_intents_only_when_every_sentence_has_one() -> None:
    row = (["a"], ["O"], ["O"], "flight", "flight")
    assert scored_from_rows([row], with_intents=True).has_intents
    assert not scored_from_rows([row], with_intents=False).has_intents
    assert not scored_from_rows([row, (["b"], ["O"], ["O"], "", "flight")], with_intents=True).has_intents
    with pytest.raises(ValueError, match="sentence 0: 1 words, 1 gold tags, 2 predicted tags"):
        Scored([["a"]], [["O"]], [["O", "O"]])


def synthetic(n_types: int, n_sentences: int, seed: int = 0) -> tuple[list, list, list]:
    rng = random.Random(seed)
    words, gold, predicted = [], [], []
    for _ in range(n_sentences):
        kind = f"type_{rng.randrange(n_types)}.long_name"
        words.append(["w1", "w2", "w3"])
        gold.append(["O", f"B-{kind}", f"I-{kind}"])
        predicted.append(["O", f"B-{kind}", "O"] if rng.random() < 0.3 else ["O", f"B-{kind}", f"I-{kind}"])
    return words, gold, predicted


def test_report_files_with_intents(tmp_path: Path) -> None:
    words, gold, predicted = synthetic(12, 200)
    intents = [f"intent_{i % 5}" for i in range(200)]
    guessed = [intents[i] if i % 7 else "intent_0" for i in range(200)]
    source = {"checkpoint": None, "checkpoint_sha256": None, "data_dir": "data/x", "split": "test"}
    report = write_report(tmp_path, Scored(words, gold, predicted, intents, guessed), source)
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {"report.json", "report.md", "errors.jsonl", "slot_f1.png", "intent_confusion.png"}
    assert json.loads((tmp_path / "report.json").read_text()) == report
    assert report["source"]["sentences"] == 200 and len(report["slots"]["types"]) == 12
    markdown = (tmp_path / "report.md").read_text()
    assert "## Most confused intent pairs" in markdown and "| intent_1 | intent_0 |" in markdown
    slot_section = markdown.split("## Slot types by F1")[1].split("##")[0]
    f1_rows = [line for line in slot_section.splitlines() if line.startswith("| type_")]
    f1_values = [float(line.split("|")[4]) for line in f1_rows]
    assert len(f1_rows) == 12 and f1_values == sorted(f1_values)  # weakest first
    wrong = sum(g != p for g, p in zip(gold, predicted)) + sum(
        g == p and a != b for g, p, a, b in zip(gold, predicted, intents, guessed)
    )
    assert len((tmp_path / "errors.jsonl").read_text().splitlines()) == wrong
    for name in ("slot_f1.png", "intent_confusion.png"):
        assert (tmp_path / name).stat().st_size < 150_000


def test_report_files_without_intents_and_pictures_sized_to_the_classes(tmp_path: Path) -> None:
    heights = []
    for n_types in (3, 40):
        out = tmp_path / str(n_types)
        report = write_report(out, Scored(*synthetic(n_types, 400)), {"data_dir": "d", "split": "test"})
        assert "intents" not in report and not (out / "intent_confusion.png").exists()
        assert "intent" not in (out / "report.md").read_text()
        with Image.open(out / "slot_f1.png") as image:
            heights.append(image.height)
    # 19 pixels a row at 100 dpi: 37 more rows, 700 more pixels
    assert heights[1] - heights[0] == pytest.approx(37 * 19, abs=2)


def test_report_on_sentences_without_chunks(tmp_path: Path) -> None:
    report = write_report(tmp_path, Scored([["a", "b"]], [["O", "O"]], [["O", "O"]]), {"data_dir": "d", "split": "t"})
    assert report["slots"]["types"] == {} and report["sentence_accuracy"] == 1.0
    assert (tmp_path / "slot_f1.png").is_file() and (tmp_path / "errors.jsonl").read_text() == ""


def test_cli_test_writes_the_report_next_to_the_predictions(tiny_checkpoint: Path, tmp_path: Path) -> None:
    data_dir = tiny_checkpoint.parents[1] / "data"
    cli = run_cli(
        [
            "test", "--config", str(REPO / "configs" / "atis-lstm.yaml"), f"--data.data_dir={data_dir}",
            "--model.tagger.embedding_dim=16", "--model.tagger.hidden_size=16", "--trainer.enable_progress_bar=false",
            f"--trainer.logger.init_args.save_dir={tmp_path}", f"--ckpt_path={tiny_checkpoint}",
        ]
    )  # fmt: skip
    (predictions,) = tmp_path.rglob("predictions.txt")
    folder = predictions.parent
    report = json.loads((folder / "report.json").read_text())
    rows = read_conlleval_file(predictions)
    expected = slot_scores([g for _, g, _ in rows], [p for _, _, p in rows])
    assert report["slots"] == json.loads(json.dumps(expected))
    metrics = cli.trainer.callback_metrics
    assert report["slots"]["overall"]["f1"] == pytest.approx(float(metrics["test/slot_f1"]), abs=1e-6)
    assert report["intents"]["accuracy"] == pytest.approx(float(metrics["test/intent_accuracy"]), abs=1e-6)
    assert report["sentence_accuracy"] == pytest.approx(float(metrics["test/sentence_accuracy"]), abs=1e-6)
    source = report["source"]
    assert source["checkpoint"] == str(tiny_checkpoint) and source["split"] == "test" and source["sentences"] == 30
    import hashlib

    assert source["checkpoint_sha256"] == hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest()
    assert {"report.md", "errors.jsonl", "slot_f1.png", "intent_confusion.png"} <= {p.name for p in folder.iterdir()}


@pytest.mark.parametrize("config", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_every_shipped_config_tests_with_a_report(config: str, tiny_data: Path, tmp_path: Path) -> None:
    """Untrained weights (no checkpoint) make plenty of mistakes to report, with either decoder."""
    run_cli(
        [
            "test", "--config", str(REPO / "configs" / config), f"--data.data_dir={tiny_data}",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
        ]
    )  # fmt: skip
    (report_path,) = tmp_path.rglob("report.json")
    report = json.loads(report_path.read_text())
    assert report["source"]["checkpoint"] is None and report["source"]["sentences"] == 30
    assert (report_path.parent / "slot_f1.png").is_file() and (report_path.parent / "intent_confusion.png").is_file()


def test_cli_test_without_an_intent_head_leaves_intents_out(tiny_data: Path, tmp_path: Path) -> None:
    run_cli(
        [
            "test", "--config", str(REPO / "configs" / "atis-lstm.yaml"), f"--data.data_dir={tiny_data}",
            "--model.tagger.intent_head=false", "--model.tagger.embedding_dim=8", "--model.tagger.hidden_size=8",
            "--trainer.enable_progress_bar=false", f"--trainer.logger.init_args.save_dir={tmp_path}",
        ]
    )  # fmt: skip
    (report_path,) = tmp_path.rglob("report.json")
    assert "intents" not in json.loads(report_path.read_text())
    assert not (report_path.parent / "intent_confusion.png").exists()


def test_training_curves_of_a_cli_run(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    parent = tiny_checkpoint.parents[1] / "runs" / "atis-lstm"
    run = curves.read_run(parent)  # the newest version_N below
    assert run.folder.name.startswith("version_") and run.clip_value == 5.0 and run.clip_algorithm == "norm"
    f1 = run.per_epoch["val/slot_f1"]
    assert sorted(f1) == list(range(6)) and len(run.per_step["train/grad_norm"]) > 6
    assert curves.best_epoch(run) == min(e for e, v in f1.items() if v == max(f1.values()))
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(run.folder), "--out", str(tmp_path)])
    assert exit_info.value.code == 0
    with Image.open(tmp_path / curves.FILE_NAME) as image:
        assert image.width >= 700 and image.height >= 800
    assert str(tmp_path / curves.FILE_NAME) in capsys.readouterr().out


DDP_METRICS = """\
epoch,step,train/grad_norm,train/loss_epoch,train/loss_step,val/loss,val/slot_f1
0,0,11.7,,25.9,,
0,1,10.6,,25.2,,
0,1,,,,23.3,0.10
0,1,,25.3,,,
1,2,10.1,,24.2,,
1,3,9.1,,21.7,,
1,3,,,,21.6,0.30
1,3,,23.0,,,
2,4,9.2,,23.2,,
2,5,9.8,,21.0,,
2,5,,,,20.1,0.30
2,5,,22.0,,,
,5,,,,,
"""


def test_training_curves_read_the_rows_a_ddp_run_writes(tmp_path: Path) -> None:
    """Under DDP process 0 writes one row per step, then the validation and epoch rows at the
    epoch's last step; a later `test` in the same folder adds rows without an epoch."""
    (tmp_path / "metrics.csv").write_text(DDP_METRICS)
    (tmp_path / "config.yaml").write_text("trainer:\n  gradient_clip_val: null\ncheckpoint:\n  monitor: val/slot_f1\n")
    run = curves.read_run(tmp_path)
    assert run.per_epoch["val/slot_f1"] == {0: 0.10, 1: 0.30, 2: 0.30}
    assert run.per_epoch["train/loss_epoch"] == {0: 25.3, 1: 23.0, 2: 22.0}
    assert [step for step, _ in run.per_step["train/grad_norm"]] == [0, 1, 2, 3, 4, 5]
    assert run.epoch_end_step == {0: 1, 1: 3, 2: 5} and run.clip_value is None
    assert curves.best_epoch(run) == 1  # the first of equal scores, as the checkpoint keeps it
    assert curves.main([str(tmp_path)]) == 0 and (tmp_path / curves.FILE_NAME).is_file()


def test_training_curves_refuse_folders_without_training_metrics(tmp_path: Path, capsys) -> None:
    assert curves.main([str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert curves.main([str(tmp_path)]) == 2
    assert "no metrics.csv" in capsys.readouterr().err
    (tmp_path / "metrics.csv").write_text("epoch,step,test/slot_f1\n,0,0.5\n")
    assert curves.main([str(tmp_path)]) == 2
    assert "no training metrics" in capsys.readouterr().err
    (tmp_path / "metrics.csv").write_text("epoch,step,train/loss_step\n0,zero,1.0\n")
    assert curves.main([str(tmp_path)]) == 2
    assert "metrics.csv:2: not a number: 'zero'" in capsys.readouterr().err
