"""Every route and every error path of the HTTP API, through FastAPI's TestClient."""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.settings import Settings
from tests.serving.serving_helpers import ADMIN_KEY, make_client, metric_value


def assert_error(response, status: int, pattern: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"]["code"], str)
    assert re.search(pattern, body["error"]["message"]), body["error"]["message"]
    return body["error"]


# -- happy paths --------------------------------------------------------------------------------------
def test_tag_text(client: TestClient) -> None:
    text = "  Show me flights from New York City to St. Louis, on Monday?!"
    response = client.post("/v1/tag", json={"text": text})
    assert response.status_code == 200
    body = response.json()
    assert body["text"] == text
    assert [w["text"] for w in body["words"]] == text.replace(",", "").replace("?!", "").split()
    for word in body["words"]:
        assert text[word["start"] : word["end"]] == word["text"]
        assert 0.0 <= word["confidence"] <= 1.0
    for slot in body["slots"]:
        assert text[slot["start"] : slot["end"]] == slot["value"]
    model = client.get("/v1/model").json()
    assert body["model"] == {"name": model["name"], "version": model["checkpoint_sha256"][:12]}
    assert body["intent"]["name"] in model["intents"]
    assert len(body["intent_ranking"]) == min(3, len(model["intents"]))


def test_tag_tokens(client: TestClient) -> None:
    response = client.post("/v1/tag", json={"tokens": ["from", "Boston", "to", "st.", "louis"]})
    assert response.status_code == 200
    body = response.json()
    assert body["text"] == "from Boston to st. louis"
    assert [(w["start"], w["end"]) for w in body["words"]] == [(0, 4), (5, 11), (12, 14), (15, 18), (19, 24)]


def test_control_characters_and_any_unicode_are_handled(client: TestClient) -> None:
    for text in ["boston\x00to\x1fdenver", "flüge nach 東京 😀 ﬁrst", "I’d fly\u200b to ＢＯＳＴＯＮ", "a\ud800b"]:
        # ASCII-escaped JSON, so that even a lone surrogate travels
        body = json.dumps({"text": text}).encode()
        response = client.post("/v1/tag", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 200, (text, response.text)
        for word in response.json()["words"]:
            assert text[word["start"] : word["end"]] == word["text"]


def test_batch_keeps_input_order_in_one_forward_pass(client: TestClient) -> None:
    items = [{"text": "flights from boston to denver"}, {"tokens": ["fare", "from", "dallas"]}, {"text": "x y z w"}]
    before = client.get("/metrics").text
    response = client.post("/v1/tag/batch", json={"items": items})
    after = client.get("/metrics").text
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["text"] for r in results] == ["flights from boston to denver", "fare from dallas", "x y z w"]
    for item, result in zip(items, results, strict=True):
        single = client.post("/v1/tag", json=item).json()
        assert [w["tag"] for w in single["words"]] == [w["tag"] for w in result["words"]]
    # one forward pass of 3 sentences, not three of one
    assert (
        metric_value(after, "slotfill_batch_sentences_count") - metric_value(before, "slotfill_batch_sentences_count")
        == 1
    )
    assert (
        metric_value(after, "slotfill_batch_sentences_sum") - metric_value(before, "slotfill_batch_sentences_sum") == 3
    )


def test_health_model_docs_and_metrics(client: TestClient) -> None:
    assert client.get("/livez").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    model = client.get("/v1/model").json()
    assert model["cell"] == "lstm" and model["bidirectional"] is True
    # the tiny checkpoint is configs/atis-lstm.yaml with 16-wide layers
    assert (model["decoder"], model["char_encoder"]) == ("softmax", "cnn")
    assert model["config"]["char_channels"] == 50 and model["config"]["hidden_size"] == model["hidden_size"] == 16
    assert "O" in model["slot_tags"] and model["intents"]
    assert model["vocabulary_size"] > 2
    assert re.fullmatch(r"[0-9a-f]{64}", model["checkpoint_sha256"])
    assert model["created_at"] and isinstance(model["training_metrics"], dict)
    assert client.get("/docs").status_code == 404  # off by default: its page loads scripts from a CDN
    assert "/v1/tag" in client.get("/openapi.json").json()["paths"]
    client.post("/v1/tag", json={"text": "boston"})
    client.post("/v1/tag", json={"text": ""})
    text = client.get("/metrics").text
    assert metric_value(text, "slotfill_http_requests_total", route="/v1/tag", method="POST", status="200") >= 1
    assert metric_value(text, "slotfill_http_requests_total", route="/v1/tag", method="POST", status="422") >= 1
    assert metric_value(text, "slotfill_http_request_duration_seconds_count", route="/v1/tag", status="200") >= 1
    assert metric_value(text, "slotfill_inference_seconds_count") >= 1


def test_readyz_before_the_model_is_loaded(tiny_checkpoint: Path) -> None:
    app = create_app(Settings(checkpoint=tiny_checkpoint))
    client = TestClient(app)  # no `with`: the lifespan has not run, so no model
    assert_error(client.get("/readyz"), 503, "^not ready: the model is loading$")
    assert_error(client.post("/v1/tag", json={"text": "boston"}), 503, "not loaded")
    assert client.get("/livez").status_code == 200


@pytest.mark.parametrize("kind", ["missing", "truncated", "incompatible"])
def test_unusable_checkpoint_at_start_is_never_served(
    tmp_path: Path, tiny_checkpoint: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    import torch

    path = tmp_path / f"{kind}.ckpt"
    if kind == "truncated":
        data = tiny_checkpoint.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "incompatible":
        bundle = torch.load(tiny_checkpoint, weights_only=True)["slotfill_bundle"]
        torch.save({**bundle, "format_version": 99}, path)
    caplog.set_level("ERROR", logger="serving")
    with TestClient(create_app(Settings(checkpoint=path))) as client:  # starts, but is not ready
        assert client.get("/livez").status_code == 200
        response = client.get("/readyz")
        assert_error(response, 503, "^not ready: the checkpoint could not be loaded$")
        assert str(tmp_path) not in response.text and "ckpt" not in response.text  # no path, no torch text
        assert_error(client.post("/v1/tag", json={"text": "boston"}), 503, "not loaded")
    assert any(f"{kind}.ckpt" in record.getMessage() for record in caplog.records)  # the details: in the log


# -- error paths ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("payload", "status", "pattern"),
    [
        ({"text": ""}, 422, "empty"),
        ({"text": " \t\n "}, 422, "empty"),
        ({"text": "?! ..."}, 422, "no words"),
        ({"text": "a" * 1001}, 422, "1000"),
        ({"text": "a " * 201}, 422, "200"),
        ({"tokens": []}, 422, "empty"),
        ({"tokens": ["a"] * 201}, 422, "200"),
        ({"tokens": ["a", ""]}, 422, r"tokens\[1\]"),
        ({"text": 5}, 422, "string"),
        ({"text": None}, 422, "exactly one"),
        ({"tokens": "boston"}, 422, "list"),
        ({"text": "a", "tokens": ["a"]}, 422, "exactly one"),
        ({}, 422, "exactly one"),
        ({"text": "a", "lang": "en"}, 422, "lang.*[Ee]xtra"),
        ([1, 2], 422, "dict|object"),
    ],
)
def test_bad_tag_input(client: TestClient, payload: object, status: int, pattern: str) -> None:
    assert_error(client.post("/v1/tag", json=payload), status, pattern)


@pytest.mark.parametrize("body", [b"{bad json", b'{"text": "\xff\xfe"}', b""])
def test_invalid_json_is_400(client: TestClient, body: bytes) -> None:
    response = client.post("/v1/tag", content=body, headers={"content-type": "application/json"})
    assert_error(response, 400, "not valid JSON|empty")


def test_batch_limits(client: TestClient) -> None:
    assert_error(client.post("/v1/tag/batch", json={"items": []}), 422, "empty")
    error = assert_error(client.post("/v1/tag/batch", json={"items": [{"text": "a"}] * 65}), 422, "65 items")
    assert "64" in error["message"]
    assert_error(client.post("/v1/tag/batch", json={"items": [{"text": "a"}, {"text": " "}]}), 422, r"items\[1\]")
    assert_error(client.post("/v1/tag/batch", json={"items": [{"text": "a"}], "x": 1}), 422, "Extra")


def test_body_over_the_byte_limit_is_413_before_parsing(tiny_checkpoint: Path) -> None:
    with make_client(tiny_checkpoint, max_body_bytes=200) as client:
        big = b'{"text": "' + b"a" * 300 + b'"}'
        assert_error(client.post("/v1/tag", content=big), 413, "200")
        # not even JSON: still 413, because the size is checked before anything parses it
        assert_error(client.post("/v1/tag", content=b"\x00" * 500), 413, "SLOTFILL_MAX_BODY_BYTES")

        def chunks():  # no Content-Length: the limit is enforced while reading
            for _ in range(10):
                yield b"a" * 50

        assert_error(client.post("/v1/tag", content=chunks()), 413, "limit is 200")
        assert client.post("/v1/tag", json={"text": "boston"}).status_code == 200


def test_configured_limits_are_named(tiny_checkpoint: Path) -> None:
    with make_client(tiny_checkpoint, max_chars=10, max_words=2, max_batch_items=2, intent_top_k=1) as client:
        assert_error(client.post("/v1/tag", json={"text": "a" * 11}), 422, "limit is 10")
        assert_error(client.post("/v1/tag", json={"text": "a b c"}), 422, "limit is 2")
        assert_error(client.post("/v1/tag/batch", json={"items": [{"text": "a"}] * 3}), 422, "limit is 2")
        assert len(client.post("/v1/tag", json={"text": "a b"}).json()["intent_ranking"]) == 1


def test_unknown_route_and_method_use_the_error_shape(client: TestClient) -> None:
    assert_error(client.get("/nope"), 404, "Not Found")
    assert_error(client.get("/v1/tag"), 405, "Method Not Allowed")


# -- reload -----------------------------------------------------------------------------------------------
def test_reload_is_disabled_without_a_key(tiny_checkpoint: Path) -> None:
    with TestClient(create_app(Settings(checkpoint=tiny_checkpoint))) as client:
        assert_error(client.post("/v1/admin/reload", headers={"X-API-Key": "anything"}), 403, "disabled")


def test_reload_needs_a_valid_key(client: TestClient) -> None:
    assert_error(client.post("/v1/admin/reload"), 401, "X-API-Key")
    assert_error(client.post("/v1/admin/reload", headers={"X-API-Key": "wrong"}), 401, "X-API-Key")


def test_reload_swaps_and_a_broken_file_keeps_the_old_model(served_checkpoint: Path, all_o_checkpoint: Path) -> None:
    key = {"X-API-Key": ADMIN_KEY}
    with make_client(served_checkpoint) as client:
        old = client.get("/v1/model").json()
        os.replace(_copy(all_o_checkpoint, served_checkpoint), served_checkpoint)
        response = client.post("/v1/admin/reload", headers=key)
        assert response.status_code == 200, response.text
        assert response.json()["previous"]["version"] == old["version"]
        new = client.get("/v1/model").json()
        assert new["checkpoint_sha256"] != old["checkpoint_sha256"]
        assert {w["tag"] for w in client.post("/v1/tag", json={"text": "from boston to denver"}).json()["words"]} == {
            "O"
        }
        served_checkpoint.write_bytes(b"garbage")
        error = assert_error(client.post("/v1/admin/reload", headers=key), 409, "still serving")
        assert "served.ckpt" in error["message"]
        served_checkpoint.unlink()
        assert_error(client.post("/v1/admin/reload", headers=key), 409, "no such checkpoint")
        assert client.get("/v1/model").json()["checkpoint_sha256"] == new["checkpoint_sha256"]
        assert client.post("/v1/tag", json={"text": "boston"}).status_code == 200
        assert metric_value(client.get("/metrics").text, "slotfill_model_reloads_total", outcome="failed") >= 2


def _copy(source: Path, target: Path) -> Path:
    """Copy next to `target` and return the copy, so the swap itself is one atomic rename."""
    staged = target.with_suffix(".staged")
    staged.write_bytes(source.read_bytes())
    return staged


def test_reload_with_requests_in_flight(served_checkpoint: Path, all_o_checkpoint: Path) -> None:
    """Hammer /v1/tag from several threads while the checkpoint is swapped: every request succeeds and
    each answer is wholly from one model (the old tags, or all `O` from the new one)."""
    text = "show me flights from boston to denver on monday"
    with make_client(served_checkpoint) as client:
        old_answer = client.post("/v1/tag", json={"text": text}).json()
        assert {w["tag"] for w in old_answer["words"]} != {"O"}
        stop = threading.Event()
        answers: list[tuple[int, dict]] = []

        def hammer() -> None:
            while not stop.is_set():
                response = client.post("/v1/tag", json={"text": text})
                answers.append((response.status_code, response.json()))

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            while len(answers) < 20:
                threading.Event().wait(0.01)
            os.replace(_copy(all_o_checkpoint, served_checkpoint), served_checkpoint)
            assert client.post("/v1/admin/reload", headers={"X-API-Key": ADMIN_KEY}).status_code == 200
            count = len(answers)
            while len(answers) < count + 20:
                threading.Event().wait(0.01)
        finally:
            stop.set()
            for thread in threads:
                thread.join(10)
    old_version = old_answer["model"]["version"]
    versions = set()
    for status, answer in answers:
        assert status == 200
        version = answer["model"]["version"]
        versions.add(version)
        tags = [w["tag"] for w in answer["words"]]
        if version == old_version:
            assert tags == [w["tag"] for w in old_answer["words"]]
        else:
            assert tags == ["O"] * len(tags)
    assert len(versions) == 2
    assert answers[-1][1]["model"]["version"] != old_version


def test_the_gil_switch_interval_setting_is_applied(tiny_checkpoint) -> None:
    import sys

    before = sys.getswitchinterval()
    try:
        make_client(tiny_checkpoint, gil_switch_interval_ms=2.5)
        assert sys.getswitchinterval() == pytest.approx(0.0025)
    finally:
        sys.setswitchinterval(before)
