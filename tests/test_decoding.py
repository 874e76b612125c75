"""BIO-valid decoding and the CRF, checked against brute force over every tag sequence and against the
per-word reference decoders (tests/decoding_reference.py) on padded batches; the character CNN; and a
CRF + character model trained through the CLI and served from its checkpoint."""

from __future__ import annotations

import copy
import itertools
from pathlib import Path

import pytest
import torch

from models import decoding
from models.checkpoint import load_bundle
from models.decoding import FORBIDDEN, LinearChainCRF, bio_constraints, penalties, viterbi
from models.spans import is_valid_tag
from models.tagger import TaggerConfig, build_tagger
from models.vocab import Vocabulary, build_characters, encode_characters, pad_characters
from tests import decoding_reference as reference
from tests.conftest import tiny_args, write_corpus

TAGS = ["O", "B-city", "I-city", "B-date", "I-date"]


def may_follow(previous: str, tag: str) -> bool:
    return not tag.startswith("I-") or (previous != "O" and previous[2:] == tag[2:])


def is_bio_valid(tags: list[str]) -> bool:
    return all(may_follow(previous, tag) for previous, tag in zip(["O", *tags], tags))


def path_score(scores, path, start, transitions, end) -> torch.Tensor:
    total = start[path[0]] + scores[0, path[0]] + end[path[-1]]
    for t in range(1, len(path)):
        total = total + transitions[path[t - 1], path[t]] + scores[t, path[t]]
    return total


def all_paths(length: int):
    return itertools.product(range(len(TAGS)), repeat=length)


def test_bio_constraints_allow_exactly_the_valid_pairs() -> None:
    allowed_start, allowed = bio_constraints(TAGS)
    assert allowed_start.tolist() == [True, True, False, True, False]
    for i, previous in enumerate(TAGS):
        for j, following in enumerate(TAGS):
            assert bool(allowed[i, j]) == may_follow(previous, following), (previous, following)


@pytest.mark.parametrize("seed", range(5))
def test_viterbi_finds_the_best_valid_path(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    length = 4
    scores = torch.randn(1, length, len(TAGS), generator=generator) * 3
    allowed_start, allowed = bio_constraints(TAGS)
    start, transitions = penalties(allowed_start), penalties(allowed) + torch.randn(5, 5, generator=generator)
    end = torch.randn(len(TAGS), generator=generator)
    best = max(
        (p for p in all_paths(length) if is_bio_valid([TAGS[i] for i in p])),
        key=lambda p: float(path_score(scores[0], p, start, transitions, end)),
    )
    decoded = viterbi(scores, torch.ones(1, length, dtype=torch.bool), start, transitions, end)
    assert decoded[0].tolist() == list(best)


def test_crf_partition_and_marginals_match_brute_force() -> None:
    torch.manual_seed(1)
    length = 4
    crf = LinearChainCRF(len(TAGS))
    with torch.no_grad():
        for parameter in crf.parameters():
            parameter.normal_()
    allowed_start, allowed = bio_constraints(TAGS)
    scores = torch.randn(1, length, len(TAGS))
    mask = torch.ones(1, length, dtype=torch.bool)
    start, transitions = crf.constrained(allowed_start, allowed)
    paths = list(all_paths(length))
    totals = torch.stack([path_score(scores[0], p, start, transitions, crf.end) for p in paths])
    log_z, _ = crf.log_partition(scores, mask, start, transitions)
    torch.testing.assert_close(log_z[0], torch.logsumexp(totals, dim=0))
    gold = torch.tensor([[1, 2, 0, 3]])
    nll = crf.negative_log_likelihood(scores, gold, mask, allowed_start, allowed)
    torch.testing.assert_close(nll[0], log_z[0] - path_score(scores[0], gold[0].tolist(), start, transitions, crf.end))
    probabilities = torch.softmax(totals, dim=0)
    expected = torch.zeros(length, len(TAGS))
    for p, probability in zip(paths, probabilities):
        for t, tag in enumerate(p):
            expected[t, tag] += probability
    torch.testing.assert_close(crf.marginals(scores, mask, allowed_start, allowed)[0].float(), expected)
    # Invalid paths carry (almost) no probability mass.
    assert float(sum(q for p, q in zip(paths, probabilities.detach()) if not is_bio_valid([TAGS[i] for i in p]))) < 1e-6


# A BIO tag set of ATIS's shape, small enough to test fast: `O` and B-/I- pairs of 20 slot types.
MANY_TAGS = ["O", *(f"{prefix}-slot{k}" for k in range(20) for prefix in ("B", "I"))]


def padded_batch(generator: torch.Generator, lengths: list[int], size: int, spread: float) -> tuple:
    """(B, T, size) random scores, `spread` times a standard normal, and the mask of `lengths`."""
    scores = torch.randn(len(lengths), max(lengths), size, generator=generator) * spread
    mask = torch.arange(max(lengths)).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    return scores, mask


def random_crf(generator: torch.Generator, size: int, scale: float) -> LinearChainCRF:
    crf = LinearChainCRF(size)
    with torch.no_grad():
        for parameter in crf.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)
    return crf


