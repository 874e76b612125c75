"""`create_app(settings)`: the FastAPI app, its lifespan (load the checkpoint once, start the inference
thread, reload on SIGHUP), one JSON error shape, request metrics and the body-size limit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from models.checkpoint import CheckpointError
from serving.errors import ApiError, error_response
from serving.middleware import BodyLimitMiddleware, MetricsMiddleware
from serving.routes import router
from serving.settings import Settings
from serving.state import ServingState

log = logging.getLogger("serving")

_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}


def _validation_message(errors: list[dict[str, Any]]) -> str:
    if not errors:
        return "invalid request"
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}"


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> Any:
        return error_response(error.status, error.code, error.message, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> Any:
        details = [
            {"loc": [str(part) for part in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type"))}
            for e in error.errors()
        ]
        return error_response(422, "validation_error", _validation_message(details), details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Any:
        status = error.status_code
        message = str(error.detail)
        if status == 400:  # FastAPI's answer to a body that is not UTF-8 / not parseable
            status, message = 422, f"the body is not valid JSON: {message}"
        code = "validation_error" if status == 422 else _CODES.get(status, "http_error")
        return error_response(status, code, message, headers=getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> Any:
        log.exception("unexpected error on %s", request.url.path)
        return error_response(500, "internal_error", f"internal error ({type(error).__name__})")


def _install_sighup(state: ServingState) -> bool:
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, state.reload_in_background)
    except (ValueError, RuntimeError, NotImplementedError, AttributeError):
        return False  # not the main thread (tests) or no SIGHUP on this platform
    return True


def _remove_sighup() -> None:
    with contextlib.suppress(ValueError, RuntimeError, NotImplementedError, AttributeError):
        asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The service for `settings` (default: read from the environment)."""
    settings = settings or Settings()
    state = ServingState(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.predictor.start()
        try:
            await anyio.to_thread.run_sync(state.predictor.load, state.checkpoint_path())
        except CheckpointError as error:
            # Stay up but not ready: /readyz answers 503 with the reason, nothing is tagged, and a
            # reload (SIGHUP or the admin endpoint) of a fixed checkpoint makes the service ready.
            state.load_error = str(error)
            log.error("not ready: %s", error)
        sighup = _install_sighup(state)
        try:
            yield
        finally:
            if sighup:
                _remove_sighup()
            state.predictor.stop()

    app = FastAPI(
        title="slotfill",
        summary="Recurrent slot tagger for ATIS-style utterances: words, slots and intent",
        version="1",
        lifespan=lifespan,
    )
    app.state.serving = state
    app.include_router(router)
    _install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware)  # added last: outermost, so it also counts the 413s
    return app


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory serving.app:app_from_env` (settings from the environment)."""
    return create_app(Settings())
