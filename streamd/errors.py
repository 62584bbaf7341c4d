"""Named failures of streamd, each mapped to one HTTP status in `error_response`.

Like PyAV's errors, each class also subclasses the builtin it resembles, so callers can
catch either `StreamdError` or, say, `ValueError`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

log = logging.getLogger("streamd.http")


class StreamdError(Exception):
    """Root of every error streamd raises on purpose."""

    http_status = 500
    code = "internal_error"

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def __reduce__(self) -> tuple[type, tuple[str, str | None]]:
        # Keep the detail when the error crosses from a worker process.
        return (self.__class__, (self.message, self.detail))


class BadRequest(StreamdError, ValueError):
    http_status = 400
    code = "bad_request"


class InvalidVideoId(BadRequest):
    code = "invalid_video_id"


class NotFound(StreamdError, LookupError):
    http_status = 404
    code = "not_found"


class Conflict(StreamdError, ValueError):
    http_status = 409
    code = "conflict"


class SegmentConflict(Conflict):
    code = "segment_conflict"


class StreamEnded(Conflict):
    code = "stream_ended"


class RequestTimeout(StreamdError, TimeoutError):
    http_status = 408
    code = "request_timeout"


class UploadTooLarge(StreamdError, ValueError):
    http_status = 413
    code = "upload_too_large"


class UnsupportedMedia(StreamdError, ValueError):
    http_status = 422
    code = "unsupported_media"


class StorageError(StreamdError, OSError):
    http_status = 507
    code = "storage_error"


class Unavailable(StreamdError, ConnectionError):
    http_status = 503
    code = "unavailable"


class TranscodeError(StreamdError, RuntimeError):
    code = "transcode_failed"


class ConfigError(StreamdError, ValueError):
    code = "config_error"


def error_body(code: str, message: str, detail: str | None = None) -> str:
    """The JSON body every error response carries."""
    return json.dumps({"error": code, "message": message, "detail": detail})


def json_error(status: int, code: str, message: str, detail: str | None = None) -> web.Response:
    return web.Response(
        status=status,
        text=error_body(code, message, detail),
        content_type="application/json",
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(request: web.BaseRequest, exc: Exception) -> web.Response:
    """The JSON answer to a failed request, logged at the level it deserves. Redirects and
    other non-error HTTP exceptions are raised again."""
    if isinstance(exc, StreamdError):
        if exc.http_status >= 500:
            level = logging.ERROR
        else:  # a viewer's 404 is routine; a refused upload is worth a warning
            level = logging.INFO if request.method in ("GET", "HEAD") else logging.WARNING
        log.log(
            level,
            "%s %s -> %d %s: %s (%s)",
            request.method,
            request.path,
            exc.http_status,
            exc.code,
            exc.message,
            exc.detail or "",
        )
        return json_error(exc.http_status, exc.code, exc.message, exc.detail)
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        log.warning("%s %s -> %d", request.method, request.path, exc.status)
        return json_error(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason, exc.text)
    log.error("%s %s -> 500", request.method, request.path, exc_info=exc)
    return json_error(500, "internal_error", "internal server error", repr(exc))
