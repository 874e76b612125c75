"""The pure-torch tagger: padding invariance, LSTM forget bias, the loss, checkpoint round trip."""

from __future__ import annotations

import pytest
import torch

from models.checkpoint import CheckpointError, load_bundle, make_bundle, save_bundle
from models.loss import IGNORE_INDEX, slot_loss
from models.tagger import CELLS, TaggerConfig, build_tagger, intent_membership, intent_part_names, reversal_index
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


@pytest.mark.parametrize("intent_encoder", [False, True])
def test_bundle_round_trip_gives_identical_logits(tmp_path, intent_encoder: bool) -> None:
    torch.manual_seed(0)
    model = build_tagger(make_config(cell="gru", intent_encoder=intent_encoder)).eval()
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


@pytest.mark.parametrize("pooling", ["meanmax", "attention", "token"])
@pytest.mark.parametrize("option", ["none", "intent_words", "intent_encoder"])
def test_intent_pooling_ignores_padding(pooling: str, option: str) -> None:
    torch.manual_seed(0)
    options = {} if option == "none" else {option: True}
    model = build_tagger(make_config(intent_pooling=pooling, **options)).eval()
    alone = model(*padded_batch([[5, 6, 7]])).intent_logits[0]
    batched = model(*padded_batch([[3, 4, 5, 6, 7, 8], [5, 6, 7]])).intent_logits[1]
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-6)


def test_intent_words_read_the_pooled_word_embeddings() -> None:
    """With the encoder's share of the intent head zeroed, the intent logits are a linear function of
    the mean and max of the sentence's word embeddings: the words' own path to the intent."""
    torch.manual_seed(0)
    model = build_tagger(make_config(intent_words=True)).eval()
    states_size, input_size = model.encoder.output_size, model.encoder.input_size
    assert model.intent_head.in_features == 2 * (states_size + input_size)
    with torch.no_grad():
        weight = model.intent_head.weight.view(-1, 2, states_size + input_size)
        weight[:, :, :states_size] = 0.0
    token_ids, mask = padded_batch([[3, 4, 5], [6, 7]])
    logits = model(token_ids, mask).intent_logits
    for row, length in enumerate(mask.sum(1).tolist()):
        embedded = model.embedding(token_ids[row, :length])
        pooled = torch.cat([torch.zeros(states_size), embedded.mean(0), torch.zeros(states_size), embedded.amax(0)])
        torch.testing.assert_close(logits[row], model.intent_head(pooled), rtol=1e-5, atol=1e-6)


def test_intent_encoder_is_the_intent_heads_own() -> None:
    """Changing the tagger's encoder leaves the intent alone, and changing the intent encoder leaves
    the tags alone (no intent_to_slots): the two tasks read separate recurrent states."""
    torch.manual_seed(0)
    model = build_tagger(make_config(intent_encoder=True)).eval()
    batch = padded_batch([[3, 4, 5], [6, 7]])
    for encoder, unchanged, changed in [
        (model.encoder, "intent_logits", "tag_logits"),
        (model.intent_encoder, "tag_logits", "intent_logits"),
    ]:
        before = model(*batch)
        with torch.no_grad():
            for parameter in encoder.parameters():
                parameter.add_(0.5)
        after = model(*batch)
        torch.testing.assert_close(getattr(after, unchanged), getattr(before, unchanged))
        assert not torch.allclose(getattr(after, changed), getattr(before, changed))


def test_intent_encoder_needs_the_intent_head() -> None:
    with pytest.raises(ValueError, match="intent_encoder needs the intent head"):
        make_config(intent_encoder=True, intent_head=False)


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
    model = build_tagger(make_config(intent_parts=3, intent_pooling=pooling), intents=INTENTS).eval()
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
    config = make_config(intent_parts=3)
    with pytest.raises(ValueError, match="intent list"):
        build_tagger(config)
    with pytest.raises(ValueError, match="2 parts"):
        build_tagger(config, intents=["a", "b", "a#b", "b#a"])
    torch.manual_seed(0)
    model = build_tagger(config, intents=INTENTS).eval()
    vocabulary = Vocabulary(["<pad>", "<unk>", *[f"w{i}" for i in range(28)]])
    save_bundle(make_bundle(model, vocabulary, list("OABCDEF"), INTENTS), tmp_path / "parts.pt")
    loaded = load_bundle(tmp_path / "parts.pt")
    token_ids, mask = padded_batch([[3, 4, 5], [6, 7]])
    assert torch.equal(model(token_ids, mask).intent_logits, loaded.model(token_ids, mask).intent_logits)


