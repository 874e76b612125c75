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
    assert loaded.vocabulary.tokens == module.vocabulary.tokens
    assert loaded.slot_tags == module.slot_tags and loaded.intents == module.intents
    assert 0.0 < loaded.metrics["val/slot_f1"] <= 1.0


def test_bundle_matches_the_lightning_checkpoint(atis_run) -> None:
    module = SlotTaggerModule.load_from_checkpoint(atis_run["best"], weights_only=True).eval()
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


def test_weight_averaging_puts_the_average_in_the_checkpoint_and_its_bundle(tmp_path: Path) -> None:
    from tests.conftest import tiny_args, write_corpus

    data_dir = write_corpus(tmp_path / "data", {"train": 40, "valid": 10, "test": 10})
    run_cli(
        [
            "fit",
            *tiny_args(tmp_path, data_dir, "--trainer.max_epochs=2"),
            "--trainer.callbacks+=training.callbacks.ExponentialWeightAveraging",
            "--trainer.callbacks.decay=0.9",
        ]
    )
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    averaged = checkpoint["state_dict"]["model.tag_head.weight"]
    current = checkpoint["current_model_state"]["model.tag_head.weight"]
    assert not torch.equal(averaged, current)
    assert torch.equal(checkpoint["slotfill_bundle"]["state_dict"]["tag_head.weight"], averaged)
    loaded = load_bundle(tmp_path / "checkpoints" / "last.ckpt")
    assert torch.equal(loaded.model.tag_head.weight, averaged)


def test_weight_average_is_the_bias_corrected_ema_of_every_step() -> None:
    from torch.optim.swa_utils import AveragedModel

    from training.callbacks import bias_corrected_ema

    decay = 0.9
    model = torch.nn.Linear(2, 1)
    averaged = AveragedModel(model, multi_avg_fn=bias_corrected_ema(decay))
    seen = []
    for step in range(1, 6):
        with torch.no_grad():
            model.weight.fill_(float(step * step))
        seen.append(float(step * step))
        averaged.update_parameters(model)
        weights = [(1 - decay) * decay ** (len(seen) - 1 - i) for i in range(len(seen))]
        expected = sum(w * x for w, x in zip(weights, seen, strict=True)) / sum(weights)
        assert float(averaged.module.weight[0, 0]) == pytest.approx(expected, rel=1e-6)
    # the plain EMA (which keeps 0.9^4 = 66 % of the first step) would be at 5.6
    assert float(averaged.module.weight[0, 0]) > 12.0


def test_intent_balance_weights_rare_intents_up_with_mean_one() -> None:
    from models.loss import IGNORE_INDEX, intent_loss
    from training.module import intent_class_weights

    assert intent_class_weights([90, 10], 0.0) is None
    weights = intent_class_weights([90, 10], 1.0)
    assert float(weights[1] / weights[0]) == pytest.approx(9.0)
    assert float((weights * torch.tensor([90.0, 10.0])).sum() / 100) == pytest.approx(1.0)
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    ids = torch.tensor([0, 1, IGNORE_INDEX])
    plain = torch.nn.functional.cross_entropy(logits[:2], ids[:2], reduction="none")
    assert float(intent_loss(logits, ids)) == pytest.approx(float(plain.mean()))
    assert float(intent_loss(logits, ids, weights)) == pytest.approx(float((plain * weights).mean()))
    with pytest.raises(ValueError, match="intent_balance"):
        intent_class_weights([3, 0], 0.5)


def test_intent_label_smoothing_spreads_the_target() -> None:
    from models.loss import IGNORE_INDEX, intent_loss

    logits = torch.tensor([[3.0, 0.0, -1.0], [0.0, 2.0, 0.0], [1.0, 1.0, 1.0]])
    ids = torch.tensor([0, 1, IGNORE_INDEX])
    log_probs = torch.log_softmax(logits[:2], dim=-1)
    # 0.3 of each target spread over the 3 intents: 0.8 on the gold intent, 0.1 on each other
    targets = torch.tensor([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1]])
    expected = -(targets * log_probs).sum(dim=-1).mean()
    assert float(intent_loss(logits, ids, label_smoothing=0.3)) == pytest.approx(float(expected))
    assert float(intent_loss(logits, ids, label_smoothing=0.3)) > float(intent_loss(logits, ids))
    from training.module import SlotTaggerModule

    with pytest.raises(ValueError, match="intent_label_smoothing"):
        SlotTaggerModule(["<pad>", "<unk>", "a"], ["O"], ["i"], intent_label_smoothing=1.0)


def test_adam_is_fused_on_cpu() -> None:
    from training.module import SlotTaggerModule

    module = SlotTaggerModule(["<pad>", "<unk>", "a"], ["O", "B-x", "I-x"], ["i"], hidden_size=4, embedding_dim=4)
    optimizer = module.configure_optimizers()
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.defaults["fused"] is True


def test_lr_schedules() -> None:
    def optimizers(schedule: str):
        return SlotTaggerModule(
            ["<pad>", "<unk>", "a"], ["O"], ["i"], hidden_size=4, embedding_dim=4, lr_schedule=schedule
        ).configure_optimizers()

    assert isinstance(optimizers("constant"), torch.optim.Adam)
    plateau = optimizers("plateau")["lr_scheduler"]
    assert plateau["monitor"] == "val/slot_f1" and plateau["interval"] == "epoch"
    schedule = plateau["scheduler"]
    for f1 in (0.5, 0.6, 0.6, 0.6):  # the best, then 2 epochs without improvement: still 1e-3
        schedule.step(f1)
    assert schedule.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
    schedule.step(0.6)  # a third: halved
    assert schedule.optimizer.param_groups[0]["lr"] == pytest.approx(5e-4)
    with pytest.raises(ValueError, match="valid: constant, cosine, plateau"):
        optimizers("step")


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


def test_language_model_loss_trains_beside_the_tags_and_travels_in_the_bundle(tmp_path: Path) -> None:
    from tests.conftest import tiny_args, write_corpus

    data_dir = write_corpus(tmp_path / "data", {"train": 40, "valid": 10, "test": 10})
    run_cli(
        [
            "fit",
            *tiny_args(tmp_path, data_dir, "--trainer.max_epochs=2"),
            "--model.lm_loss_weight=0.5",
            "--model.lm_vocab_size=10",
        ]
    )
    rows = [row for path in tmp_path.glob("**/metrics.csv") for row in csv.DictReader(path.open())]
    lm_losses = [float(row["train/lm_loss"]) for row in rows if row.get("train/lm_loss")]
    assert len(lm_losses) == 2 and all(loss > 0 for loss in lm_losses)
    loaded = load_bundle(tmp_path / "checkpoints" / "best.ckpt")
    assert loaded.model.config.lm_vocab_size == 10 and loaded.model.next_word is not None
    with pytest.raises(ValueError, match="lm_loss_weight"):
        SlotTaggerModule(["<pad>", "<unk>", "a"], ["O"], ["i"], lm_loss_weight=-1.0)
    off = SlotTaggerModule(["<pad>", "<unk>", "a"], ["O"], ["i"], hidden_size=4, embedding_dim=4)
    assert off.config.lm_vocab_size == 0 and off.model.next_word is None