@pytest.mark.parametrize(("seed", "spread"), [(0, 0.1), (1, 1.0), (2, 6.0), (3, 20.0)])
def test_batched_viterbi_equals_the_reference_on_padded_batches(seed: int, spread: float) -> None:
    """Same tags as the per-step reference for flat and peaked scores, pads anywhere."""
    generator = torch.Generator().manual_seed(seed)
    allowed_start, allowed = bio_constraints(MANY_TAGS)
    crf = random_crf(generator, len(MANY_TAGS), 1.0)
    start, transitions = crf.constrained(allowed_start, allowed)
    scores, mask = padded_batch(generator, [7, 1, 12, 3, 12, 5], len(MANY_TAGS), spread)
    expected = reference.viterbi(scores, mask, start, transitions, crf.end)
    assert torch.equal(viterbi(scores, mask, start, transitions, crf.end), expected)
    assert torch.equal(crf.decode(scores, mask, allowed_start, allowed), expected)


@pytest.mark.parametrize("seed", range(3))
def test_marginals_equal_the_float64_reference(seed: int) -> None:
    """The probability-space forward-backward agrees with the log-space reference run in float64
    to 1e-6 on padded batches, and its rows are distributions."""
    generator = torch.Generator().manual_seed(seed)
    allowed_start, allowed = bio_constraints(MANY_TAGS)
    crf = random_crf(generator, len(MANY_TAGS), 2.0)
    scores, mask = padded_batch(generator, [9, 2, 30, 1, 17], len(MANY_TAGS), 8.0)
    marginals = crf.marginals(scores, mask, allowed_start, allowed)
    assert marginals.dtype == torch.float64

    exact = reference.marginals(copy.deepcopy(crf).double(), scores.double(), mask, allowed_start, allowed)
    torch.testing.assert_close(marginals.double()[mask], exact[mask], rtol=0, atol=1e-6)
    torch.testing.assert_close(marginals.sum(dim=2)[mask], torch.ones(int(mask.sum()), dtype=torch.float64))


@pytest.mark.parametrize("decoder", ["softmax", "crf"])
def test_decode_equals_the_reference_decoder(decoder: str) -> None:
    """The tagger's `decode` (models.decoding.decode_tags): the reference's tags, confidences within
    1e-6 of the reference's (float64 for the CRF)."""
    generator = torch.Generator().manual_seed(11)
    allowed_start, allowed = bio_constraints(MANY_TAGS)
    crf = random_crf(generator, len(MANY_TAGS), 1.0) if decoder == "crf" else None
    logits, mask = padded_batch(generator, [4, 11, 1, 8], len(MANY_TAGS), 4.0)
    tag_ids, confidences = decoding.decode_tags(logits, mask, allowed_start, allowed, crf)
    expected_ids, expected = reference.decode(logits, mask, allowed_start, allowed, crf, float64=True)
    assert torch.equal(tag_ids, expected_ids)
    torch.testing.assert_close(confidences.double()[mask], expected.double()[mask], rtol=0, atol=1e-6)


