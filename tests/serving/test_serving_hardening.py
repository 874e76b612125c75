"""The service under hostile and heavy input: memory bounded by configuration (byte-bounded word
caches), oversized work refused before it costs anything, small requests served between the pieces
of big ones, honest errors (503 + Retry-After on a dead model process, /readyz without paths, admin
key and media-type checks, header limit) and the log format."""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from models.text import Word, tokenize
from serving import intake
from serving.app import create_app
from serving.cache import ENTRY_OVERHEAD_BYTES, WordCache
from serving.inference import Prepared
from serving.logs import JsonFormatter, logging_config
from serving.predictor import Predictor
from serving.settings import MIN_ADMIN_KEY_CHARS, Settings
from tests.serving.serving_helpers import ADMIN_KEY, make_client

HOSTILE = "\ufdfa"  # NFKC: 18 characters


def prepared(text: str) -> Prepared:
    return Prepared(text, tokenize(text))


def assert_error(response, status: int, pattern: str) -> dict:
    import re

    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert re.search(pattern, error["message"]), error["message"]
    return error


# -- memory ---------------------------------------------------------------------------------------------
def test_word_cache_stays_within_its_byte_budget_and_evicts_the_least_recent() -> None:
    cache = WordCache(max_bytes=20_000, max_key_chars=64)
    calls: list[str] = []

    def compute(key: str) -> int:
        calls.append(key)
        return len(key)

    for serial in range(2_000):
        cache.lookup([f"word{serial}", "boston"], compute)  # "boston" stays recent
        assert cache.bytes <= 20_000
    assert 50 < len(cache) < 2_000  # full, and evicting
    assert "boston" in cache and "word0" not in cache
    assert calls.count("boston") == 1  # computed once, then always found
    assert cache.lookup(["boston", "word0"], compute) == [6, 5]


def test_word_cache_never_stores_long_keys() -> None:
    cache = WordCache(max_bytes=1 << 20, max_key_chars=64)
    long_key = "x" * 65
    assert cache.lookup([long_key, "y" * 64], len) == [65, 64]
    assert long_key not in cache and "y" * 64 in cache
    assert cache.bytes < 64 * 4 + 200 + ENTRY_OVERHEAD_BYTES


@pytest.mark.parametrize("model_process", [False, True], ids=["inference-thread", "model-process"])
def test_hostile_words_leave_the_caches_within_a_scaled_down_budget(tiny_checkpoint: Path, model_process) -> None:
    """Unique words that NFKC blows up 18-fold, and many unique short ones: the served model's caches
    (in this process, or measured in the child through its answers staying right) stay in budget."""
    budget = 50_000
    predictor = Predictor(model_process=model_process, cache_bytes=budget, cache_word_chars=64)
    served = predictor.load(tiny_checkpoint)
    predictor.start()
    try:
        reference = predictor.predict([prepared("flights from boston to denver")])
        for serial in range(20):
            words = [HOSTILE * 50 + f"q{serial}x{i}" for i in range(16)] + [f"w{serial}n{i}" for i in range(64)]
            (result,) = predictor.predict([prepared(" ".join(words))])
            assert len(result["words"]) == len(words)
        assert predictor.predict([prepared("flights from boston to denver")]) == reference
        if not model_process:
            for cache in (served.id_cache, served.char_cache):
                assert 0 < cache.bytes <= budget
                assert all(len(key) <= 64 for key in cache._entries)
    finally:
        predictor.stop()


# -- oversized work refused early -------------------------------------------------------------------------
def test_over_limit_batches_are_refused_before_pydantic_builds_anything(client: TestClient, monkeypatch) -> None:
    built = []
    real = intake.TagRequest.model_validate
    monkeypatch.setattr(intake.TagRequest, "model_validate", lambda data: built.append(1) or real(data))
    assert_error(client.post("/v1/tag/batch", json={"items": [{"text": "a"}] * 5_000}), 422, "5000 items")
    assert_error(client.post("/v1/tag/batch", json={"items": [{"text": "a" * 1_001}]}), 422, r"items\[0\].*1000")
    assert_error(client.post("/v1/tag/batch", json={"items": [{"tokens": ["a"] * 201}]}), 422, "201 tokens")
    assert built == []
    assert client.post("/v1/tag/batch", json={"items": [{"text": "a"}]}).status_code == 200
    assert built == [1]


def test_total_words_per_batch_are_limited(tiny_checkpoint: Path) -> None:
    with make_client(tiny_checkpoint, max_batch_words=10) as client:
        assert client.post("/v1/tag/batch", json={"items": [{"text": "a b c d e"}] * 2}).status_code == 200
        error = assert_error(
            client.post("/v1/tag/batch", json={"items": [{"text": "a b c d e"}] * 3}), 422, "more than 10 words"
        )
        assert "SLOTFILL_MAX_BATCH_WORDS" in error["message"]


