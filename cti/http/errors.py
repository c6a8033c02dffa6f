"""One JSON error shape for every failure:

``{"error": {"status": 422, "code": "invalid_request", "message": "...", "details": [...]}}``

``code`` names the kind of failure by its status; ``reason``, where there is one, is a
stable name of the exact failure (``not_a_phone_number``, ``pbx_down``, ...) that a page
translates into its own language, with ``details`` for its numbers.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from cti.text import utf8

# Codes for statuses aiohttp raises itself (unknown route, wrong method, ...).
STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    500: "internal_error",
    502: "bad_gateway",
    503: "unavailable",
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        details: Any = None,
        headers: dict[str, str] | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.headers = headers
        self.status = status
        self.code = code or STATUS_CODES.get(status, "error")
        self.message = message
        self.details = details
        self.reason = reason


def error_body(
    status: int, code: str, message: str, details: Any = None, reason: str | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"status": status, "code": code, "message": message}
    if reason is not None:
        error["reason"] = reason
    if details is not None:
        error["details"] = details
    return {"error": error}


def error_response(error: ApiError) -> web.Response:
    body = error_body(error.status, error.code, error.message, error.details, error.reason)
    return web.Response(
        body=utf8(json.dumps(body, ensure_ascii=False, default=str)),
        status=error.status,
        headers=error.headers,
        content_type="application/json",
    )