@pytest.mark.parametrize("flat_rows", [[], [1, 3, 5]])
def test_crf_decode_takes_the_arg_max_path_only_where_it_holds_most_of_the_probability(
    monkeypatch: pytest.MonkeyPatch, flat_rows: list[int]
) -> None:
    """Peaked scores: a sentence's arg-max path holds more than half the probability and is taken
    without Viterbi. Flat scores: Viterbi runs, on exactly those sentences. Either way the tags equal
    the reference Viterbi's and the confidences are the marginals of the chosen tags."""
    generator = torch.Generator().manual_seed(5)
    allowed_start, allowed = bio_constraints(MANY_TAGS)
    crf = random_crf(generator, len(MANY_TAGS), 0.5)
    logits, mask = padded_batch(generator, [6, 14, 1, 9, 3, 14], len(MANY_TAGS), 3.0)
    # A random BIO-valid path clearly best in every sentence ...
    for row in range(logits.size(0)):
        previous = "O"
        for t in range(logits.size(1)):
            choices = [k for k, tag in enumerate(MANY_TAGS) if may_follow(previous, tag)]
            k = choices[int(torch.randint(len(choices), (1,), generator=generator))]
            logits[row, t, k] += 25.0
            previous = MANY_TAGS[k]
    logits[flat_rows] *= 0.02  # ... except in the flat sentences
    decoded_rows = []
    real_decode = LinearChainCRF.decode

    def counting_decode(self, scores, *args):
        decoded_rows.append(scores.size(0))
        return real_decode(self, scores, *args)

    monkeypatch.setattr(LinearChainCRF, "decode", counting_decode)
    tag_ids, confidences = decoding.decode_tags(logits, mask, allowed_start, allowed, crf)
    start, transitions = crf.constrained(allowed_start, allowed)
    assert torch.equal(tag_ids, reference.viterbi(logits, mask, start, transitions, crf.end))
    marginals = crf.marginals(logits, mask, allowed_start, allowed)
    held = 1 - ((1 - marginals.amax(dim=2)) * mask).sum(dim=1)
    assert (held <= 0.5).nonzero().flatten().tolist() == flat_rows
    assert decoded_rows == ([len(flat_rows)] if flat_rows else [])
    chosen = marginals.gather(2, tag_ids.unsqueeze(2)).squeeze(2).float()
    assert torch.equal(confidences[mask], chosen[mask])


def test_crf_decode_equals_viterbi_where_the_arg_max_path_is_not_the_best() -> None:
    """Short sentences with middling scores, where the path of per-word arg-max marginals is often
    not the best path even though it holds some of the probability: the decoder still returns
    Viterbi's tags, and such sentences do occur (so a looser bound would fail here)."""
    generator = torch.Generator().manual_seed(0)
    allowed_start, allowed = bio_constraints(MANY_TAGS)
    traps = 0
    for _ in range(60):
        crf = random_crf(generator, len(MANY_TAGS), 1.0)
        logits, mask = padded_batch(generator, [2, 3, 4, 5, 6, 3, 2, 4], len(MANY_TAGS), 4.0)
        tag_ids, _ = decoding.decode_tags(logits, mask, allowed_start, allowed, crf)
        start, transitions = crf.constrained(allowed_start, allowed)
        expected = reference.viterbi(logits, mask, start, transitions, crf.end)
        assert torch.equal(tag_ids, expected)
        best, arg_max = crf.marginals(logits, mask, allowed_start, allowed).max(dim=2)
        held = 1 - ((1 - best) * mask).sum(dim=1)
        traps += int(((arg_max.masked_fill(~mask, 0) != expected).any(dim=1) & (held > 0.1)).sum())
    assert traps > 0


def test_marginals_follow_the_crf_s_scores_when_they_change() -> None:
    """The CRF keeps its exp'd scores between calls; an optimiser step or a loaded state must
    replace them (the answer equals a fresh CRF's with the new scores)."""
    generator = torch.Generator().manual_seed(3)
    allowed_start, allowed = bio_constraints(MANY_TAGS)
    crf = random_crf(generator, len(MANY_TAGS), 1.0)
    scores, mask = padded_batch(generator, [5, 3], len(MANY_TAGS), 2.0)
    crf.marginals(scores, mask, allowed_start, allowed)
    optimizer = torch.optim.SGD(crf.parameters(), lr=1.0)
    for parameter in crf.parameters():
        parameter.grad = torch.randn(parameter.shape, generator=generator)
    optimizer.step()
    fresh = LinearChainCRF(len(MANY_TAGS))
    fresh.load_state_dict(crf.state_dict())
    torch.testing.assert_close(
        crf.marginals(scores, mask, allowed_start, allowed), fresh.marginals(scores, mask, allowed_start, allowed)
    )
    crf.load_state_dict(random_crf(generator, len(MANY_TAGS), 1.0).state_dict())
    fresh = LinearChainCRF(len(MANY_TAGS))
    fresh.load_state_dict(crf.state_dict())
    torch.testing.assert_close(
        crf.marginals(scores, mask, allowed_start, allowed), fresh.marginals(scores, mask, allowed_start, allowed)
    )


