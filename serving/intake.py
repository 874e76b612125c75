"""Request bodies -> sentences ready for the model, refusing oversized work before it costs anything.

The tagging routes read their body themselves instead of letting FastAPI build pydantic objects from
it: the body is parsed once (orjson), the item count, text lengths and token counts are checked on
the plain parsed values, and only then are the (at most `max_batch_items`) items validated by the
pydantic models and split into words, stopping as soon as the batch passes its word budget.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from models.text import InputError, tokenize, words_from_tokens
from serving.errors import ApiError
from serving.inference import Prepared
from serving.schemas import TagRequest
from serving.settings import Settings

_JSON_TYPES = ("application/json",)


def parse_json(body: bytes, content_type: str | None) -> Any:
    """The body as JSON: 415 for another media type, 400 naming the problem when it does not parse. A
    missing Content-Type is read as JSON."""
    if content_type is not None:
        media = content_type.split(";", 1)[0].strip().lower()
        if media not in _JSON_TYPES and not (media.startswith("application/") and media.endswith("+json")):
            raise ApiError(
                415,
                "unsupported_media_type",
                f"Content-Type {media or '(empty)'} is not accepted; send application/json",
            )
    if not body.strip():
        raise ApiError(400, "invalid_json", "the body is empty; send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        first = error
    try:  # the standard parser also takes escaped lone surrogates ("\ud800"), which text may hold
        return json.loads(body)
    except (ValueError, RecursionError):
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {first}") from None


def _validation_error(error: ValidationError, where: tuple[str | int, ...]) -> RequestValidationError:
    """pydantic's errors with `body` and `where` in front of each location, as FastAPI reports them."""
    details = []
    for item in error.errors(include_url=False, include_context=False, include_input=False):
        details.append({**item, "loc": ("body", *where, *item["loc"])})
    return RequestValidationError(details)


def _precheck(item: Any, settings: Settings, where: str) -> None:
    """Limits that can be seen on the parsed JSON before pydantic builds anything from it."""
    if not isinstance(item, dict):
        return  # pydantic names the problem
    text, tokens = item.get("text"), item.get("tokens")
    if isinstance(text, str) and len(text) > settings.max_chars:
        raise ApiError(
            422,
            "invalid_input",
            f"{where}text has {len(text)} characters; the limit is {settings.max_chars} (SLOTFILL_MAX_CHARS)",
        )
    if isinstance(tokens, list) and len(tokens) > settings.max_words:
        raise ApiError(
            422,
            "invalid_input",
            f"{where}{len(tokens)} tokens; the limit is {settings.max_words} words (SLOTFILL_MAX_WORDS)",
        )


def prepare(request: TagRequest, settings: Settings, where: str = "") -> Prepared:
    """Validate one utterance against the limits and split it into words (422 on bad input)."""
    try:
        if request.text is not None:
            text = request.text
            if len(text) > settings.max_chars:
                raise InputError(
                    f"text has {len(text)} characters; the limit is {settings.max_chars} (SLOTFILL_MAX_CHARS)"
                )
            if not text.strip():
                raise InputError("text is empty or only whitespace")
            words = tokenize(text)
            if not words:
                raise InputError("text holds no words (only punctuation or control characters)")
        else:
            tokens = request.tokens or []
            if not tokens:
                raise InputError("tokens is empty")
            if len(tokens) > settings.max_words:
                raise InputError(f"{len(tokens)} tokens; the limit is {settings.max_words} words (SLOTFILL_MAX_WORDS)")
            joined = sum(map(len, tokens)) + len(tokens) - 1
            if joined > settings.max_chars:
                raise InputError(
                    f"tokens join to {joined} characters; the limit is {settings.max_chars} (SLOTFILL_MAX_CHARS)"
                )
            text, words = words_from_tokens(tokens)
        if len(words) > settings.max_words:
            raise InputError(f"text has {len(words)} words; the limit is {settings.max_words} (SLOTFILL_MAX_WORDS)")
    except InputError as error:
        raise ApiError(422, "invalid_input", f"{where}{error}") from None
    return Prepared(text, words)


def read_tag(body: bytes, content_type: str | None, settings: Settings) -> Prepared:
    """The body of `POST /v1/tag` -> its one sentence."""
    data = parse_json(body, content_type)
    _precheck(data, settings, "")
    try:
        request = TagRequest.model_validate(data)
    except ValidationError as error:
        raise _validation_error(error, ()) from None
    return prepare(request, settings)


def read_batch(body: bytes, content_type: str | None, settings: Settings) -> list[Prepared]:
    """The body of `POST /v1/tag/batch` -> its sentences, within the item and word budgets."""
    data = parse_json(body, content_type)
    if not isinstance(data, dict):
        raise ApiError(422, "validation_error", 'body: send a JSON object {"items": [...]}')
    unknown = sorted(str(key) for key in data if key != "items")
    if unknown:
        raise ApiError(422, "validation_error", f"{unknown[0]}: Extra inputs are not permitted")
    items = data.get("items")
    if not isinstance(items, list):
        raise ApiError(422, "validation_error", "items: Field required, a list of tag requests")
    limit = settings.max_batch_items
    if not items:
        raise ApiError(422, "invalid_input", "items is empty; send at least one utterance")
    if len(items) > limit:
        raise ApiError(
            422, "invalid_input", f"batch has {len(items)} items; the limit is {limit} (SLOTFILL_MAX_BATCH_ITEMS)"
        )
    for index, item in enumerate(items):
        _precheck(item, settings, f"items[{index}]: ")
    prepared = []
    words = 0
    for index, item in enumerate(items):
        try:
            request = TagRequest.model_validate(item)
        except ValidationError as error:
            raise _validation_error(error, ("items", index)) from None
        prepared.append(prepare(request, settings, where=f"items[{index}]: "))
        words += len(prepared[-1].words)
        if words > settings.max_batch_words:
            raise ApiError(
                422,
                "invalid_input",
                f"the batch has more than {settings.max_batch_words} words (over the limit at items[{index}]; "
                "SLOTFILL_MAX_BATCH_WORDS); split it into several requests",
            )
    return prepared