@pytest.mark.parametrize("decoder", ["softmax", "crf"])
def test_self_attention_ignores_padding_and_survives_a_round_trip(tmp_path, decoder: str) -> None:
    """Pads are masked out as attention keys, so a sentence scores the same alone and in a batch."""
    torch.manual_seed(0)
    model = build_tagger(make_config(self_attention_heads=3, decoder=decoder)).eval()  # states: 2 x 6
    assert model.tag_head.in_features == 2 * 12
    short = [5, 6, 7]
    alone = model(*padded_batch([short]))
    batched = model(*padded_batch([[3, 4, 5, 6, 7, 8, 9, 10], short]))
    torch.testing.assert_close(batched.tag_logits[1, :3], alone.tag_logits[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(batched.intent_logits[1], alone.intent_logits[0], rtol=1e-5, atol=1e-6)
    vocabulary = Vocabulary(["<pad>", "<unk>", *[f"w{i}" for i in range(28)]])
    save_bundle(make_bundle(model, vocabulary, list("OABCDEF"), INTENTS), tmp_path / "attention.pt")
    loaded = load_bundle(tmp_path / "attention.pt").model
    token_ids, mask = padded_batch([[3, 4, 5], [6, 7]])
    assert torch.equal(model(token_ids, mask).tag_logits, loaded(token_ids, mask).tag_logits)


def test_self_attention_heads_must_divide_the_state_size() -> None:
    with pytest.raises(ValueError, match="must divide the encoder's output size"):
        build_tagger(make_config(self_attention_heads=5))  # 12-wide states
    with pytest.raises(ValueError, match="self_attention_heads must be >= 0"):
        make_config(self_attention_heads=-1)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_language_model_heads_never_see_their_targets(num_layers: int) -> None:
    """A forward state's next-word scores must not depend on the next word (or any later one), and
    a backward state's previous-word scores not on any earlier word: else the task is copying."""
    torch.manual_seed(0)
    model = build_tagger(make_config(lm_vocab_size=12, num_layers=num_layers)).eval()
    token_ids, mask = padded_batch([[3, 4, 5, 6, 7]])
    changed = token_ids.clone()
    changed[0, 3] = 9  # the fourth word
    before, after = model(token_ids, mask, with_lm=True).lm_logits, model(changed, mask, with_lm=True).lm_logits
    next_before, previous_before = before
    next_after, previous_after = after
    torch.testing.assert_close(next_after[0, :3], next_before[0, :3])  # words 1-3 predict up to word 4
    assert not torch.allclose(next_after[0, 3], next_before[0, 3])
    torch.testing.assert_close(previous_after[0, 4:], previous_before[0, 4:])  # word 5 predicts word 4
    assert not torch.allclose(previous_after[0, 3], previous_before[0, 3])
    # Tagging itself is untouched by the heads, and they are only computed when asked for.
    assert model(token_ids, mask).lm_logits is None
    torch.testing.assert_close(model(token_ids, mask).tag_logits, model(token_ids, mask, with_lm=True).tag_logits)


def test_language_model_loss_targets_shifted_words_with_boundaries() -> None:
    from models.loss import language_model_loss

    vocab = 6
    token_ids, mask = padded_batch([[2, 5, 8], [3, 4]])  # 8 is beyond the 6 scored ids: `<unk>` (1)
    next_logits = torch.randn(2, 3, vocab)
    previous_logits = torch.randn(2, 3, vocab)

    def cross_entropy(logits: torch.Tensor, target: int) -> torch.Tensor:
        return -torch.log_softmax(logits, dim=-1)[target]

    # sentence 1: forward 2->5, 5->unk, 8->boundary; backward boundary<-2, 2<-5, 5<-8
    first = sum(cross_entropy(next_logits[0, t], y) for t, y in enumerate([5, 1, 0]))
    first += sum(cross_entropy(previous_logits[0, t], y) for t, y in enumerate([0, 2, 5]))
    second = sum(cross_entropy(next_logits[1, t], y) for t, y in enumerate([4, 0]))
    second += sum(cross_entropy(previous_logits[1, t], y) for t, y in enumerate([0, 3]))
    expected = (first + second) / 2
    got = language_model_loss(next_logits, previous_logits, token_ids, mask)
    torch.testing.assert_close(got, expected)
    forward_only = language_model_loss(next_logits, None, token_ids, mask)
    assert float(forward_only) < float(got)


def test_language_model_config_is_checked_and_survives_a_round_trip(tmp_path) -> None:
    with pytest.raises(ValueError, match="lm_vocab_size"):
        make_config(lm_vocab_size=31)  # more than the 30-word vocabulary
    with pytest.raises(ValueError, match="no language-model heads"):
        build_tagger(make_config())(*padded_batch([[3, 4]]), with_lm=True)
    unidirectional = build_tagger(make_config(lm_vocab_size=10, bidirectional=False))
    forward_scores, backward_scores = unidirectional(*padded_batch([[3, 4]]), with_lm=True).lm_logits
    assert forward_scores.shape == (1, 2, 10) and backward_scores is None
    torch.manual_seed(0)
    model = build_tagger(make_config(lm_vocab_size=10)).eval()
    vocabulary = Vocabulary(["<pad>", "<unk>", *[f"w{i}" for i in range(28)]])
    path = tmp_path / "model.pt"
    save_bundle(make_bundle(model, vocabulary, ["O", "B-a", "I-a", "B-b", "I-b", "B-c", "I-c"], list("abcd"), {}), path)
    loaded = load_bundle(path).model
    batch = padded_batch([[3, 4, 5]])
    torch.testing.assert_close(loaded(*batch, with_lm=True).lm_logits[0], model(*batch, with_lm=True).lm_logits[0])
    assert torch.equal(loaded(*batch).tag_logits, model(*batch).tag_logits)
