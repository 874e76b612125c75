"""The pure-torch tagger: padding invariance, LSTM forget bias, the loss, checkpoint round trip."""

from __future__ import annotations

import pytest
import torch

from models.checkpoint import CheckpointError, load_bundle, make_bundle, save_bundle
from models.loss import IGNORE_INDEX, slot_loss
from models.tagger import (
    CELLS,
    RecurrentTagger,
    TaggerConfig,
    build_tagger,
    intent_membership,
    intent_part_names,
    reversal_index,
)
from models.vocab import Vocabulary


def make_config(**overrides) -> TaggerConfig:
    values = dict(vocab_size=30, num_tags=7, num_intents=4, embedding_dim=8, hidden_size=6, dropout=0.0)
    values.update(overrides)
    return TaggerConfig(**values)


def padded_batch(sentences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, sentences))
    token_ids = torch.zeros(len(sentences), width, dtype=torch.long)
    mask = torch.zeros(len(sentences), width, dtype=torch.bool)
    for row, ids in enumerate(sentences):
        token_ids[row, : len(ids)] = torch.tensor(ids)
        mask[row, : len(ids)] = True
    return token_ids, mask


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_padding_never_changes_real_outputs(cell: str, bidirectional: bool, num_layers: int) -> None:
    torch.manual_seed(0)
    model = build_tagger(make_config(cell=cell, bidirectional=bidirectional, num_layers=num_layers)).eval()
    short = [5, 6, 7]
    alone = model(*padded_batch([short]))
    token_ids, mask = padded_batch([[3, 4, 5, 6, 7, 8, 9, 10], short, [11, 12, 13, 14, 15]])
    batched = model(token_ids, mask)
    torch.testing.assert_close(batched.tag_logits[1, :3], alone.tag_logits[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(batched.intent_logits[1], alone.intent_logits[0], rtol=1e-5, atol=1e-6)


def test_bidirectional_matches_packed_lstm() -> None:
    """The reversed-input backward direction computes what torch's packed BiLSTM computes."""
    torch.manual_seed(0)
    config = make_config(cell="lstm", forget_bias=None)
    model = build_tagger(config).eval()
    reference = torch.nn.LSTM(config.embedding_dim, config.hidden_size, batch_first=True, bidirectional=True)
    forward, backward = model.encoder.forward_layers[0], model.encoder.backward_layers[0]
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(reference, name).copy_(getattr(forward, name))
            getattr(reference, name + "_reverse").copy_(getattr(backward, name))
    token_ids, mask = padded_batch([[3, 4, 5, 6, 7], [8, 9], [10, 11, 12]])
    lengths = mask.sum(1)
    embedded = model.embedding(token_ids)
    ours = model.encoder(embedded, lengths)
    packed = torch.nn.utils.rnn.pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
    theirs, _ = torch.nn.utils.rnn.pad_packed_sequence(reference(packed)[0], batch_first=True)
    torch.testing.assert_close(ours[mask], theirs[mask], rtol=1e-5, atol=1e-6)


def test_reversal_index_reverses_real_steps_only() -> None:
    index = reversal_index(torch.tensor([3, 1]), 4)
    assert index.tolist() == [[2, 1, 0, 3], [0, 1, 2, 3]]


def test_forget_bias_sums_to_the_requested_value() -> None:
    model = build_tagger(make_config(cell="lstm", forget_bias=5.0, num_layers=2))
    hidden = model.config.hidden_size
    for lstm in [*model.encoder.forward_layers, *model.encoder.backward_layers]:
        total = lstm.bias_ih_l0 + lstm.bias_hh_l0
        assert torch.allclose(total[hidden : 2 * hidden], torch.full((hidden,), 5.0))


def test_unknown_cell_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="valid cells: clockwork, elman, gru, irnn, lstm, scrn"):
        make_config(cell="transformer")


def test_slot_loss_sums_words_and_averages_sentences() -> None:
    logits = torch.randn(2, 3, 5)
    tags = torch.tensor([[1, 2, IGNORE_INDEX], [0, 4, 3]])
    per_word = torch.nn.functional.cross_entropy(logits.reshape(-1, 5), tags.reshape(-1), reduction="none")
    expected = (per_word[0] + per_word[1] + per_word[3] + per_word[4] + per_word[5]) / 2
    torch.testing.assert_close(slot_loss(logits, tags), expected)


def test_vocabulary_normalises_and_maps_unknowns() -> None:
    vocabulary = Vocabulary.build([["Boston", "to", "denver", "1000"], ["boston"]], min_freq=1)
    assert vocabulary.encode(["BOSTON", "2500", "paris"]) == [
        vocabulary.index["boston"],
        vocabulary.index["0000"],
        Vocabulary.unk_id,
    ]
    assert Vocabulary(vocabulary.to_list()).tokens == vocabulary.tokens
    assert "denver" not in Vocabulary.build([["boston", "denver"], ["boston"]], min_freq=2)


def test_bundle_round_trip_gives_identical_logits(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_tagger(make_config(cell="gru")).eval()
    vocabulary = Vocabulary(["<pad>", "<unk>", *[f"w{i}" for i in range(28)]])
    tags = ["O", "B-a", "I-a", "B-b", "I-b", "B-c", "I-c"]
    path = tmp_path / "model.pt"
    save_bundle(make_bundle(model, vocabulary, tags, ["i0", "i1", "i2", "i3"], {"val/slot_f1": 0.5}), path)
    raw = torch.load(path, weights_only=True)  # plain data only
    assert raw["vocabulary"] == vocabulary.to_list() and raw["slot_tags"] == tags
    loaded = load_bundle(path)
    token_ids, mask = padded_batch([[3, 4, 5], [6, 7]])
    before, after = model(token_ids, mask), loaded.model(token_ids, mask)
    assert torch.equal(before.tag_logits, after.tag_logits)
    assert torch.equal(before.intent_logits, after.intent_logits)
    assert loaded.metrics == {"val/slot_f1": 0.5} and len(loaded.sha256) == 64


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such checkpoint file"),
        (b"not a checkpoint", "not a readable checkpoint"),
        ({"format_version": 1}, "missing key"),
    ],
)
def test_broken_checkpoints_name_the_file_and_problem(tmp_path, content, message) -> None:
    path = tmp_path / "broken.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(CheckpointError, match=message) as error:
        load_bundle(path)
    assert str(path) in str(error.value)


