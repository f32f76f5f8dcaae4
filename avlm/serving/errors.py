"""``APIError``: a request the server refuses, with its HTTP status and OpenAI's error body.

OpenAI's format: ``{"error": {"message": ..., "type": ..., "param": ..., "code": ...}}``. The message says what was
wrong and how to fix it; ``param`` names the request field (``messages[0].content[1].video_url.url``) when one is to
blame.
"""

from __future__ import annotations

from typing import Any

ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
               405: "invalid_request_error", 413: "invalid_request_error", 503: "server_error", 500: "server_error"}


class APIError(Exception):
    """A refused request: ``status`` (4xx, or 503 when overloaded), ``message``, ``param`` and ``code``."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, self.param, self.code)


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error object for an HTTP status."""
    kind = ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    """A 400: the request itself is wrong (fields, content parts, media)."""
    return APIError(400, message, param, code)
