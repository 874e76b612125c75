"""HTTP routes. Torch never runs on the event loop: tagging routes hand their sentences to the
predictor's inference thread and await the result; the reload route is a plain `def` (threadpool)."""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Any

from fastapi import APIRouter, Request, Security
from fastapi.responses import Response
from fastapi.security import APIKeyHeader

from models.checkpoint import CheckpointError
from models.text import InputError, tokenize, words_from_tokens
from serving import metrics
from serving.errors import ERRORS, ApiError, json_response
from serving.inference import Prepared, Scores, decode
from serving.schemas import (
    BatchRequest,
    BatchResponse,
    ErrorResponse,
    ModelDescription,
    ReloadResponse,
    Status,
    TagRequest,
    TagResponse,
)
from serving.state import ServingState

log = logging.getLogger("serving.routes")


def _state(request: Request) -> ServingState:
    return request.app.state.serving


def prepare(request: TagRequest, state: ServingState, where: str = "") -> Prepared:
    """Validate one utterance against the limits and split it into words (422 on bad input)."""
    settings = state.settings
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
            text, words = words_from_tokens(tokens)
            if len(text) > settings.max_chars:
                raise InputError(
                    f"tokens join to {len(text)} characters; the limit is {settings.max_chars} (SLOTFILL_MAX_CHARS)"
                )
        if len(words) > settings.max_words:
            raise InputError(f"text has {len(words)} words; the limit is {settings.max_words} (SLOTFILL_MAX_WORDS)")
    except InputError as error:
        raise ApiError(422, "invalid_input", f"{where}{error}") from None
    return Prepared(text, words)


async def _infer(state: ServingState, items: list[Prepared]) -> list[dict[str, Any]]:
    predictor = state.predictor
    if not predictor.ready:
        raise ApiError(503, "not_ready", "the model is not loaded yet; retry when /readyz answers 200")
    loop = asyncio.get_running_loop()
    future: asyncio.Future[list[Scores]] = loop.create_future()
    predictor.submit(items, future, loop)
    return [decode(scores) for scores in await future]


router = APIRouter()


@router.get("/livez", response_model=Status, summary="Liveness: the process answers")
async def livez() -> Status:
    return Status(status="ok")


@router.get("/readyz", response_model=Status, responses={503: ERRORS[503]}, summary="Readiness: model loaded and warm")
async def readyz(request: Request) -> Any:
    state = _state(request)
    if not state.predictor.ready:
        reason = getattr(state, "load_error", None)
        message = f"the model is not loaded: {reason}" if reason else "the model is not loaded yet"
        raise ApiError(503, "not_ready", message)
    return Status(status="ready")


@router.post("/v1/tag", response_model=TagResponse, responses=ERRORS, summary="Tag one utterance")
async def tag(body: TagRequest, request: Request) -> Response:
    state = _state(request)
    results = await _infer(state, [prepare(body, state)])
    return json_response(results[0])


@router.post("/v1/tag/batch", response_model=BatchResponse, responses=ERRORS, summary="Tag many utterances at once")
async def tag_batch(body: BatchRequest, request: Request) -> Response:
    """All items run in one batched forward pass; results come back in input order."""
    state = _state(request)
    limit = state.settings.max_batch_items
    if not body.items:
        raise ApiError(422, "invalid_input", "items is empty; send at least one utterance")
    if len(body.items) > limit:
        raise ApiError(
            422, "invalid_input", f"batch has {len(body.items)} items; the limit is {limit} (SLOTFILL_MAX_BATCH_ITEMS)"
        )
    items = [prepare(item, state, where=f"items[{i}]: ") for i, item in enumerate(body.items)]
    results = await _infer(state, items)
    return json_response({"results": results, "model": results[0]["model"]})


@router.get("/v1/model", response_model=ModelDescription, responses={503: ERRORS[503]}, summary="The served model")
async def model(request: Request) -> Response:
    served = _state(request).predictor.current
    if served is None:
        raise ApiError(503, "not_ready", "the model is not loaded yet")
    return json_response(served.describe())


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def prometheus_metrics() -> Response:
    return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)


_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="SLOTFILL_ADMIN_API_KEY")


@router.post(
    "/v1/admin/reload",
    response_model=ReloadResponse,
    responses={
        401: {"model": ErrorResponse, "description": "missing or wrong X-API-Key"},
        403: {"model": ErrorResponse, "description": "reload disabled (no SLOTFILL_ADMIN_API_KEY set)"},
        409: {"model": ErrorResponse, "description": "checkpoint missing or broken; the old model keeps serving"},
    },
    summary="Re-read the checkpoint and swap it in",
)
def reload(request: Request, api_key: str | None = Security(_api_key)) -> Response:
    state = _state(request)
    expected = state.settings.admin_api_key
    if expected is None or not expected.get_secret_value():
        raise ApiError(403, "reload_disabled", "reload is disabled; set SLOTFILL_ADMIN_API_KEY to enable it")
    given = (api_key or "").encode("utf-8", "surrogatepass")
    if not hmac.compare_digest(given, expected.get_secret_value().encode("utf-8", "surrogatepass")):
        raise ApiError(401, "unauthorized", "a valid X-API-Key header is required", {"WWW-Authenticate": "APIKey"})
    previous = state.predictor.current
    try:
        served = state.reload()
    except CheckpointError as error:
        still = f"{previous.name} {previous.version}" if previous else "no model"
        raise ApiError(409, "reload_failed", f"reload failed; still serving {still}: {error}") from None
    before = previous.info if previous else {"name": "", "version": ""}
    return json_response(
        {"status": "reloaded", "previous": before, "model": served.info, "checkpoint_sha256": served.tagger.sha256}
    )