def test_newer_format_version_is_refused(tmp_path) -> None:
    model = build_tagger(make_config())
    bundle = make_bundle(model, Vocabulary(["<pad>", "<unk>", *map(str, range(28))]), list("OABCDEF"), list("wxyz"))
    bundle["format_version"] = 99
    save_bundle(bundle, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="format version 99"):
        load_bundle(tmp_path / "future.pt")


def test_overfits_one_batch() -> None:
    torch.manual_seed(0)
    model = build_tagger(make_config(cell="lstm", hidden_size=16))
    token_ids, mask = padded_batch([[3, 4, 5, 6], [7, 8, 9], [10, 11]])
    tags = torch.tensor([[0, 1, 2, 0], [3, 4, 0, IGNORE_INDEX], [5, 6, IGNORE_INDEX, IGNORE_INDEX]])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(60):
        optimizer.zero_grad()
        loss = slot_loss(model(token_ids, mask).tag_logits, tags)
        loss.backward()
        optimizer.step()
    predicted = model.eval()(token_ids, mask).tag_logits.argmax(-1)
    assert torch.equal(predicted[mask], tags[mask])


@pytest.mark.parametrize("pooling", ["meanmax", "token"])
def test_intent_pooling_ignores_padding(pooling: str) -> None:
    torch.manual_seed(0)
    model = build_tagger(make_config(intent_pooling=pooling)).eval()
    alone = model(*padded_batch([[5, 6, 7]])).intent_logits[0]
    batched = model(*padded_batch([[3, 4, 5, 6, 7, 8], [5, 6, 7]])).intent_logits[1]
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-6)


