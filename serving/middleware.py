"""Pure ASGI middleware: the request-body limit (413 before anything parses the body) and request
metrics (count and latency per route template, method and status). Each does one job; the app stacks
them with metrics outermost, so refused requests are counted too."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving import metrics
from serving.errors import error_response


class MetricsMiddleware:
    """Records every HTTP request's count and latency under its route template (or `unmatched`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

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
            await self.app(scope, receive, send_recording)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            metrics.observe_request(label, scope["method"], status, time.perf_counter() - started)


class HeaderLimitMiddleware:
    """Refuses requests whose head (request line and headers) is over `max_header_bytes` with 431. The
    HTTP server reads a head before this sees it; `python -m serving` bounds that read with the same
    limit (uvicorn's h11 parser; httptools stops at 80 KiB)."""

    def __init__(self, app: ASGIApp, max_header_bytes: int) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
            size += sum(len(name) + len(value) + 4 for name, value in scope["headers"])  # ": " and CRLF
            if size > self.max_header_bytes:
                limit = f"the limit is {self.max_header_bytes} (SLOTFILL_MAX_HEADER_BYTES)"
                message = f"request headers are {size} bytes; {limit}"
                response = error_response(431, "headers_too_large", message)
                await send({"type": "http.response.start", "status": 431, "headers": response.raw_headers})
                await send({"type": "http.response.body", "body": response.body})
                return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Refuses request bodies over `max_body_bytes` with 413: by their declared length before reading
    them, and chunked bodies as soon as what has arrived passes the limit."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = int(value) if value.isdigit() else -1
                break
        if declared is not None and declared > self.max_body_bytes:
            await self._too_large(declared, send)
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
                    await self._too_large(size, send)
                    return
            body = b"".join(chunks)

            async def replay() -> Message:
                nonlocal body
                message = {"type": "http.request", "body": body, "more_body": False}
                body = b""
                return message

            await self.app(scope, replay, send)
        else:
            await self.app(scope, receive, send)

    async def _too_large(self, size: int, send: Send) -> None:
        what = f"{size} bytes" if size >= 0 else "of unreadable length"
        response = error_response(
            413, "too_large", f"request body is {what}; the limit is {self.max_body_bytes} (SLOTFILL_MAX_BODY_BYTES)"
        )
        await send({"type": "http.response.start", "status": 413, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})
