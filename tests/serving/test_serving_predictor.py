"""Tokenisation with offsets, vocabulary mapping and the batching predictor, without HTTP."""

from __future__ import annotations

import concurrent.futures
import math
import threading
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from models.checkpoint import CheckpointError
from models.spans import bio_to_spans
from models.text import InputError, tokenize, words_from_tokens
from serving.inference import Prepared, decode, score_rows
from serving.model_process import ModelProcess
from serving.predictor import Predictor


def words_of(text: str) -> list[str]:
    return [word.text for word in tokenize(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Show me flights from Boston?", ["Show", "me", "flights", "from", "Boston"]),
        ("  boston   to\tdenver \n", ["boston", "to", "denver"]),
        ("flights to boston, denver!", ["flights", "to", "boston", "denver"]),
        ("a flight to boston.", ["a", "flight", "to", "boston"]),
        ("boston.then denver", ["boston.then", "denver"]),
        ("i'd like what's cheapest", ["i'd", "like", "what's", "cheapest"]),
        ("to St. Louis at 7 o'clock.", ["to", "St.", "Louis", "at", "7", "o'clock"]),
        ("ends on main st.", ["ends", "on", "main", "st."]),
        ("(boston) \"denver\" 'dallas'", ["boston", "denver", "dallas"]),
        ("boston,denver;dallas", ["boston", "denver", "dallas"]),
        ("¿qué? ¡sí!", ["qué", "sí"]),
        ("boston\x00denver\x07 dallas", ["boston", "denver", "dallas"]),
        ("I’d fly at 10:30 a.m.", ["I’d", "fly", "at", "10:30", "a.m."]),
        ("... ?! ,", []),
        ("", []),
    ],
)
def test_tokenize_words(text: str, expected: list[str]) -> None:
    assert words_of(text) == expected


def test_offsets_point_into_the_original_text() -> None:
    text = "  Show me   flights from NEW  York City, to St. Louis?!"
    words = tokenize(text)
    assert [text[w.start : w.end] for w in words] == [w.text for w in words]
    assert words[4].text == "NEW" and words[4].start == text.index("NEW")
    assert words[-1].text == "Louis" and words[-1].end == text.index("?!")


def test_lookup_key_normalises_unicode_forms() -> None:
    # typographic apostrophe and full-width letters map to the forms the training data uses
    assert tokenize("I’d")[0].key == "I'd"
    assert tokenize("ＢＯＳＴＯＮ")[0].key == "BOSTON"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_tokenize_invariants_on_any_unicode(text: str) -> None:
    words = tokenize(text)
    previous_end = 0
    for word in words:
        assert text[word.start : word.end] == word.text
        assert word.text and word.start >= previous_end
        assert not any(char.isspace() for char in word.text)
        previous_end = word.end


def test_words_from_tokens_offsets_and_errors() -> None:
    text, words = words_from_tokens(["from", "new", "york"])
    assert text == "from new york"
    assert [(w.start, w.end) for w in words] == [(0, 4), (5, 8), (9, 13)]
    with pytest.raises(InputError, match=r"tokens\[1\] is empty"):
        words_from_tokens(["a", " "])
    with pytest.raises(InputError, match="whitespace"):
        words_from_tokens(["new york"])


@pytest.fixture(scope="module", params=[False, True], ids=["inference-thread", "model-process"])
def predictor(tiny_checkpoint: Path, request: pytest.FixtureRequest):
    """The predictor both ways it runs forward passes: on its inference thread, or in a child process."""
    predictor = Predictor(intent_top_k=2, model_process=request.param)
    predictor.load(tiny_checkpoint)
    predictor.start()
    yield predictor
    predictor.stop()


def prepared(text: str) -> Prepared:
    return Prepared(text, tokenize(text))


def test_batched_results_equal_single_results(predictor: Predictor) -> None:
    texts = ["show me flights from boston to denver", "what is the fare from new york to dallas on monday", "to x"]
    together = predictor.predict([prepared(t) for t in texts])
    for text, batched in zip(texts, together, strict=True):
        (alone,) = predictor.predict([prepared(text)])
        assert [w["tag"] for w in alone["words"]] == [w["tag"] for w in batched["words"]]
        for a, b in zip(alone["words"], batched["words"], strict=True):
            assert a["confidence"] == pytest.approx(b["confidence"], abs=2e-4)
        assert alone["intent"]["name"] == batched["intent"]["name"]


