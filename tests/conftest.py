"""Shared fixtures: a tiny ATIS-format corpus written into a temp folder, and a tiny checkpoint
trained from it once per test run with the real CLI."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

CITIES = ["boston", "denver", "dallas", "new york", "san francisco", "atlanta", "pittsburgh"]
DAYS = ["monday", "tuesday", "friday"]
TIMES = ["morning", "evening"]


def make_example(rng: random.Random) -> tuple[list[str], list[str], str]:
    """One synthetic ATIS-like utterance with BIO tags and an intent."""
    words: list[str] = []
    tags: list[str] = []

    def add(phrase: str, slot: str | None) -> None:
        for i, word in enumerate(phrase.split()):
            words.append(word)
            tags.append("O" if slot is None else ("B-" if i == 0 else "I-") + slot)

    origin, destination = rng.sample(CITIES, 2)
    if rng.random() < 0.5:
        add("show me flights from", None)
        intent = "atis_flight"
    else:
        add("what is the fare from", None)
        intent = "atis_airfare"
    add(origin, "fromloc.city_name")
    add("to", None)
    add(destination, "toloc.city_name")
    if rng.random() < 0.5:
        add("on", None)
        add(rng.choice(DAYS), "depart_date.day_name")
    if rng.random() < 0.3:
        add(rng.choice(TIMES), "depart_time.period_of_day")
    if rng.random() < 0.2:
        add("under 200 dollars", None)
    return words, tags, intent


def write_corpus(root: Path, sizes: dict[str, int] | None = None, seed: int = 0) -> Path:
    """Write `{train,valid,test}/{seq.in,seq.out,label}` under `root`; returns `root`."""
    rng = random.Random(seed)
    for split, count in (sizes or {"train": 120, "valid": 30, "test": 30}).items():
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        examples = [make_example(rng) for _ in range(count)]
        (folder / "seq.in").write_text("".join(" ".join(w) + "\n" for w, _, _ in examples))
        (folder / "seq.out").write_text("".join(" ".join(t) + "\n" for _, t, _ in examples))
        (folder / "label").write_text("".join(i + "\n" for _, _, i in examples))
    return root


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "tiny")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small BiLSTM trained for a few epochs on the tiny corpus through the real CLI."""
    from training.cli import main

    root = tmp_path_factory.mktemp("tiny_run")
    data_dir = write_corpus(root / "data")
    main(
        [
            "fit",
            "--config",
            str(REPO / "configs" / "atis-lstm.yaml"),
            f"--data.data_dir={data_dir}",
            "--data.batch_size=16",
            "--model.tagger.embedding_dim=16",
            "--model.tagger.hidden_size=16",
            "--trainer.max_epochs=6",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
            f"--trainer.logger.init_args.save_dir={root / 'runs'}",
            f"--checkpoint.dirpath={root / 'checkpoints'}",
        ]
    )
    checkpoint = root / "checkpoints" / "best.ckpt"
    assert checkpoint.is_file()
    return checkpoint


@pytest.fixture(scope="session")
def shared_atis() -> Path:
    """The real ATIS split from ../shared/data (CI links it in); tests needing it fail loudly
    rather than skip when it is absent, so CI can never pass without having run them."""
    path = SHARED_DATA / "atis"
    if not (path / "train" / "seq.in").is_file():
        pytest.fail(f"ATIS data not found at {path}; see README (data) — CI makes ../shared/data available")
    return path


def tiny_args(root: Path, data_dir: Path, *extra: str) -> list[str]:
    """CLI arguments for a seconds-long run of the shipped LSTM config on `data_dir`, writing under `root`."""
    return [
        "--config", str(REPO / "configs" / "atis-lstm.yaml"),
        f"--data.data_dir={data_dir}", "--data.batch_size=8",
        "--model.tagger.embedding_dim=8", "--model.tagger.hidden_size=8",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        f"--trainer.logger.init_args.save_dir={root / 'runs'}",
        f"--checkpoint.dirpath={root / 'checkpoints'}",
        *extra,
    ]  # fmt: skip