def make_model(decoder: str, **overrides) -> torch.nn.Module:
    values = dict(vocab_size=30, num_tags=len(TAGS), num_intents=3, embedding_dim=8, hidden_size=6, dropout=0.0)
    values.update(decoder=decoder, **overrides)
    return build_tagger(TaggerConfig(**values), TAGS).eval()


def batch_of(sentences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, sentences))
    token_ids = torch.zeros(len(sentences), width, dtype=torch.long)
    for row, ids in enumerate(sentences):
        token_ids[row, : len(ids)] = torch.tensor(ids)
    return token_ids, token_ids != 0


@pytest.mark.parametrize("decoder", ["softmax", "crf"])
def test_decoding_is_bio_valid_and_ignores_padding(decoder: str) -> None:
    torch.manual_seed(2)
    model = make_model(decoder)
    with torch.no_grad():
        model.tag_head.bias[[2, 4]] += 4.0  # push the arg-max towards I- tags, which need a valid lead-in
        if model.crf is not None:
            model.crf.transitions.normal_()
    sentences = [[int(x) for x in torch.randint(2, 30, (n,))] for n in (9, 3, 6, 1)]
    token_ids, mask = batch_of(sentences)
    with torch.no_grad():
        tag_ids, confidences = model.decode(model(token_ids, mask).tag_logits, mask)
        for row, sentence in enumerate(sentences):
            tags = [TAGS[i] for i in tag_ids[row, : len(sentence)].tolist()]
            assert is_bio_valid(tags), tags
            alone_ids, alone_mask = batch_of([sentence])
            alone_tags, alone_confidences = model.decode(model(alone_ids, alone_mask).tag_logits, alone_mask)
            assert alone_tags[0].tolist() == tag_ids[row, : len(sentence)].tolist()
            torch.testing.assert_close(alone_confidences[0], confidences[row, : len(sentence)])
    assert ((confidences > 0) & (confidences <= 1))[mask].all()


def test_softmax_decoding_keeps_a_valid_arg_max() -> None:
    model = make_model("softmax")
    logits = torch.full((1, 3, len(TAGS)), -5.0)
    logits[0, 0, 1], logits[0, 1, 2], logits[0, 2, 0] = 5.0, 5.0, 5.0  # B-city I-city O: valid already
    tag_ids, confidences = model.decode(logits, torch.ones(1, 3, dtype=torch.bool))
    assert tag_ids[0].tolist() == [1, 2, 0]
    torch.testing.assert_close(confidences[0], torch.softmax(logits[0], dim=-1).amax(dim=-1))


def test_crf_loss_trains_towards_the_gold_path() -> None:
    torch.manual_seed(3)
    model = make_model("crf")
    model.train()
    token_ids, mask = batch_of([[5, 6, 7], [8, 9]])
    gold = torch.tensor([[1, 2, 0], [3, 4, -100]])
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(60):
        loss = model.slot_loss(model(token_ids, mask).tag_logits, gold, mask)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss))
    assert losses[-1] < 0.1 * losses[0]
    model.eval()
    with torch.no_grad():
        tag_ids, _ = model.decode(model(token_ids, mask).tag_logits, mask)
    assert tag_ids.masked_fill(~mask, -100).tolist() == gold.tolist()


def test_forbidden_is_finite_and_dominates() -> None:
    assert FORBIDDEN > -1e30 and FORBIDDEN < -1e3


@pytest.mark.parametrize(("char_encoder", "channels"), [("cnn", 5), ("lstm", 6)])
def test_character_features_ignore_padding_and_unseen_characters_map_to_unk(char_encoder: str, channels: int) -> None:
    characters = build_characters([["boston", "denver", "1200"]])
    assert "0" in characters.index and "1" not in characters.index  # digits share one shape
    assert encode_characters(["Zürich"], characters)[0][0] == Vocabulary.unk_id  # z unseen, ü unseen
    torch.manual_seed(4)
    model = make_model(
        "softmax",
        char_vocab_size=len(characters),
        char_channels=channels,
        char_embedding_dim=4,
        char_encoder=char_encoder,
    )
    words = [["boston", "to", "denver"], ["to", "extraordinarily", "boston", "on", "monday"]]
    token_ids, mask = batch_of([[5, 6, 7], [6, 8, 5, 9, 10]])
    char_ids = pad_characters([encode_characters(w, characters) for w in words])
    assert char_ids.shape == (2, 5, len("extraordinarily"))
    with torch.no_grad():
        batched = model(token_ids, mask, char_ids).tag_logits
        alone = model(token_ids[:1, :3], mask[:1, :3], pad_characters([encode_characters(words[0], characters)]))
        features = model.characters(char_ids)
    torch.testing.assert_close(batched[0, :3], alone.tag_logits[0], rtol=1e-5, atol=1e-6)
    assert features[0, 3:].abs().sum() == 0  # pad words
    assert features[0, 0].abs().sum() > 0
    with pytest.raises(ValueError, match="char_ids"):
        model(token_ids, mask)


