"""`create_app(settings)`: the FastAPI app, its lifespan (load the checkpoint once, start the inference
thread, reload on SIGHUP), one JSON error shape, request metrics and the header and body limits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException

from models.checkpoint import CheckpointError
from serving import playground, rasa
from serving.errors import ApiError, error_response
from serving.logs import configure_logging
from serving.middleware import BodyLimitMiddleware, HeaderLimitMiddleware, MetricsMiddleware
from serving.routes import router
from serving.schemas import BatchRequest, TagRequest
from serving.settings import Settings
from serving.state import ServingState

log = logging.getLogger("serving")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    415: "unsupported_media_type",
}


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
    settings.check()
    if not logging.getLogger("serving").handlers and not logging.getLogger().handlers:
        configure_logging(settings.log_level, settings.log_format)  # neither `python -m serving` nor a host did
    state = ServingState(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.predictor.start()
        started = time.perf_counter()
        try:
            served = await anyio.to_thread.run_sync(state.predictor.load, state.checkpoint_path())
        except CheckpointError as error:
            # Stay up but not ready: /readyz answers 503, nothing is tagged, and a reload (SIGHUP or
            # the admin endpoint) of a fixed checkpoint makes the service ready.
            state.load_error = str(error)
            log.error("started, not ready: %s", error)
        else:
            log.info(
                "started: serving %s version %s from %s in %.1f s (pid %d, model process %s)",
                served.name,
                served.version,
                state.checkpoint_path().name,
                time.perf_counter() - started,
                os.getpid(),
                "on" if settings.model_process else "off",
            )
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
        docs_url="/docs" if settings.docs else None,
        redoc_url="/redoc" if settings.docs else None,
    )
    app.state.serving = state
    app.include_router(router)
    app.include_router(rasa.router)
    app.include_router(playground.router)
    _install_openapi(app)
    _install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.body_limit)
    app.add_middleware(HeaderLimitMiddleware, max_header_bytes=settings.max_header_bytes)
    app.add_middleware(MetricsMiddleware)  # added last: outermost, so it also counts the 413s and 431s
    return app


def _install_openapi(app: FastAPI) -> None:
    """The tagging routes read their bodies themselves (serving/intake.py); their request schemas are
    added to the generated document here, so /openapi.json still describes them."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            _, definitions = models_json_schema(
                [(TagRequest, "validation"), (BatchRequest, "validation")], ref_template="#/components/schemas/{model}"
            )
            document.setdefault("components", {}).setdefault("schemas", {}).update(definitions["$defs"])
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory serving.app:app_from_env` (settings from the environment)."""
    return create_app(Settings())
