"""Span F1 must be conlleval's (checked against seqeval's default mode, which follows conlleval),
plus the chunker it rests on, the `Accuracy` metric, and the metrics' DDP-safe counter states."""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from seqeval.metrics import f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities
from torchmetrics.utilities.data import dim_zero_sum

from models.spans import Span, bio_to_spans, count_span_matches, is_valid_tag, split_tag
from training.metrics import Accuracy, SpanF1

Sentences = list[list[str]]
Pair = tuple[Sentences, Sentences]  # (predicted, gold)


def seqeval_scores(predicted: Sentences, gold: Sentences) -> dict[str, float]:
    """conlleval's micro P/R/F1 via seqeval; seqeval returns 0 (with a warning) for 0/0, as SpanF1 does."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "precision": float(precision_score(gold, predicted)),
            "recall": float(recall_score(gold, predicted)),
            "f1": float(f1_score(gold, predicted)),
        }


def span_f1(predicted: Sentences, gold: Sentences) -> dict[str, float]:
    metric = SpanF1()
    metric.update(predicted, gold)
    return {name: float(value) for name, value in metric.compute().items()}


def assert_matches_seqeval(predicted: Sentences, gold: Sentences) -> None:
    ours, reference = span_f1(predicted, gold), seqeval_scores(predicted, gold)
    for name in ("precision", "recall", "f1"):
        assert ours[name] == pytest.approx(reference[name], abs=1e-9, rel=0), (name, ours, reference, predicted, gold)


def seqeval_spans(tags: list[str]) -> set[Span]:
    """seqeval's chunks of one sentence as `Span`s (seqeval's ends are inclusive)."""
    return {Span(label, start, end + 1) for label, start, end in get_entities(list(tags))}


# --- hand-picked edge cases --------------------------------------------------------------------

T = "fromloc.city_name"
U = "depart_date.day_name"

EDGE_CASES = {
    "identical": ([["B-a", "I-a", "O", "B-b"]], [["B-a", "I-a", "O", "B-b"]]),
    "I after O opens a chunk": ([["O", "I-a", "I-a", "O"]], [["O", "B-a", "I-a", "O"]]),
    "I after O in gold only": ([["O", "B-a", "I-a", "O"]], [["O", "I-a", "I-a", "O"]]),
    "I-x after B-y": ([["B-b", "I-a", "O"]], [["B-b", "B-a", "O"]]),
    "I-x after I-y": ([["B-b", "I-b", "I-a", "I-a"]], [["B-b", "I-b", "B-a", "I-a"]]),
    "B-x B-x is two chunks": ([["B-a", "B-a"]], [["B-a", "I-a"]]),
    "B-x B-x both sides": ([["B-a", "B-a", "O"]], [["B-a", "B-a", "O"]]),
    "I-x at sentence start": ([["I-a", "O", "O"]], [["B-a", "O", "O"]]),
    "I-x at start, wrong type": ([["I-b", "O"]], [["B-a", "O"]]),
    "chunk at sentence end": ([["O", "O", "B-a", "I-a"]], [["O", "O", "B-a", "I-a"]]),
    "chunk at end cut short": ([["O", "O", "B-a", "O"]], [["O", "O", "B-a", "I-a"]]),
    "all O in both": ([["O", "O", "O"], ["O"]], [["O", "O", "O"], ["O"]]),
    "all O in gold": ([["B-a", "O", "I-b"]], [["O", "O", "O"]]),
    "all O in prediction": ([["O", "O", "O"]], [["B-a", "O", "I-b"]]),
    "right type, wrong boundary (longer)": ([["B-a", "I-a", "I-a"]], [["B-a", "I-a", "O"]]),
    "right type, wrong boundary (shorter)": ([["O", "B-a", "O"]], [["B-a", "I-a", "O"]]),
    "right boundary, wrong type": ([["B-b", "I-b"]], [["B-a", "I-a"]]),
    "dotted and underscored types": (
        [["B-" + T, "I-" + T, "O", "B-" + U, "I-" + T]],
        [["B-" + T, "I-" + T, "O", "B-" + U, "B-" + T]],
    ),
    "type sharing a prefix": ([["B-" + T, "I-" + T + "x"]], [["B-" + T, "I-" + T]]),
    "chunks never cross sentences": ([["O", "B-a"], ["I-a", "O"]], [["O", "B-a"], ["B-a", "O"]]),
    "chunk at end then I at next start": ([["B-a", "I-a"], ["I-a"]], [["B-a", "I-a"], ["B-a"]]),
    "single word sentences": ([["B-a"], ["O"], ["I-b"]], [["B-a"], ["I-a"], ["O"]]),
    "empty sentence among others": ([[], ["B-a"]], [[], ["B-a"]]),
    "hyphen inside type": ([["B-a-b", "I-a-b"]], [["B-a-b", "I-a-c"]]),
    "half right": ([["B-a", "O", "B-b", "O"]], [["B-a", "O", "B-a", "O"]]),
    "thirds (float32 would be off)": ([["B-a", "B-a", "B-a"], ["B-b"]], [["B-a", "O", "O"], ["B-b"]]),
}


@pytest.mark.parametrize("predicted,gold", list(EDGE_CASES.values()), ids=list(EDGE_CASES))
def test_edge_cases_match_seqeval(predicted: Sentences, gold: Sentences):
    assert_matches_seqeval(predicted, gold)
    for tags in (*predicted, *gold):
        assert set(bio_to_spans(tags)) == seqeval_spans(tags), tags


def test_spans_of_known_sequences():
    """A few chunkings spelled out, so a shared misreading with seqeval would still show."""
    assert bio_to_spans(["B-a", "I-a", "O", "I-b", "B-b", "I-a"]) == [
        Span("a", 0, 2),
        Span("b", 3, 4),
        Span("b", 4, 5),
        Span("a", 5, 6),
    ]
    assert bio_to_spans(["I-" + T, "I-" + T]) == [Span(T, 0, 2)]
    assert bio_to_spans(["O", "O"]) == []
    assert bio_to_spans([]) == []
    assert count_span_matches(["B-a", "I-a", "B-a"], ["B-a", "I-a", "I-a"]) == (0, 2, 1)
    assert count_span_matches(["B-a", "I-a", "B-b"], ["B-a", "I-a", "O"]) == (1, 2, 1)
    assert count_span_matches(["O"], ["O"]) == (0, 0, 0)


def test_tag_helpers():
    assert split_tag("B-" + T) == ("B", T)
    assert split_tag("I-a-b") == ("I", "a-b")
    assert split_tag("O") == ("O", "")
    for tag in ("O", "B-a", "I-a", "B-" + T):
        assert is_valid_tag(tag)
    for tag in ("", "B-", "I-", "X-a", "a", "o", "b-a", "O-a", "-a", "B"):
        assert not is_valid_tag(tag), tag


# --- random sequences against seqeval -----------------------------------------------------------

TAGS = ["O", "B-a", "I-a", "B-b", "I-b", "B-" + T, "I-" + T]
tag_lists = st.lists(st.sampled_from(TAGS), max_size=12)


@st.composite
def paired_sentences(draw: st.DrawFn, tags: list[str] = TAGS) -> tuple[Sentences, Sentences]:
    """Gold sentences and predictions of the same lengths; predictions are often near-copies of gold."""
    lengths = draw(st.lists(st.integers(0, 12), min_size=1, max_size=6))
    gold = [draw(st.lists(st.sampled_from(tags), min_size=n, max_size=n)) for n in lengths]
    predicted = []
    for sentence in gold:
        if draw(st.booleans()):
            predicted.append(draw(st.lists(st.sampled_from(tags), min_size=len(sentence), max_size=len(sentence))))
        else:  # a few edits of the gold sentence
            copy = list(sentence)
            for index in draw(st.lists(st.integers(0, max(len(copy) - 1, 0)), max_size=3)):
                if copy:
                    copy[index] = draw(st.sampled_from(tags))
            predicted.append(copy)
    return predicted, gold


@settings(max_examples=300, deadline=None)
@given(paired_sentences())
def test_random_sequences_match_seqeval(pair: tuple[Sentences, Sentences]):
    predicted, gold = pair
    assert_matches_seqeval(predicted, gold)


@settings(max_examples=100, deadline=None)
@given(paired_sentences(tags=["O", "B-a", "I-a", "B-b", "I-b"]))
def test_random_sequences_two_types_match_seqeval(pair: tuple[Sentences, Sentences]):
    predicted, gold = pair
    assert_matches_seqeval(predicted, gold)


@settings(max_examples=300, deadline=None)
@given(tag_lists)
def test_random_chunking_matches_seqeval(tags: list[str]):
    spans = bio_to_spans(tags)
    assert set(spans) == seqeval_spans(tags)
    assert len(spans) == len(set(spans))
    assert spans == sorted(spans, key=lambda span: span.start)
    for span in spans:
        assert 0 <= span.start < span.end <= len(tags)
        assert all(tag != "O" and tag[2:] == span.label for tag in tags[span.start : span.end])


@settings(max_examples=100, deadline=None)
@given(paired_sentences(), st.integers(0, 6))
def test_two_updates_equal_one(pair: tuple[Sentences, Sentences], cut: int):
    predicted, gold = pair
    cut = min(cut, len(gold))
    whole, halves = SpanF1(), SpanF1()
    whole.update(predicted, gold)
    halves.update(predicted[:cut], gold[:cut])
    halves.update(predicted[cut:], gold[cut:])
    for name in ("correct", "predicted", "gold"):
        assert int(getattr(whole, name)) == int(getattr(halves, name))
    expected = [0, 0, 0]
    for p, g in zip(predicted, gold, strict=True):
        expected = [total + count for total, count in zip(expected, count_span_matches(p, g), strict=True)]
    assert [int(whole.correct), int(whole.predicted), int(whole.gold)] == expected
    for name, value in whole.compute().items():
        assert float(value) == float(halves.compute()[name])


# --- SpanF1 API --------------------------------------------------------------------------------


def test_compute_returns_float64_tensors():
    result = SpanF1()
    result.update([["B-a", "B-a", "B-a"]], [["B-a", "O", "O"]])
    values = result.compute()
    assert set(values) == {"precision", "recall", "f1"}
    for value in values.values():
        assert isinstance(value, torch.Tensor) and value.dtype == torch.float64 and value.ndim == 0
    assert float(values["precision"]) == 1 / 3


def test_reset_clears_counts():
    metric = SpanF1()
    metric.update([["B-a", "O"]], [["B-a", "B-b"]])
    assert int(metric.gold) == 2
    metric.reset()
    assert (int(metric.correct), int(metric.predicted), int(metric.gold)) == (0, 0, 0)
    metric.update([["O", "B-b"]], [["B-a", "B-b"]])
    assert span_f1([["O", "B-b"]], [["B-a", "B-b"]]) == {k: float(v) for k, v in metric.compute().items()}


def test_mismatched_lengths_raise():
    metric = SpanF1()
    with pytest.raises(ValueError):
        metric.update([["O"], ["O"]], [["O"]])
    with pytest.raises(ValueError):
        metric.update([["O", "B-a"]], [["O"]])
    with pytest.raises(ValueError):
        metric.update([["O"]], [["O", "O"]])
    assert (int(metric.correct), int(metric.predicted), int(metric.gold)) == (0, 0, 0)


def test_states_are_sum_reduced_counters():
    for metric, names in ((SpanF1(), ("correct", "predicted", "gold")), (Accuracy(), ("right", "total"))):
        assert set(metric._reductions) == set(names)
        for name in names:
            assert metric._reductions[name] is dim_zero_sum
            assert metric._defaults[name].dtype == torch.long


@settings(max_examples=50, deadline=None)
@given(paired_sentences(), paired_sentences())
def test_merged_states_equal_one_metric_over_all_data(first: Pair, second: Pair):
    """What DDP's sync does: two ranks' counters, summed, give the figures of all the data."""
    rank0, rank1, everything = SpanF1(), SpanF1(), SpanF1()
    rank0.update(*first)
    rank1.update(*second)
    everything.update(first[0] + second[0], first[1] + second[1])
    summed = {
        name: rank0._reductions[name](torch.stack([getattr(rank0, name), getattr(rank1, name)]))
        for name in ("correct", "predicted", "gold")
    }
    for name, value in summed.items():
        assert int(value) == int(getattr(everything, name))
    rank0.merge_state(rank1)
    for name, value in rank0.compute().items():
        assert float(value) == float(everything.compute()[name])
    assert_matches_seqeval(first[0] + second[0], first[1] + second[1])


# --- Accuracy ----------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.booleans(), max_size=9), min_size=1, max_size=5))
def test_accuracy(batches: list[list[bool]]):
    metric = Accuracy()
    for batch in batches:
        metric.update(torch.tensor(batch, dtype=torch.bool))
    flat = [value for batch in batches for value in batch]
    result = metric.compute()
    assert result.dtype == torch.float64
    expected = sum(flat) / len(flat) if flat else 0.0
    assert float(result) == pytest.approx(expected, abs=1e-12, rel=0)
    assert int(metric.right) == sum(flat) and int(metric.total) == len(flat)


def test_accuracy_reset_and_2d_input():
    metric = Accuracy()
    metric.update(torch.tensor([[True, False], [True, True]]))
    assert float(metric.compute()) == 0.75
    metric.reset()
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert float(metric.compute()) == 0.0
    metric.update(torch.tensor([False, False, True]))
    assert float(metric.compute()) == pytest.approx(1 / 3, abs=1e-15)