def test_character_bilstm_reads_each_word_forwards_to_its_end_and_backwards_to_its_start() -> None:
    """Its features equal the two LSTMs run on each word alone: the forward one's last output and the
    backward one's last output over the reversed characters."""
    torch.manual_seed(5)
    model = make_model("softmax", char_vocab_size=12, char_channels=8, char_embedding_dim=4, char_encoder="lstm")
    encoder = model.characters
    words = [[3, 4, 5], [6, 7], [8, 9, 10, 11, 3]]
    char_ids = torch.zeros(1, len(words) + 1, 5, dtype=torch.long)  # one pad word at the end
    for position, chars in enumerate(words):
        char_ids[0, position, : len(chars)] = torch.tensor(chars)
    with torch.no_grad():
        features = encoder(char_ids)[0]
        for position, chars in enumerate(words):
            embedded = encoder.embedding(torch.tensor([chars]))
            forward = encoder.forward_lstm(embedded)[0][0, -1]
            backward = encoder.backward_lstm(embedded.flip(1))[0][0, -1]
            torch.testing.assert_close(features[position], torch.cat([forward, backward]))
    assert features[len(words)].abs().sum() == 0
    with pytest.raises(ValueError, match="even char_channels"):
        make_model("softmax", char_vocab_size=12, char_channels=7, char_encoder="lstm")


@pytest.mark.parametrize("char_encoder", ["cnn", "lstm"])
def test_crf_with_characters_trains_through_the_cli_and_serves_valid_tags(tmp_path: Path, char_encoder: str) -> None:
    from models.text import tokenize
    from serving.inference import Prepared
    from serving.predictor import Predictor
    from training.cli import run_cli

    data_dir = write_corpus(tmp_path / "data", {"train": 60, "valid": 20, "test": 20})
    cli = run_cli(
        [
            "fit",
            *tiny_args(tmp_path, data_dir, "--trainer.max_epochs=3"),
            "--model.tagger.decoder=crf",
            "--model.tagger.char_channels=6",
            "--model.tagger.char_embedding_dim=4",
            f"--model.tagger.char_encoder={char_encoder}",
            "--model.tagger.intent_to_slots=true",
        ]
    )
    assert cli.trainer.callback_metrics["val/slot_f1"] >= 0
    loaded = load_bundle(tmp_path / "checkpoints" / "best.ckpt")
    assert loaded.config.decoder == "crf" and loaded.config.char_channels == 6 and loaded.config.intent_to_slots
    assert loaded.config.char_encoder == char_encoder
    assert loaded.characters is not None and len(loaded.characters) == loaded.config.char_vocab_size
    predictor = Predictor()
    served = predictor.load(tmp_path / "checkpoints" / "best.ckpt")
    described = served.describe()  # what GET /v1/model answers
    assert (described["decoder"], described["char_encoder"]) == ("crf", char_encoder)
    assert described["config"]["char_channels"] == 6 and described["config"]["intent_to_slots"] is True
    predictor.start()
    try:
        texts = ["flights from new york to boston tomorrow", "zzyzx qwerty to denver", "boston"]
        results = predictor.predict([Prepared(text, tokenize(text)) for text in texts])
    finally:
        predictor.stop()
    for result in results:
        tags = [word["tag"] for word in result["words"]]
        assert all(is_valid_tag(tag) for tag in tags) and is_bio_valid(tags), tags
        assert all(0 < word["confidence"] <= 1 for word in result["words"])


def test_pad_characters_pads_words_and_sentences_with_zeros() -> None:
    rows = [[[5, 6, 7], [8]], [[9, 10]]]
    expected = torch.tensor([[[5, 6, 7], [8, 0, 0]], [[9, 10, 0], [0, 0, 0]]])
    padded = pad_characters(rows)
    assert padded.dtype == torch.long and torch.equal(padded, expected)
