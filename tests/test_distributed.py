"""Multi-process (DDP) `test` and `predict` write the same files as a single process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from torch.utils.data import DistributedSampler

from training.cli import run_cli
from training.distributed import interleave

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("size, processes", [(7, 3), (8, 2), (1, 2), (5, 1)])
def test_interleaving_the_samplers_shares_restores_the_dataset_order(size: int, processes: int) -> None:
    data = list(range(size))
    shares = [
        list(DistributedSampler(data, num_replicas=processes, rank=rank, shuffle=False)) for rank in range(processes)
    ]
    assert sum(map(len, shares)) >= size  # padded with repeats when size is not a multiple
    assert interleave(shares, size) == data


def run_subprocess_cli(*args: str, cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "training", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_ddp_test_and_predict_write_what_one_process_writes(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """Two CPU processes (gloo) tag half the sentences each; the files must equal one process's
    (run in this process)."""
    data_dir = tiny_checkpoint.parents[1] / "data"
    utterances = tmp_path / "utterances.txt"
    utterances.write_text("".join(line + "\n" for line in (data_dir / "test" / "seq.in").read_text().splitlines()[:7]))
    common = [
        "--config", str(REPO / "configs" / "atis-lstm.yaml"),
        f"--data.data_dir={data_dir}", "--data.batch_size=16", "--data.eval_batch_size=4",
        "--model.tagger.embedding_dim=16", "--model.tagger.hidden_size=16",
        "--trainer.enable_progress_bar=false", "--trainer.accelerator=cpu",
        f"--ckpt_path={tiny_checkpoint}",
    ]  # fmt: skip
    outputs = {}
    for name in ("one", "ddp"):
        logs, written = tmp_path / name, tmp_path / f"{name}.jsonl"
        test = ["test", *common, f"--trainer.logger.init_args.save_dir={logs}"]
        predict = [
            "predict", *common, f"--trainer.logger.init_args.save_dir={logs}",
            f"--data.predict_file={utterances}", f"--prediction_writer.output_file={written}",
        ]  # fmt: skip
        if name == "one":
            run_cli([*test, "--trainer.devices=1"])
            run_cli([*predict, "--trainer.devices=1"])
        else:
            ddp = ["--trainer.devices=2", "--trainer.strategy=ddp"]
            run_subprocess_cli(*test, *ddp, cwd=tmp_path)
            run_subprocess_cli(*predict, *ddp, cwd=tmp_path)
        (predictions,) = logs.rglob("predictions.txt")
        outputs[name] = (predictions.read_text(), written.read_text())
    one_conll, one_jsonl = outputs["one"]
    assert one_conll.count("\n\n") == 30 and len(one_jsonl.splitlines()) == 7  # every sentence, once
    assert outputs["ddp"] == outputs["one"]
