"""HTTP routes. Torch never runs on the event loop: tagging routes hand their sentences to the
predictor's inference thread and await the result; the reload route is a plain `def` (threadpool)."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
from fastapi import APIRouter, Request, Security
from fastapi.responses import Response
from fastapi.security import APIKeyHeader

from models.checkpoint import CheckpointError
from serving import metrics
from serving.errors import ERRORS, JSON, ApiError, json_bytes, json_response
from serving.inference import Prepared, Scores, decode
from serving.intake import read_batch, read_tag
from serving.model_process import ModelProcessError
from serving.schemas import (
    BatchResponse,
    ErrorResponse,
    ModelDescription,
    ReloadResponse,
    Status,
    TagResponse,
)
from serving.state import ServingState

log = logging.getLogger("serving.routes")
T = TypeVar("T")


def serving_state(request: Request) -> ServingState:
    """The app's serving state (model, predictor, settings), as the app builder stored it."""
    return request.app.state.serving


# Requests with more words than this decode their answers (and parse bodies over _OFFLOAD_BYTES) on
# a worker thread, so the event loop keeps answering small requests meanwhile.
_OFFLOAD_WORDS = 256
_OFFLOAD_BYTES = 32 * 1024
_RETRY_AFTER_S = "1"


async def infer(state: ServingState, items: list[Prepared]) -> list[Scores]:
    """Score prepared sentences through the predictor: 503 while no model is loaded, and 503 with
    Retry-After when the model process stops with them in flight."""
    predictor = state.predictor
    if not predictor.ready:
        raise ApiError(503, "not_ready", "the model is not loaded yet; retry when /readyz answers 200")
    loop = asyncio.get_running_loop()
    future: asyncio.Future[list[Scores]] = loop.create_future()
    predictor.submit(items, future, loop)
    try:
        return await future
    except ModelProcessError:
        # the model process died (or hung and was stopped) with this request in flight; the next
        # batch starts a new one, so the same request is worth sending again
        raise ApiError(
            503,
            "model_unavailable",
            "the model process stopped while tagging this request; retry",
            {"Retry-After": _RETRY_AFTER_S},
        ) from None


async def _off_loop(big: bool, function: Callable[..., T], *args: Any) -> T:
    """`function(*args)` on a worker thread when `big`, else right here."""
    if big:
        return await anyio.to_thread.run_sync(function, *args)
    return function(*args)


def _tag_body(scores: Scores) -> bytes:
    return json_bytes(decode(scores))


def _batch_body(results: list[Scores]) -> bytes:
    answers = [decode(scores) for scores in results]
    return json_bytes({"results": answers, "model": answers[0]["model"]})


def _json_body(schema: str) -> dict[str, Any]:
    """The OpenAPI request body of a route that reads its body itself (the app adds the schema)."""
    content = {JSON: {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
    return {"requestBody": {"required": True, "content": content}}


_TAG_BODY = _json_body("TagRequest")
_BATCH_BODY = _json_body("BatchRequest")


router = APIRouter()


@router.get("/livez", response_model=Status, summary="Liveness: the process answers")
async def livez() -> Status:
    return Status(status="ok")


@router.get("/readyz", response_model=Status, responses={503: ERRORS[503]}, summary="Readiness: model loaded and warm")
async def readyz(request: Request) -> Any:
    state = serving_state(request)
    if not state.predictor.ready:
        # the reason in short; what went wrong, with the file, is in the log
        reason = "the checkpoint could not be loaded" if state.load_error else "the model is loading"
        raise ApiError(503, "not_ready", f"not ready: {reason}")
    return Status(status="ready")


@router.post(
    "/v1/tag", response_model=TagResponse, responses=ERRORS, summary="Tag one utterance", openapi_extra=_TAG_BODY
)
async def tag(request: Request) -> Response:
    """Body: a `TagRequest` (`{"text": ...}` or `{"tokens": [...]}`)."""
    state = serving_state(request)
    body = await request.body()
    item = read_tag(body, request.headers.get("content-type"), state.settings)
    (scores,) = await infer(state, [item])
    return Response(await _off_loop(len(item.words) > _OFFLOAD_WORDS, _tag_body, scores), media_type=JSON)


@router.post(
    "/v1/tag/batch",
    response_model=BatchResponse,
    responses=ERRORS,
    summary="Tag many utterances at once",
    openapi_extra=_BATCH_BODY,
)
async def tag_batch(request: Request) -> Response:
    """Body: `{"items": [TagRequest, ...]}`. Results come back in input order. A batch of more than
    SLOTFILL_CHUNK_WORDS padded words runs as several forward passes, between which smaller requests
    are served."""
    state = serving_state(request)
    body = await request.body()
    content_type = request.headers.get("content-type")
    items = await _off_loop(len(body) > _OFFLOAD_BYTES, read_batch, body, content_type, state.settings)
    del body
    results = await infer(state, items)
    big = sum(len(item.words) for item in items) > _OFFLOAD_WORDS
    return Response(await _off_loop(big, _batch_body, results), media_type=JSON)


@router.get("/v1/model", response_model=ModelDescription, responses={503: ERRORS[503]}, summary="The served model")
async def model(request: Request) -> Response:
    served = serving_state(request).predictor.current
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
    state = serving_state(request)
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