def test_the_default_body_limit_fits_the_largest_legitimate_batch(tiny_checkpoint: Path) -> None:
    settings = Settings(checkpoint=tiny_checkpoint)
    # every item at the character limit, each character written as an escaped surrogate pair
    largest = json.dumps({"items": [{"text": "\U0001f600" * settings.max_chars}] * settings.max_batch_items})
    assert len(largest) <= settings.body_limit < 1 << 20
    with make_client(tiny_checkpoint) as client:
        response = client.post("/v1/tag/batch", content=largest, headers={"content-type": "application/json"})
        assert response.status_code == 200, response.text[:300]
        assert_error(client.post("/v1/tag", content=b" " * (settings.body_limit + 1)), 413, "limit")


@pytest.mark.parametrize(
    ("content_type", "body", "status", "pattern"),
    [
        ("text/plain", b'{"text": "boston"}', 415, "text/plain is not accepted; send application/json"),
        ("application/x-www-form-urlencoded", b"text=boston", 415, "x-www-form-urlencoded"),
        ("application/json", b"text=boston", 400, "not valid JSON"),
        ("application/json", b"   ", 400, "empty"),
        ("application/json; charset=utf-8", b'{"text": "boston"}', 200, ""),
        (None, b'{"text": "boston"}', 200, ""),
    ],
)
def test_bodies_that_are_not_json(client: TestClient, content_type, body: bytes, status: int, pattern: str) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    for route in ("/v1/tag", "/v1/tag/batch"):
        payload = body if route == "/v1/tag" or status != 200 else b'{"items": [{"text": "boston"}]}'
        response = client.post(route, content=payload, headers=headers)
        if status == 200:
            assert response.status_code == 200, response.text
        else:
            assert_error(response, status, pattern)


@pytest.mark.parametrize("token", ["", " ", "\u200b", "\u200b\u2060", "a\x00b", "a\tb", "\x7f"])
def test_tokens_follow_the_visible_character_rule_of_text(client: TestClient, token: str) -> None:
    assert_error(client.post("/v1/tag", json={"tokens": ["boston", token]}), 422, r"tokens\[1\]")


def test_visible_tokens_with_format_characters_inside_are_kept(client: TestClient) -> None:
    response = client.post("/v1/tag", json={"tokens": ["bos\u200bton", "é", "\u200bx"]})
    assert response.status_code == 200, response.text
    assert [w["text"] for w in response.json()["words"]] == ["bos\u200bton", "é", "\u200bx"]


# -- fairness ---------------------------------------------------------------------------------------------
def test_big_requests_are_split_and_small_ones_go_between_the_pieces(tiny_checkpoint: Path) -> None:
    """A big request runs as pieces of at most `chunk_words` padded words; a small request that arrives
    while the first piece runs goes next, before the big request's other pieces."""
    predictor = Predictor(chunk_words=40)
    served = predictor.load(tiny_checkpoint)
    passes: list[int] = []
    entered, release = threading.Event(), threading.Event()
    forward = served.tagger.model.forward

    def recording_forward(token_ids, *args, **kwargs):
        passes.append(int(token_ids.numel()))
        entered.set()
        release.wait(10)
        return forward(token_ids, *args, **kwargs)

    served.tagger.model.forward = recording_forward
    predictor.start()
    try:
        big = [prepared(" ".join(["boston"] * 10))] * 12  # 120 words: pieces of 4 x 10
        small = [prepared("flights to denver")]
        big_future: concurrent.futures.Future = concurrent.futures.Future()
        small_future: concurrent.futures.Future = concurrent.futures.Future()
        predictor.submit(big, big_future)
        assert entered.wait(10)
        predictor.submit(small, small_future)
        release.set()
        small_result = small_future.result(10)
        big_result = big_future.result(10)
    finally:
        release.set()
        predictor.stop()
    assert passes == [40, 3, 40, 40]  # big piece, the small request, the rest of the big one
    assert len(big_result) == 12 and len(small_result) == 1
    assert [s.item for s in big_result] == big  # answered in input order


def test_split_batches_answer_like_one_pass(tiny_checkpoint: Path) -> None:
    texts = ["show me flights from boston to denver on monday", "fares", "what is the cheapest flight to dallas"]
    items = [prepared(t) for t in texts * 5]
    whole = Predictor(chunk_words=10_000)
    split = Predictor(chunk_words=20)
    for predictor in (whole, split):
        predictor.load(tiny_checkpoint)
        predictor.start()
    try:
        expected = whole.predict(items)
        got = split.predict(items)
    finally:
        whole.stop()
        split.stop()
    assert [r["words"] for r in got] == [r["words"] for r in expected]
    assert [r["intent"]["name"] for r in got] == [r["intent"]["name"] for r in expected]


