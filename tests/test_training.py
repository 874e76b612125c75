"""The Lightning side end to end: configs parse, a real CLI fit on an ATIS subset, test, predict."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml
from seqeval.metrics import f1_score

from models.checkpoint import load_bundle
from models.tagger import TaggerOptions
from models.vocab import encode_characters, pad_characters
from training.cli import main, run_cli
from training.module import SlotTaggerModule

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_every_config_parses_and_clips(config: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["trainer"]["gradient_clip_val"] > 0
    assert printed["trainer"]["gradient_clip_algorithm"] in ("value", "norm")
    assert printed["checkpoint"]["monitor"] == "val/slot_f1"
    assert set(printed["model"]) == {"tagger", "intent_loss_weight", "lr", "predictions_file"}
    assert "session" not in config.read_text().lower()  # configs say why a value is what it is, not its history


def read_conlleval(path: Path) -> tuple[list[list[str]], list[list[str]]]:
    gold, predicted, sentence_gold, sentence_predicted = [], [], [], []
    for line in path.read_text().split("\n"):
        if not line:
            if sentence_gold:
                gold.append(sentence_gold)
                predicted.append(sentence_predicted)
            sentence_gold, sentence_predicted = [], []
            continue
        word, gold_tag, predicted_tag = line.split(" ")
        sentence_gold.append(gold_tag)
        sentence_predicted.append(predicted_tag)
    return gold, predicted


@pytest.fixture(scope="module")
def atis_run(tmp_path_factory, shared_atis) -> dict:
    """Three epochs of the shipped ATIS config on a 1,000-sentence subset, through the CLI."""
    root = tmp_path_factory.mktemp("atis_run")
    common = [
        "--config",
        str(REPO / "configs" / "atis-lstm.yaml"),
        f"--data.data_dir={shared_atis}",
        "--trainer.enable_progress_bar=false",
        f"--trainer.logger.init_args.save_dir={root / 'runs'}",
        f"--checkpoint.dirpath={root / 'checkpoints'}",
    ]
    fit = run_cli(["fit", *common, "--data.train_limit=1000", "--trainer.max_epochs=3"])
    best = root / "checkpoints" / "best.ckpt"
    test = run_cli(["test", *common, "--data.train_limit=1000", f"--ckpt_path={best}"])
    return {"root": root, "fit": fit, "test": test, "best": best, "common": common}


def test_fit_writes_best_and_last_with_a_bundle(atis_run) -> None:
    root = atis_run["root"]
    assert (root / "checkpoints" / "best.ckpt").is_file() and (root / "checkpoints" / "last.ckpt").is_file()
    loaded = load_bundle(atis_run["best"])
    module = atis_run["fit"].model
    assert loaded.config == module.config
    assert loaded.vocabulary.tokens == module.vocabulary.tokens
    assert loaded.slot_tags == module.slot_tags and loaded.intents == module.intents
    assert 0.0 < loaded.metrics["val/slot_f1"] <= 1.0


def test_the_config_sets_the_tagger_and_the_data_its_sizes(atis_run) -> None:
    module, data = atis_run["fit"].model, atis_run["fit"].datamodule
    config = yaml.safe_load((REPO / "configs" / "atis-lstm.yaml").read_text())["model"]
    assert module.config.options() == TaggerOptions(**config["tagger"])
    assert module.hparams.intent_loss_weight == config["intent_loss_weight"]
    assert module.config.vocab_size == len(data.vocabulary) and module.config.char_vocab_size == len(data.characters)
    assert (module.config.num_tags, module.config.num_intents) == (len(data.slot_tags), len(data.intents))


def test_bundle_matches_the_lightning_checkpoint(atis_run) -> None:
    # The hyper-parameters are plain data (the tagger's options as a dict), so this loads with weights_only.
    module = SlotTaggerModule.load_from_checkpoint(atis_run["best"], weights_only=True).eval()
    assert module.config == atis_run["fit"].model.config
    loaded = load_bundle(atis_run["best"])
    sentences = [["flights", "from", "boston", "to"], ["show", "me", "fares", "to", "denver"]]
    token_ids = torch.tensor([loaded.vocabulary.encode(words) + [0] * (5 - len(words)) for words in sentences])
    mask = token_ids != 0
    assert loaded.characters is not None  # the shipped LSTM config reads characters
    char_ids = pad_characters([encode_characters(words, loaded.characters) for words in sentences])
    expected = module(token_ids, mask, char_ids).tag_logits
    assert torch.equal(expected, loaded.model(token_ids, mask, char_ids).tag_logits)


def test_grad_norm_is_logged_every_step_before_clipping(atis_run) -> None:
    metrics = Path(atis_run["fit"].trainer.logger.log_dir) / "metrics.csv"
    rows = [row for row in csv.DictReader(metrics.open()) if row.get("train/grad_norm")]
    steps = atis_run["fit"].trainer.global_step
    assert len(rows) == steps  # logged every step (log_every_n_steps is 1 in the configs)
    # The configs clip the norm at 5; a norm above it can only have been read before clipping.
    assert max(float(row["train/grad_norm"]) for row in rows) > 5.0


def test_test_scores_equal_seqeval_on_predictions_file(atis_run) -> None:
    trainer = atis_run["test"].trainer
    predictions = Path(trainer.log_dir) / "predictions.txt"
    gold, predicted = read_conlleval(predictions)
    assert len(gold) == 893
    reported = float(trainer.callback_metrics["test/slot_f1"])
    assert reported > 0.5
    assert reported == pytest.approx(f1_score(gold, predicted), abs=1e-6)
    assert 0.0 < float(trainer.callback_metrics["test/intent_accuracy"]) <= 1.0
    assert float(trainer.callback_metrics["test/sentence_accuracy"]) <= float(
        trainer.callback_metrics["test/intent_accuracy"]
    )


def test_predict_writes_json_lines(atis_run, tmp_path) -> None:
    utterances = tmp_path / "utterances.txt"
    utterances.write_text("show me flights from boston to denver\n\nwhat is the fare to dallas\n")
    output = tmp_path / "out.jsonl"
    run_cli(
        [
            "predict",
            *atis_run["common"],
            "--data.train_limit=1000",
            f"--data.predict_file={utterances}",
            f"--prediction_writer.output_file={output}",
            f"--ckpt_path={atis_run['best']}",
        ]
    )
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["words"] for r in records] == [
        "show me flights from boston to denver".split(),
        "what is the fare to dallas".split(),
    ]
    for record in records:
        assert len(record["tags"]) == len(record["words"])
        assert record["intent"].startswith("atis_")
        for slot in record["slots"]:
            assert slot["value"] == " ".join(record["words"][slot["token_start"] : slot["token_end"]])


def test_adam_is_fused_on_cpu() -> None:
    tagger = TaggerOptions(hidden_size=4, embedding_dim=4)
    module = SlotTaggerModule(["<pad>", "<unk>", "a"], ["O", "B-x", "I-x"], ["i"], tagger=tagger)
    optimizer = module.configure_optimizers()
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.defaults["fused"] is True


def test_bench_optimizer_compares_the_three_adam_variants(tiny_data: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import REPO

    command = [sys.executable, str(REPO / "scripts" / "bench_optimizer.py"), "--data", str(tiny_data)]
    result = subprocess.run(command + ["--repeats", "2", "--rounds", "1"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["loop", "foreach", "fused"]
    assert lines[-1].endswith("(1.0x fused)")


def as_format_1(checkpoint: dict, **hparams_changes) -> dict:
    """`checkpoint` in the layout written before the tagger's options moved under `model.tagger`:
    flat hyper-parameters with every option of that time, and a format-1 bundle."""
    old = dict(checkpoint)
    hparams = {key: value for key, value in checkpoint["hyper_parameters"].items() if key != "tagger"}
    old["hyper_parameters"] = {
        **checkpoint["hyper_parameters"]["tagger"],
        **hparams,
        "self_attention_heads": 0, "intent_words": False, "intent_encoder": False, "intent_balance": 0.0,
        "intent_label_smoothing": 0.0, "lm_loss_weight": 0.0, "lm_vocab_size": 2000, "weight_decay": 0.0,
        "lr_schedule": "constant", "intent_counts": [1] * len(hparams["intents"]),
        **hparams_changes,
    }  # fmt: skip
    bundle = dict(checkpoint["slotfill_bundle"])
    bundle["format_version"] = 1
    bundle["config"] = {
        **bundle["config"],
        "intent_parts": 0, "self_attention_heads": 0, "intent_words": False, "intent_encoder": False,
        "lm_vocab_size": 0, "lm_hidden": 50,
    }  # fmt: skip
    old["slotfill_bundle"] = bundle
    return old


def test_the_cli_tests_a_checkpoint_of_the_older_layout_alike(tiny_checkpoint: Path, tmp_path: Path) -> None:
    checkpoint = torch.load(tiny_checkpoint, weights_only=True)
    old_path = tmp_path / "old.ckpt"
    torch.save(as_format_1(checkpoint), old_path)
    data_dir = tiny_checkpoint.parents[1] / "data"
    written = {}
    for name, path in (("current", tiny_checkpoint), ("old", old_path)):
        logs = tmp_path / name
        run_cli(
            [
                "test", "--config", str(REPO / "configs" / "atis-lstm.yaml"), f"--data.data_dir={data_dir}",
                "--trainer.enable_progress_bar=false", f"--trainer.logger.init_args.save_dir={logs}",
                f"--ckpt_path={path}",
            ]
        )  # fmt: skip
        (predictions,) = logs.rglob("predictions.txt")
        written[name] = predictions.read_text()
    assert written["old"] == written["current"] and written["old"].count("\n\n") == 30


def test_the_cli_refuses_a_checkpoint_trained_with_a_retired_option(tiny_checkpoint: Path, tmp_path: Path, capsys):
    old_path = tmp_path / "cosine.ckpt"
    torch.save(as_format_1(torch.load(tiny_checkpoint, weights_only=True), lr_schedule="cosine"), old_path)
    data_dir = tiny_checkpoint.parents[1] / "data"
    args = ["test", "--config", str(REPO / "configs" / "atis-lstm.yaml"), f"--data.data_dir={data_dir}"]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, f"--trainer.logger.init_args.save_dir={tmp_path}", f"--ckpt_path={old_path}"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert f"{old_path}: trained with lr_schedule='cosine', an option this version no longer has" in error
