"""`POST /model/parse` against Rasa's NLU HTTP contract, and canonical values in `/v1/tag`.

The expected shape is written from Rasa's HTTP API documentation (the `ParseResult`, `Intent` and
`Entity` schemas of its OpenAPI spec, and the NLU-only server page: a custom NLU server answers
`/model/parse` as Rasa NLU does): a parse result holds `text`, `intent` {name, confidence},
`intent_ranking` [{name, confidence}], and `entities` [{entity, start, end, value, ...}] with
character offsets into `text`; Rasa's extractors add `confidence_entity` and `extractor`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from models.checkpoint import read_bundle, save_bundle
from models.synonyms import Synonym, SynonymTable
from tests.serving.serving_helpers import biased_checkpoint, make_client

# field -> JSON type(s) allowed, from Rasa's documentation
PARSE_RESULT = {"text": str, "intent": dict, "intent_ranking": list, "entities": list}
INTENT = {"name": str, "confidence": float}
ENTITY = {"entity": str, "start": int, "end": int, "value": str, "confidence_entity": float, "extractor": str}


def check_fields(obj: dict, expected: dict[str, type], where: str) -> None:
    assert set(obj) == set(expected), f"{where}: fields {sorted(obj)}, expected {sorted(expected)}"
    for field, kind in expected.items():
        value = obj[field]
        if kind is float:
            assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{where}.{field}: {value!r}"
            assert 0.0 <= value <= 1.0, f"{where}.{field} is a probability: {value!r}"
        else:
            assert isinstance(value, kind) and not isinstance(value, bool), f"{where}.{field}: {value!r}"


@pytest.fixture(scope="module")
def synonym_checkpoint(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint that tags every word `B-fromloc.city_name` (one slot per word), with synonyms:
    one for every slot type, and one for another slot type than the model finds."""
    path = tmp_path_factory.mktemp("synonyms") / "synonyms.ckpt"
    biased_checkpoint(tiny_checkpoint, "B-fromloc.city_name", path)
    bundle = read_bundle(path)
    table = SynonymTable([Synonym("NYC", "New York"), Synonym("bos", "Boston", "toloc.city_name")])
    bundle["synonyms"] = table.to_json()
    save_bundle(bundle, path)
    return path


@pytest.fixture(scope="module")
def synonym_client(synonym_checkpoint: Path) -> Iterator[TestClient]:
    with make_client(synonym_checkpoint) as test_client:
        yield test_client


def test_parse_answers_rasas_documented_shape_field_by_field(client: TestClient) -> None:
    text = "show me flights from boston to denver on monday"
    response = client.post("/model/parse", json={"text": text, "message_id": "b2831e73"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    check_fields(body, PARSE_RESULT, "result")
    assert body["text"] == text
    check_fields(body["intent"], INTENT, "intent")
    assert body["intent_ranking"], "the tiny model has an intent head"
    for i, intent in enumerate(body["intent_ranking"]):
        check_fields(intent, INTENT, f"intent_ranking[{i}]")
    confidences = [intent["confidence"] for intent in body["intent_ranking"]]
    assert confidences == sorted(confidences, reverse=True)
    assert body["intent"] == body["intent_ranking"][0]
    assert body["entities"], "the tiny model finds the cities"
    for i, entity in enumerate(body["entities"]):
        check_fields(entity, ENTITY, f"entities[{i}]")
        assert entity["extractor"] == "slotfill"
        assert 0 <= entity["start"] < entity["end"] <= len(text)
        assert entity["value"] == text[entity["start"] : entity["end"]]  # no synonyms in this checkpoint

    # the same answer as /v1/tag, in Rasa's words
    tagged = client.post("/v1/tag", json={"text": text}).json()
    assert body["intent_ranking"] == tagged["intent_ranking"]
    assert [(e["entity"], e["start"], e["end"], e["confidence_entity"]) for e in body["entities"]] == [
        (s["slot"], s["start"], s["end"], s["confidence"]) for s in tagged["slots"]
    ]


def test_parse_has_the_limits_and_error_shape_of_v1_tag(client: TestClient) -> None:
    for body, status in (
        ({"text": "   "}, 422),
        ({"text": "x" * 100_000}, 422),
        ({"message_id": "1"}, 422),
        ({"text": 5}, 422),
    ):
        response = client.post("/model/parse", json=body)
        assert response.status_code == status, (body, response.text)
        error = response.json()["error"]
        assert error["code"] in ("invalid_input", "validation_error") and error["message"]
    whitespace = client.post("/model/parse", json={"text": " \t "}).json()["error"]
    assert whitespace == client.post("/v1/tag", json={"text": " \t "}).json()["error"]
    for content, content_type in ((b"not json", "application/json"), (b"text=hi", "text/plain")):
        headers = {"content-type": content_type}
        parse = client.post("/model/parse", content=content, headers=headers)
        tag = client.post("/v1/tag", content=content, headers=headers)
        assert parse.status_code == tag.status_code in (400, 415), parse.text
        assert parse.json()["error"] == tag.json()["error"]


def test_parse_refuses_a_body_over_the_byte_limit(tiny_checkpoint: Path) -> None:
    with make_client(tiny_checkpoint, max_body_bytes=64) as small:
        response = small.post("/model/parse", json={"text": "flights from boston to denver " * 4})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"


def test_parse_before_the_model_is_loaded_answers_503(tmp_path: Path) -> None:
    with make_client(tmp_path / "missing.ckpt") as not_ready:
        response = not_ready.post("/model/parse", json={"text": "flights to boston"})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "not_ready"


def test_canonical_values_in_v1_tag_and_model_parse(synonym_client: TestClient) -> None:
    text = "flights nyc bos"
    slots = synonym_client.post("/v1/tag", json={"text": text}).json()["slots"]
    assert [(s["slot"], s["value"], s["canonical"]) for s in slots] == [
        ("fromloc.city_name", "flights", None),  # no synonym
        ("fromloc.city_name", "nyc", "New York"),  # a synonym for every slot type, matched case-insensitively
        ("fromloc.city_name", "bos", None),  # a synonym for another slot type does not apply
    ]
    entities = synonym_client.post("/model/parse", json={"text": text}).json()["entities"]
    assert [(e["entity"], e["value"], e["start"], e["end"]) for e in entities] == [
        ("fromloc.city_name", "flights", 0, 7),
        ("fromloc.city_name", "New York", 8, 11),
        ("fromloc.city_name", "bos", 12, 15),
    ]
    batch = synonym_client.post("/v1/tag/batch", json={"items": [{"tokens": ["NYC"]}]}).json()
    assert batch["results"][0]["slots"][0]["canonical"] == "New York"


def test_parse_is_in_the_openapi_schema(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    operation = schema["paths"]["/model/parse"]["post"]
    assert set(operation["responses"]) >= {"200", "413", "422", "503"}
    slot = schema["components"]["schemas"]["Slot"]
    assert "canonical" in slot["required"]