def test_result_shape_spans_and_confidences(predictor: Predictor) -> None:
    text = "Show me flights from New  York to Boston on Monday?"
    (result,) = predictor.predict([prepared(text)])
    assert [w["text"] for w in result["words"]] == [
        *("Show", "me", "flights", "from", "New", "York", "to", "Boston", "on", "Monday")
    ]
    assert len(result["intent_ranking"]) == 2
    assert result["intent"] == result["intent_ranking"][0]
    assert result["intent_ranking"][0]["confidence"] >= result["intent_ranking"][1]["confidence"]
    tags = [w["tag"] for w in result["words"]]
    assert [(s["slot"], s["token_start"], s["token_end"]) for s in result["slots"]] == [
        (span.label, span.start, span.end) for span in bio_to_spans(tags)
    ]
    for slot in result["slots"]:
        assert text[slot["start"] : slot["end"]] == slot["value"]
        words = result["words"][slot["token_start"] : slot["token_end"]]
        assert slot["start"] == words[0]["start"] and slot["end"] == words[-1]["end"]
        assert slot["confidence"] == pytest.approx(math.prod(w["confidence"] for w in words), abs=1e-3)


def test_multi_word_values_are_grouped_with_original_spacing(all_city_checkpoint: Path) -> None:
    predictor = Predictor()
    predictor.load(all_city_checkpoint)
    predictor.start()
    try:
        text = "  New   York City?"
        (result,) = predictor.predict([prepared(text)])
    finally:
        predictor.stop()
    # Every word's arg-max is `I-fromloc.city_name`, but a sentence cannot start with `I-`: the best
    # BIO-valid sequence opens the chunk with `B-` and continues it.
    assert [w["tag"] for w in result["words"]] == ["B-fromloc.city_name"] + ["I-fromloc.city_name"] * 2
    (slot,) = result["slots"]
    confidences = [w["confidence"] for w in result["words"]]
    assert confidences[1:] == [pytest.approx(1.0)] * 2
    assert slot == {
        "slot": "fromloc.city_name",
        "value": "New   York City",
        "canonical": None,  # the checkpoint has no synonyms
        "start": 2,
        "end": 17,
        "token_start": 0,
        "token_end": 3,
        "confidence": pytest.approx(confidences[0], abs=1e-4),
    }


def test_unknown_words_map_to_unk_and_still_get_a_tag(predictor: Predictor) -> None:
    vocabulary = predictor.current.tagger.vocabulary
    text = "zzyzx flights from quuxville"
    assert vocabulary.encode(["zzyzx", "quuxville"]) == [vocabulary.unk_id] * 2
    (result,) = predictor.predict([prepared(text)])
    assert len(result["words"]) == 4
    assert all(w["tag"] in predictor.current.tagger.slot_tags for w in result["words"])


def test_in_flight_batch_finishes_on_the_old_model(tiny_checkpoint: Path, all_o_checkpoint: Path) -> None:
    predictor = Predictor()
    old = predictor.load(tiny_checkpoint)
    entered, release = threading.Event(), threading.Event()
    forward = old.tagger.model.forward

    def slow_forward(*args, **kwargs):
        entered.set()
        release.wait(10)
        return forward(*args, **kwargs)

    old.tagger.model.forward = slow_forward
    predictor.start()
    try:
        future: concurrent.futures.Future = concurrent.futures.Future()
        predictor.submit([prepared("flights from boston to denver")], future)
        assert entered.wait(10)
        new = predictor.load(all_o_checkpoint)  # swaps while the old model is mid-forward
        release.set()
        assert decode(future.result(10)[0])["model"]["version"] == old.version
        (after,) = predictor.predict([prepared("flights from boston to denver")])
        assert after["model"]["version"] == new.version != old.version
        assert {w["tag"] for w in after["words"]} == {"O"}
    finally:
        release.set()
        predictor.stop()


@pytest.mark.parametrize("model_process", [False, True], ids=["inference-thread", "model-process"])
def test_broken_checkpoint_keeps_the_old_model(tiny_checkpoint: Path, tmp_path: Path, model_process: bool) -> None:
    predictor = Predictor(model_process=model_process)
    old = predictor.load(tiny_checkpoint)
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="broken.ckpt"):
        predictor.load(broken)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        predictor.load(tmp_path / "missing.ckpt")
    assert predictor.current is old
    predictor.start()
    try:
        (result,) = predictor.predict([prepared("flights from boston")])
        assert result["model"]["version"] == old.version
    finally:
        predictor.stop()


TEXTS = ["show me flights from boston to denver", "fares to dallas", "what is the cheapest flight to new york"]


def rows_here(served, texts: list[str]) -> list[tuple]:
    return score_rows(served, [prepared(t) for t in texts], 3)


