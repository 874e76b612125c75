"""Seed ensembles (`scripts/seed_ensemble.py`) and their benchmark script."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
import torch

from models.checkpoint import LoadedTagger, load_bundle, make_bundle, save_bundle
from models.tagger import TaggerConfig, build_tagger
from models.vocab import Vocabulary, build_characters
from tests.test_decoding import is_bio_valid

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))  # the ensemble is a benchmark tool that lives next to its script

from seed_ensemble import encode_sentences, predict  # noqa: E402

TAGS = ["O", "B-a", "I-a", "B-b", "I-b"]
INTENTS = ["x", "y", "z"]
WORDS = [f"w{i}" for i in range(20)]


def make_tagger(tmp_path: Path, seed: int, decoder: str = "softmax", name: str = "m") -> LoadedTagger:
    """A random tagger saved and reloaded as a checkpoint (character features on)."""
    torch.manual_seed(seed)
    vocabulary = Vocabulary(["<pad>", "<unk>", *WORDS])
    characters = build_characters([WORDS])
    config = TaggerConfig(
        vocab_size=len(vocabulary),
        num_tags=len(TAGS),
        num_intents=len(INTENTS),
        embedding_dim=8,
        hidden_size=6,
        dropout=0.0,
        decoder=decoder,
        char_channels=4,
        char_vocab_size=len(characters),
    )
    model = build_tagger(config, TAGS).eval()
    with torch.no_grad():  # large random scores, so that the arg-max often breaks a BIO rule
        model.tag_head.weight.mul_(20)
    path = tmp_path / f"{name}{seed}.pt"
    save_bundle(make_bundle(model, vocabulary, TAGS, INTENTS, characters=characters), path)
    return load_bundle(path)


def sentences(count: int = 40) -> list[list[str]]:
    rng = random.Random(0)
    return [[rng.choice(WORDS) for _ in range(rng.randint(1, 9))] for _ in range(count)]


def test_two_copies_of_a_model_decode_as_the_model_alone(tmp_path: Path) -> None:
    tagger = make_tagger(tmp_path, seed=1)
    alone = predict([tagger], sentences())
    assert predict([tagger, tagger], sentences()) == alone


def test_one_crf_model_decodes_with_its_own_viterbi(tmp_path: Path) -> None:
    tagger = make_tagger(tmp_path, seed=2, decoder="crf")
    batch = sentences(8)
    token_ids, mask, char_ids = encode_sentences(tagger, batch)
    with torch.inference_mode():
        output = tagger.model(token_ids, mask, char_ids)
        own = tagger.model.decode(output.tag_logits, mask)[0].tolist()
        own_intents = output.intent_logits.argmax(dim=-1).tolist()
    tags, intents = predict([tagger], batch)
    assert tags == [[TAGS[i] for i in row[: len(words)]] for row, words in zip(own, batch, strict=True)]
    assert intents == [INTENTS[i] for i in own_intents]


def test_ensemble_averages_distributions_and_stays_bio_valid(tmp_path: Path) -> None:
    taggers = [make_tagger(tmp_path, seed=3), make_tagger(tmp_path, seed=4, decoder="crf")]
    batch = sentences()
    tags, intents = predict(taggers, batch)
    assert [len(row) for row in tags] == [len(words) for words in batch]
    assert all(is_bio_valid(row) for row in tags)
    # the intent is the arg-max of the mean of the two softmaxes
    with torch.inference_mode():
        mean = sum(torch.softmax(t.model(*encode_sentences(t, batch)).intent_logits, dim=-1) for t in taggers)
    assert intents == [INTENTS[i] for i in mean.argmax(dim=-1).tolist()]


def test_models_with_different_tag_lists_are_refused(tmp_path: Path) -> None:
    tagger = make_tagger(tmp_path, seed=5)
    other = make_tagger(tmp_path, seed=6)
    other.slot_tags = ["O", "B-a", "I-a", "B-c", "I-c"]
    with pytest.raises(ValueError, match="slot tags differ"):
        predict([tagger, other], sentences(2))
    with pytest.raises(ValueError, match="at least one"):
        predict([], sentences(2))


def test_bench_ensemble_scores_single_models_as_training_does(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """Each member's row equals the metrics the checkpoint stored for validation; an ensemble of a
    model with itself scores the same."""
    import bench_ensemble

    data_dir = tiny_checkpoint.parents[1] / "data"
    rows = bench_ensemble.main(
        ["--data-dir", str(data_dir), "--checkpoints", str(tiny_checkpoint), str(tiny_checkpoint), "--splits", "valid"]
    )
    single, _, ensemble = rows
    stored = load_bundle(tiny_checkpoint).metrics
    assert single["slot_f1"] == pytest.approx(100 * stored["val/slot_f1"], abs=1e-4)
    for key in ("slot_f1", "intent_accuracy", "sentence_accuracy"):
        assert ensemble[key] == pytest.approx(single[key])
