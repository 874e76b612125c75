"""The one error shape of the service: `{"error": {"code", "message"[, "details"]}}`, raised as
`ApiError` anywhere below the app and answered by its handlers, and JSON responses (orjson)."""

from __future__ import annotations

import json
from typing import Any

import orjson
from fastapi.responses import Response

from serving.schemas import ErrorResponse

ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorResponse, "description": "request body over SLOTFILL_MAX_BODY_BYTES"},
    422: {"model": ErrorResponse, "description": "invalid input; the message names the field or limit"},
    400: {"model": ErrorResponse, "description": "the body is empty or not valid JSON"},
    415: {"model": ErrorResponse, "description": "the body is not application/json"},
    503: {"model": ErrorResponse, "description": "no model loaded yet, or the model process stopped (Retry-After)"},
}


class ApiError(Exception):
    """An error answered as `{"error": {"code", "message"}}` with `status`."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


JSON = "application/json"


def json_bytes(payload: Any) -> bytes:
    try:
        return orjson.dumps(payload)  # several times faster than json.dumps on tag results
    except orjson.JSONEncodeError:
        # text holding lone surrogates is not UTF-8; ASCII-escaped JSON still carries it
        return json.dumps(payload, separators=(",", ":")).encode()


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json_bytes(payload), status_code=status, media_type=JSON, headers=headers)


def error_response(status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None):
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return json_response({"error": error}, status, headers)