def test_word_dropout_only_in_training() -> None:
    torch.manual_seed(0)
    model = build_tagger(make_config(word_dropout=0.5))
    token_ids, mask = padded_batch([[3, 4, 5, 6, 7, 8, 9, 10]])
    model.eval()
    assert torch.equal(model(token_ids, mask).tag_logits, model(token_ids, mask).tag_logits)
    model.train()
    model(token_ids, mask).tag_logits.sum().backward()
    assert model.embedding.weight.grad[Vocabulary.unk_id].abs().sum() > 0  # <unk> words were fed


INTENTS = ["flight", "airfare", "flight#airfare", "airline"]


def test_intent_membership_lists_each_labels_parts() -> None:
    assert intent_part_names(INTENTS) == ["flight", "airfare", "airline"]
    expected = torch.tensor([[1.0, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    assert torch.equal(intent_membership(INTENTS), expected)


@pytest.mark.parametrize("pooling", ["meanmax", "token"])
def test_intent_parts_score_a_combination_as_its_parts_sum(pooling: str) -> None:
    torch.manual_seed(0)
    model = build_tagger(make_config(intent_parts=True, intent_pooling=pooling), intents=INTENTS).eval()
    with torch.no_grad():
        model.intent_bias.copy_(torch.tensor([0.1, -0.2, 0.3, 0.4]))
    token_ids, mask = padded_batch([[3, 4, 5], [6, 7]])
    logits = model(token_ids, mask).intent_logits
    assert logits.shape == (2, 4)
    if pooling == "meanmax":  # one score per part, then each label sums its parts
        states = model.encoder(model.embedding(token_ids), mask.sum(1))
        real = mask.unsqueeze(-1)
        pooled = torch.cat(
            [(states * real).sum(1) / mask.sum(1, keepdim=True), states.masked_fill(~real, -1e9).amax(1)], -1
        )
        parts = model.intent_head(pooled)
        torch.testing.assert_close(logits[:, 2] - 0.3, parts[:, 0] + parts[:, 1])
        torch.testing.assert_close(logits[:, 3] - 0.4, parts[:, 2])


def test_intent_parts_need_the_intent_list_and_survive_a_round_trip(tmp_path) -> None:
    config = make_config(intent_parts=True)
    with pytest.raises(ValueError, match="intent list"):
        build_tagger(config)
    assert build_tagger(config, intents=["a", "b", "a#b", "b#a"]).intent_head.out_features == 2
    torch.manual_seed(0)
    model = build_tagger(config, intents=INTENTS).eval()
    vocabulary = Vocabulary(["<pad>", "<unk>", *[f"w{i}" for i in range(28)]])
    save_bundle(make_bundle(model, vocabulary, list("OABCDEF"), INTENTS), tmp_path / "parts.pt")
    loaded = load_bundle(tmp_path / "parts.pt")
    token_ids, mask = padded_batch([[3, 4, 5], [6, 7]])
    assert torch.equal(model(token_ids, mask).intent_logits, loaded.model(token_ids, mask).intent_logits)


CHARACTERS = ["<pad>", "<unk>", *"abcdefgh"]
# A tagger config as bundle format 1 wrote it: every option of that version, `intent_parts` counting
# the single intents (INTENTS has 3).
VERSION_1_CONFIG = {
    "vocab_size": 30, "num_tags": 7, "num_intents": 4, "cell": "lstm", "embedding_dim": 8, "hidden_size": 6,
    "num_layers": 1, "bidirectional": True, "dropout": 0.0, "forget_bias": 1.0, "intent_head": True,
    "word_dropout": 0.1, "intent_pooling": "meanmax", "decoder": "crf", "char_vocab_size": len(CHARACTERS),
    "char_channels": 4, "char_embedding_dim": 5, "char_kernel": 3, "char_encoder": "lstm", "intent_to_slots": True,
    "intent_parts": 3, "self_attention_heads": 0, "intent_words": False, "intent_encoder": False,
    "lm_vocab_size": 0, "lm_hidden": 50,
}  # fmt: skip
# The same tagger as this version configures it.
CURRENT_CONFIG = TaggerConfig(
    vocab_size=30, num_tags=7, num_intents=4, cell="lstm", embedding_dim=8, hidden_size=6, dropout=0.0,
    word_dropout=0.1, decoder="crf", char_vocab_size=len(CHARACTERS), char_channels=4, char_embedding_dim=5,
    char_encoder="lstm", intent_to_slots=True, intent_parts=True,
)  # fmt: skip


def version_1_checkpoint(path, config: dict) -> RecurrentTagger:
    """Write a Lightning-style checkpoint holding a format-1 bundle of a fresh tagger; return the tagger."""
    torch.manual_seed(0)
    model = build_tagger(CURRENT_CONFIG, list("OABCDEF"), INTENTS).eval()
    bundle = {
        "format_version": 1,
        "config": config,
        "vocabulary": ["<pad>", "<unk>", *[f"w{i}" for i in range(28)]],
        "characters": CHARACTERS,
        "slot_tags": list("OABCDEF"),
        "intents": INTENTS,
        "state_dict": model.state_dict(),
        "metrics": {"val/slot_f1": 0.5},
        "created_at": "2026-12-01T00:00:00+00:00",
    }
    torch.save({"state_dict": {}, "slotfill_bundle": bundle}, path)
    return model


def test_format_1_checkpoint_loads_and_scores_as_before(tmp_path) -> None:
    path = tmp_path / "old.ckpt"
    model = version_1_checkpoint(path, VERSION_1_CONFIG)
    loaded = load_bundle(path)
    assert loaded.config == CURRENT_CONFIG and loaded.characters is not None
    token_ids, mask = padded_batch([[3, 4, 5], [6, 7]])
    char_ids = torch.randint(2, len(CHARACTERS), (2, 3, 4)).masked_fill(~mask.unsqueeze(-1), 0)
    before, after = model(token_ids, mask, char_ids), loaded.model(token_ids, mask, char_ids)
    assert torch.equal(before.tag_logits, after.tag_logits)
    assert torch.equal(before.intent_logits, after.intent_logits)
    assert torch.equal(model.decode(before.tag_logits, mask)[0], loaded.model.decode(after.tag_logits, mask)[0])
    # An older format-1 bundle, written before the last options existed, loads too.
    older = {key: value for key, value in VERSION_1_CONFIG.items() if key not in ("lm_vocab_size", "lm_hidden")}
    version_1_checkpoint(tmp_path / "older.ckpt", older)
    assert load_bundle(tmp_path / "older.ckpt").config == CURRENT_CONFIG


@pytest.mark.parametrize(
    "option, value",
    [
        ("self_attention_heads", 2),
        ("intent_words", True),
        ("intent_encoder", True),
        ("lm_vocab_size", 10),
        ("intent_pooling", "attention"),
    ],
)
def test_format_1_checkpoint_with_a_retired_option_is_refused_by_name(tmp_path, option: str, value) -> None:
    path = tmp_path / "old.ckpt"
    version_1_checkpoint(path, {**VERSION_1_CONFIG, option: value})
    with pytest.raises(CheckpointError, match=f"{option}={value!r}") as error:
        load_bundle(path)
    assert str(path) in str(error.value) and "no longer has" in str(error.value)


def test_a_format_2_bundle_with_a_retired_option_is_refused(tmp_path) -> None:
    vocabulary = Vocabulary(["<pad>", "<unk>", *map(str, range(28))])
    bundle = make_bundle(build_tagger(make_config()), vocabulary, list("OABCDEF"), list("wxyz"))
    bundle["config"]["intent_encoder"] = True
    save_bundle(bundle, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match="unknown tagger config keys: intent_encoder"):
        load_bundle(tmp_path / "odd.pt")
