"""Training under faults: a killed run resumes from `last`, a NaN loss stops cleanly without touching
saved checkpoints, and DDP validation scores the whole validation set."""

from __future__ import annotations

import csv
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import tiny_args, write_corpus
from training.cli import run_cli
from training.module import NonFiniteLossError

REPO = Path(__file__).resolve().parents[1]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_sigkill_then_resume_from_last_finishes(tmp_path: Path) -> None:
    data_dir = write_corpus(tmp_path / "data", {"train": 600, "valid": 20, "test": 20})
    args = tiny_args(tmp_path, data_dir, "--trainer.max_epochs=40")
    process = subprocess.Popen([sys.executable, "-m", "training", "fit", *args], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    last = tmp_path / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 180
    while not last.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    time.sleep(0.5)  # into the next epoch
    assert process.poll() is None, "training ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = torch.load(last, weights_only=True)["epoch"]
    assert killed_at < 39
    # Resume from the last checkpoint and train three epochs past it.
    resume_args = tiny_args(tmp_path, data_dir, f"--trainer.max_epochs={killed_at + 4}")
    resumed = run_cli(["fit", *resume_args, "--ckpt_path=last"])
    assert resumed.trainer.current_epoch == resumed.trainer.max_epochs
    assert resumed.trainer.global_step > 0
    assert torch.load(last, weights_only=True)["epoch"] > killed_at  # last.ckpt moved on past the kill


def test_nan_loss_stops_with_a_message_and_keeps_checkpoints(tmp_path: Path, monkeypatch, capsys) -> None:
    data_dir = write_corpus(tmp_path / "data", {"train": 40, "valid": 10, "test": 10})
    run_cli(["fit", *tiny_args(tmp_path, data_dir, "--trainer.max_epochs=1")])
    best, last = tmp_path / "checkpoints" / "best.ckpt", tmp_path / "checkpoints" / "last.ckpt"
    before = digest(best), digest(last)

    from models.tagger import RecurrentTagger

    real_slot_loss = RecurrentTagger.slot_loss
    monkeypatch.setattr(RecurrentTagger, "slot_loss", lambda *a: real_slot_loss(*a) * float("nan"))
    with pytest.raises(NonFiniteLossError, match="training loss is nan"):
        run_cli(["fit", *tiny_args(tmp_path, data_dir, "--trainer.max_epochs=3"), "--ckpt_path=last"])
    assert (digest(best), digest(last)) == before

    from training.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *tiny_args(tmp_path, data_dir, "--trainer.max_epochs=3"), "--ckpt_path=last"])
    assert exit_info.value.code == 3
    assert "error: training loss is nan" in capsys.readouterr().err


def read_val_f1(log_dir: Path) -> float:
    rows = [r for r in csv.DictReader((log_dir / "metrics.csv").open()) if r.get("val/slot_f1")]
    return float(rows[-1]["val/slot_f1"])


def test_ddp_validation_covers_the_whole_validation_set(tmp_path: Path, tiny_checkpoint: Path) -> None:
    data_dir = write_corpus(tmp_path / "data", {"train": 120, "valid": 30, "test": 30})  # same corpus as the fixture
    scores = {}
    for devices, strategy in ((1, "auto"), (2, "ddp")):
        args = tiny_args(tmp_path, data_dir, f"--trainer.devices={devices}", f"--trainer.strategy={strategy}",
                         "--trainer.accelerator=cpu", "--data.eval_batch_size=4",
                         f"--trainer.logger.init_args.version=d{devices}", "--model.tagger.embedding_dim=16",
                         "--model.tagger.hidden_size=16", f"--ckpt_path={tiny_checkpoint}")  # fmt: skip
        result = subprocess.run([sys.executable, "-m", "training", "validate", *args], cwd=REPO,
                                capture_output=True, text=True, timeout=300)  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        scores[devices] = read_val_f1(tmp_path / "runs" / "atis-lstm" / f"d{devices}")
    assert scores[2] == pytest.approx(scores[1], abs=1e-6)


def test_readers_never_see_a_half_written_checkpoint(tmp_path: Path) -> None:
    """Checkpoints are rewritten every epoch while a reader keeps loading them: every read succeeds."""
    from models.checkpoint import read_bundle

    data_dir = write_corpus(tmp_path / "data", {"train": 60, "valid": 10, "test": 10})
    args = tiny_args(tmp_path, data_dir, "--trainer.max_epochs=25")
    process = subprocess.Popen([sys.executable, "-m", "training", "fit", *args], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    last = tmp_path / "checkpoints" / "last.ckpt"
    reads, versions = 0, set()
    try:
        while process.poll() is None:
            if last.exists():
                versions.add(float(read_bundle(last)["state_dict"]["tag_head.weight"][0, 0]))
                reads += 1
    finally:
        process.wait(timeout=120)
    assert process.returncode == 0
    assert reads > 10 and len(versions) > 3  # the reader really raced many rewrites
