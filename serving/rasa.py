"""`POST /model/parse`: Rasa's NLU HTTP contract, so a Rasa assistant can use slotfill as its NLU
server (`nlu: url:` in the assistant's endpoints.yml).

The request is Rasa's `{"text": ...}`; other fields Rasa sends (`message_id`, ...) are accepted and
ignored. The answer is Rasa's parse result: `text`, `intent`, `intent_ranking` and `entities`, one
entity per slot with `value` its canonical value when a synonym applies (what Rasa's synonym mapper
does) and the text as written otherwise. Limits and error answers are those of `/v1/tag`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from serving.errors import ERRORS, JSON, ApiError, json_response
from serving.inference import decode
from serving.intake import parse_json, prepare
from serving.routes import infer, serving_state
from serving.schemas import TagRequest

EXTRACTOR = "slotfill"


class ParseRequest(BaseModel):
    """Rasa's parse request: `text`; every other field is accepted and ignored."""

    model_config = ConfigDict(
        extra="allow", json_schema_extra={"examples": [{"text": "flights from nyc to boston", "message_id": "1"}]}
    )

    text: StrictStr = Field(description="raw utterance; the limits of /v1/tag apply")


class ParseIntent(BaseModel):
    name: str | None = Field(description="intent name; null for a checkpoint without an intent head")
    confidence: float


class ParseEntity(BaseModel):
    entity: str = Field(description="slot type")
    start: int = Field(description="offset of the first character in text")
    end: int = Field(description="offset after the last character (end-exclusive)")
    value: str = Field(description="canonical value when a synonym applies, else text[start:end]")
    confidence_entity: float = Field(description="product of the span's word confidences")
    extractor: str = Field(description=f"always {EXTRACTOR!r}")


class ParseResponse(BaseModel):
    text: str
    intent: ParseIntent
    intent_ranking: list[ParseIntent]
    entities: list[ParseEntity]


def to_rasa(result: dict[str, Any]) -> dict[str, Any]:
    """A `/v1/tag` answer in Rasa's parse-result shape."""
    entities = [
        {
            "entity": slot["slot"],
            "start": slot["start"],
            "end": slot["end"],
            "value": slot["canonical"] if slot["canonical"] is not None else slot["value"],
            "confidence_entity": slot["confidence"],
            "extractor": EXTRACTOR,
        }
        for slot in result["slots"]
    ]
    intent = result["intent"] or {"name": None, "confidence": 0.0}
    return {"text": result["text"], "intent": intent, "intent_ranking": result["intent_ranking"], "entities": entities}


router = APIRouter(tags=["rasa"])


_PARSE_BODY = {
    "requestBody": {"required": True, "content": {JSON: {"schema": ParseRequest.model_json_schema()}}},
}


@router.post(
    "/model/parse",
    response_model=ParseResponse,
    responses=ERRORS,
    summary="Rasa NLU HTTP API: parse one message",
    openapi_extra=_PARSE_BODY,
)
async def parse(request: Request) -> Response:
    """Body: Rasa's `{"text": ...}`, read like `/v1/tag`'s (media type, JSON and size checked first)."""
    state = serving_state(request)
    data = parse_json(await request.body(), request.headers.get("content-type"))
    if isinstance(data, dict) and isinstance(data.get("text"), str) and len(data["text"]) > state.settings.max_chars:
        limit = state.settings.max_chars
        raise ApiError(422, "invalid_input", f"text has {len(data['text'])} characters; the limit is {limit}")
    try:
        message = ParseRequest.model_validate(data)
    except ValidationError as error:
        where = ".".join(str(part) for part in error.errors()[0]["loc"]) or "body"
        raise ApiError(422, "validation_error", f"{where}: {error.errors()[0]['msg']}") from None
    item = prepare(TagRequest(text=message.text), state.settings)
    (scores,) = await infer(state, [item])
    return json_response(to_rasa(decode(scores)))
