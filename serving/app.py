"""`create_app(settings)`: the FastAPI app, its lifespan (load the checkpoint once, start the inference
thread, reload on SIGHUP), one JSON error shape, request metrics and the body-size limit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models.checkpoint import CheckpointError
from serving import metrics
from serving.predictor import Predictor, ServedModel
from serving.routes import ApiError, error_response, router
from serving.settings import Settings

log = logging.getLogger("serving")

_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}


class ServingState:
    """What the routes share: the settings and the predictor (which holds the served model)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Each torch op lets go of the GIL; taking it back waits for the event loop's thread to yield,
        # by default after up to 5 ms. A shorter interval keeps the inference thread's forward passes
        # from stretching under load (docs/benchmarks.md). Process-wide, set once per worker.
        sys.setswitchinterval(settings.gil_switch_interval_ms / 1000.0)
        self.load_error: str | None = None  # why the checkpoint could not be loaded at start-up
        self.predictor = Predictor(
            torch_threads=settings.torch_threads,
            max_batch_sentences=settings.max_batch_sentences,
            batch_wait_s=settings.batch_wait_ms / 1000.0,
            intent_top_k=settings.intent_top_k,
            model_name=settings.model_name,
            on_batch=metrics.observe_batch,
            model_process=settings.model_process,
            batches_in_flight=settings.model_batches_in_flight,
            backend=settings.backend,
        )

    def checkpoint_path(self) -> Path:
        if self.settings.checkpoint is None:
            raise CheckpointError("no checkpoint configured: set SLOTFILL_CHECKPOINT or pass --checkpoint")
        return self.settings.checkpoint

    def reload(self) -> ServedModel:
        """Re-read the checkpoint and swap it in; on failure the old model keeps serving."""
        try:
            served = self.predictor.load(self.checkpoint_path())
        except CheckpointError as error:
            metrics.RELOADS.labels("failed").inc()
            log.error("reload failed, the old model keeps serving: %s", error)
            raise
        self.load_error = None
        metrics.RELOADS.labels("ok").inc()
        return served

    def reload_in_background(self) -> None:
        def run() -> None:
            with contextlib.suppress(CheckpointError):  # already logged and counted
                self.reload()

        threading.Thread(target=run, name="slotfill-reload", daemon=True).start()


class ServingMiddleware:
    """Pure ASGI: refuses bodies over the byte limit before anything parses them (413), and records
    request counts and latency per route template, method and status."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            declared = None
            for name, value in scope["headers"]:
                if name == b"content-length":
                    declared = int(value) if value.isdigit() else -1
                    break
            if declared is not None and declared > self.max_body_bytes:
                await self._too_large(declared, send_recording)
            elif declared is None and scope["method"] in ("POST", "PUT", "PATCH"):
                # No length given (chunked): read at most the limit before anything parses it.
                chunks: list[bytes] = []
                size = 0
                more = True
                while more:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    chunks.append(message.get("body", b""))
                    size += len(chunks[-1])
                    more = message.get("more_body", False)
                    if size > self.max_body_bytes:
                        await self._too_large(size, send_recording)
                        return
                body = b"".join(chunks)

                async def replay() -> Message:
                    nonlocal body
                    message = {"type": "http.request", "body": body, "more_body": False}
                    body = b""
                    return message

                await self.app(scope, replay, send_recording)
            else:
                await self.app(scope, receive, send_recording)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            metrics.observe_request(label, scope["method"], status, time.perf_counter() - started)

    async def _too_large(self, size: int, send: Send) -> None:
        what = f"{size} bytes" if size >= 0 else "of unreadable length"
        response = error_response(
            413, "too_large", f"request body is {what}; the limit is {self.max_body_bytes} (SLOTFILL_MAX_BODY_BYTES)"
        )
        await send({"type": "http.response.start", "status": 413, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})


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
    app.add_middleware(ServingMiddleware, max_body_bytes=settings.max_body_bytes)
    return app


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory serving.app:app_from_env` (settings from the environment)."""
    return create_app(Settings())