def test_model_process_scores_like_the_thread_and_keeps_the_previous_model(
    tiny_checkpoint: Path, all_o_checkpoint: Path
) -> None:
    """A batch sent with the old model's hash right after a reload (it started before the swap) is
    still scored by the old model; the new one answers for its own hash."""
    predictor = Predictor(model_process=True)
    try:
        old = predictor.load(tiny_checkpoint)
        new = predictor.load(all_o_checkpoint)
        process = predictor.runner.process
        items = [prepared(t) for t in TEXTS]
        in_child_old = process.score(old.tagger.sha256, items)
        in_child_new = process.score(new.tagger.sha256, items)
        for child, here in ((in_child_old, rows_here(old, TEXTS)), (in_child_new, rows_here(new, TEXTS))):
            assert [row[0] for row in child] == [row[0] for row in here]  # tag ids
            assert [row[3] for row in child] == [row[3] for row in here]  # intent ids
            assert [row[1] for row in child] == [pytest.approx(row[1]) for row in here]
        o_id = new.tagger.slot_tags.index("O")
        assert {tag for item, row in zip(items, in_child_new, strict=True) for tag in row[0][: len(item.words)]} == {
            o_id
        }
        assert in_child_old != in_child_new
        with pytest.raises(CheckpointError, match="changed while it was being loaded"):
            process.load(tiny_checkpoint, "0" * 64)  # the file is not the one the parent read
        assert process.score(new.tagger.sha256, items) == in_child_new  # and it still serves
    finally:
        predictor.stop()


def test_model_process_is_restarted_when_it_dies(tiny_checkpoint: Path) -> None:
    import os
    import signal

    predictor = Predictor(model_process=True)
    predictor.load(tiny_checkpoint)
    predictor.start()
    try:
        before = predictor.predict([prepared(t) for t in TEXTS])
        first = predictor.runner.process.pid
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while predictor.runner.process.alive and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not predictor.runner.process.alive
        after = predictor.predict([prepared(t) for t in TEXTS])
        assert predictor.runner.process.pid != first
        assert [r["words"] for r in after] == [r["words"] for r in before]
    finally:
        predictor.stop()


def test_model_process_answers_batches_sent_back_to_back_in_order(tiny_checkpoint: Path) -> None:
    """Several batches in the pipe at once (as the predictor sends them) come back to their own
    futures, each equal to that batch scored alone."""
    predictor = Predictor(model_process=True)
    try:
        served = predictor.load(tiny_checkpoint)
        process = predictor.runner.process
        batches = [[prepared(t) for t in TEXTS[: 1 + i % 3]] for i in range(6)]
        futures = [process.submit_score(served.tagger.sha256, batch) for batch in batches]
        for batch, future in zip(batches, futures, strict=True):
            rows, seconds = future.result(30)
            assert seconds > 0
            assert [row[0] for row in rows] == [row[0] for row in rows_here(served, [i.text for i in batch])]
    finally:
        predictor.stop()


def test_model_process_reports_a_failed_pass_and_keeps_running(tiny_checkpoint: Path) -> None:
    process = ModelProcess()
    try:
        with pytest.raises(Exception, match="not loaded in the model process"):
            process.score("f" * 64, [prepared("flights")])
        assert process.alive
    finally:
        process.close()
    assert not process.alive


def test_bench_forward_times_every_batch_size(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """The pass-timing benchmark runs on any checkpoint and reports each size and the profile."""
    import subprocess
    import sys

    from tests.conftest import REPO

    sentences = tmp_path / "seq.in"
    sentences.write_text("flights from boston to denver\nshow me fares\ni want to fly to new york tomorrow\n")
    command = [sys.executable, str(REPO / "scripts" / "bench_forward.py"), "--checkpoint", str(tiny_checkpoint)]
    command += ["--data", str(sentences), "--sizes", "1", "3", "--repeats", "2", "--profile", "--gil", "0.3"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "  1 sentences (padded to 5 words)" in result.stdout
    assert "  3 sentences (padded to 8 words)" in result.stdout
    assert "Self CPU" in result.stdout
    assert "3 sentences on a thread, alone (switch interval 1 ms): " in result.stdout
    assert "beside a busy Python thread (switch interval 1 ms): " in result.stdout


def test_loading_a_model_freezes_the_objects_then_alive(tiny_checkpoint: Path) -> None:
    """After a load, in the server's process and in the model process, everything alive is frozen, so
    the collector's full passes skip it (`freeze_long_lived_objects`; the pauses they caused are in
    docs/benchmarks.md). The model process's loop runs here on a thread over a real pipe."""
    import gc
    import multiprocessing

    from models.checkpoint import file_sha256
    from serving.model_process import _child_main

    gc.unfreeze()
    predictor = Predictor()
    predictor.load(tiny_checkpoint)
    assert gc.get_freeze_count() > 0

    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    threads = torch.get_num_threads()  # the loop sets the process's torch thread count
    parent, child = multiprocessing.Pipe()
    loop = threading.Thread(target=_child_main, args=(child, threads, 3), daemon=True)
    loop.start()
    try:
        parent.send(("load", str(tiny_checkpoint), file_sha256(tiny_checkpoint), "torch"))
        assert parent.recv() == ("ok", None)
        assert gc.get_freeze_count() > 0
        parent.send(("stop",))
        assert parent.recv() == ("ok", None)
        loop.join(timeout=10)
    finally:
        gc.unfreeze()
        torch.set_num_threads(threads)