# -- honest errors ----------------------------------------------------------------------------------------
def test_a_killed_model_process_answers_503_with_retry_after_then_recovers(tiny_checkpoint: Path) -> None:
    with make_client(tiny_checkpoint, model_process=True) as client:
        assert client.post("/v1/tag", json={"text": "flights to boston"}).status_code == 200
        process = client.app.state.serving.predictor.runner.process
        pid = process.pid
        os.kill(pid, signal.SIGSTOP)  # the next request waits in the pipe of a stopped child
        answers: list = []
        request = threading.Thread(
            target=lambda: answers.append(client.post("/v1/tag", json={"text": "flights to denver"}))
        )
        request.start()
        deadline = time.monotonic() + 10
        while not process._link.pending and time.monotonic() < deadline:
            time.sleep(0.01)
        assert process._link.pending, "the request never reached the model process"
        os.kill(pid, signal.SIGKILL)
        request.join(20)
        (response,) = answers
        error = assert_error(response, 503, "model process stopped.*retry")
        assert error["code"] == "model_unavailable"
        assert response.headers["retry-after"] == "1"
        retried = client.post("/v1/tag", json={"text": "flights to denver"})
        assert retried.status_code == 200
        assert client.app.state.serving.predictor.runner.process.pid != pid


@pytest.mark.parametrize(
    "key", ["short", "x" * (MIN_ADMIN_KEY_CHARS - 1), "  " + "y" * (MIN_ADMIN_KEY_CHARS - 2) + " "]
)
def test_short_admin_keys_are_refused_at_start_up(tiny_checkpoint: Path, key: str) -> None:
    with pytest.raises(ValueError, match=f"at least {MIN_ADMIN_KEY_CHARS}") as caught:
        create_app(Settings(checkpoint=tiny_checkpoint, admin_api_key=key))
    assert key.strip() not in str(caught.value)  # the message never holds the key


def test_admin_key_whitespace_is_stripped_and_said(tiny_checkpoint: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="serving")
    settings = Settings(checkpoint=tiny_checkpoint, admin_api_key=f"  {ADMIN_KEY}\n")
    assert settings.admin_api_key is not None and settings.admin_api_key.get_secret_value() == ADMIN_KEY
    assert any("3 surrounding whitespace characters stripped" in r.getMessage() for r in caplog.records)
    assert all(ADMIN_KEY not in r.getMessage() for r in caplog.records)


def test_oversized_headers_get_431(tiny_checkpoint: Path) -> None:
    with make_client(tiny_checkpoint, max_header_bytes=2048) as client:
        assert client.get("/livez", headers={"x-pad": "a" * 1000}).status_code == 200
        assert_error(client.get("/livez", headers={"x-pad": "a" * 3000}), 431, "SLOTFILL_MAX_HEADER_BYTES")


def test_docs_only_when_switched_on(tiny_checkpoint: Path) -> None:
    with make_client(tiny_checkpoint, docs=True) as client:
        assert client.get("/docs").status_code == 200
    with make_client(tiny_checkpoint) as client:
        assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404
        schema = client.get("/openapi.json").json()
        body = schema["paths"]["/v1/tag/batch"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/BatchRequest"}
        assert {"TagRequest", "BatchRequest"} <= set(schema["components"]["schemas"])


# -- logs -------------------------------------------------------------------------------------------------
def test_json_log_lines_carry_time_level_and_message() -> None:
    record = logging.LogRecord("serving.state", logging.ERROR, __file__, 1, "reload failed: %s", ("x",), None)
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "ERROR" and line["logger"] == "serving.state" and line["message"] == "reload failed: x"
    assert line["time"].endswith("Z") and "T" in line["time"]
    config = logging_config("warning", "json")
    assert config["formatters"]["default"]["()"].endswith("JsonFormatter")
    assert config["loggers"]["serving"]["level"] == "WARNING"
    assert "%(asctime)s %(levelname)s" in logging_config("info", "text")["formatters"]["default"]["format"]


def test_word_type_is_shared_with_the_tokenizer() -> None:
    assert tokenize("to Boston")[1] == Word("Boston", 3, 9, "Boston")


def test_long_words_get_a_bounded_key_that_is_never_a_vocabulary_word() -> None:
    from models.text import CUT, LONGEST_KEY, lookup_key

    word = HOSTILE * 1_000
    (only,) = tokenize(f" {word} ")
    assert (only.start, only.end, only.text) == (1, 1_001, word)  # offsets and text untouched
    assert only.key.endswith(CUT) and len(only.key) <= LONGEST_KEY * 18 + 1
    assert lookup_key("x" * LONGEST_KEY) == "x" * LONGEST_KEY  # at the bound: the whole word
    assert lookup_key("Ｂｏｓｔｏｎ") == "Boston"


def test_the_model_process_caps_onednn_s_shape_cache() -> None:
    """oneDNN keeps a compiled LSTM primitive per batch shape (1,024 by default, about 0.4 MB each):
    the child starts with the cap in its environment, read when torch loads."""
    from serving.model_process import ModelProcess

    process = ModelProcess()
    try:
        environment = Path(f"/proc/{process.pid}/environ").read_bytes().split(b"\0")
        expected = os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"].encode()
        assert b"ONEDNN_PRIMITIVE_CACHE_CAPACITY=" + expected in environment
        assert int(expected) <= 256
    finally:
        process.close()
