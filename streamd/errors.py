"""Named failures of streamd, one table mapping each error code to its class and HTTP
status, and the one place they become HTTP responses.

Like PyAV's errors, each class also subclasses the builtin it resembles, so callers can
catch either `StreamdError` or, say, `ValueError`. Errors cross process boundaries as data
(`as_data`/`from_data`: code, message, detail), never pickled: the next boundary is a
network queue.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

log = logging.getLogger("streamd.http")


class StreamdError(Exception):
    """Root of every error streamd raises on purpose."""

    http_status = 500
    code = "internal_error"

    def __init__(
        self, message: str, detail: str | None = None, *, retry_after_s: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.retry_after_s = retry_after_s  # sent as Retry-After (RFC 9110 10.2.3)

    def as_data(self) -> dict[str, Any]:
        """The error as JSON-able data (what an HTTP error body carries, too)."""
        return {"error": self.code, "message": self.message, "detail": self.detail}


class BadRequest(StreamdError, ValueError):
    pass


class InvalidVideoId(BadRequest):
    pass


class NotFound(StreamdError, LookupError):
    pass


class Unauthorized(StreamdError, PermissionError):
    """No credentials, or wrong ones: a key or token is needed."""


class Forbidden(StreamdError, PermissionError):
    pass


class Expired(StreamdError, PermissionError):
    pass


class Conflict(StreamdError, ValueError):
    pass


class SegmentConflict(Conflict):
    pass


class StreamEnded(Conflict):
    pass


class RequestTimeout(StreamdError, TimeoutError):
    pass


class UploadTooLarge(StreamdError, ValueError):
    pass


class UnsupportedMedia(StreamdError, ValueError):
    pass


class StorageError(StreamdError, OSError):
    pass


class Unavailable(StreamdError, ConnectionError):
    pass


class TranscodeError(StreamdError, RuntimeError):
    pass


class WorkerCrashed(TranscodeError):
    """The worker process died (killed, out of memory, an FFmpeg crash): not the media's
    fault alone, so a live session goes on in a new worker."""


class ConfigError(StreamdError, ValueError):
    pass


# code -> (class, HTTP status): the one table.
ERRORS: dict[str, tuple[type[StreamdError], int]] = {
    "internal_error": (StreamdError, 500),
    "bad_request": (BadRequest, 400),
    "invalid_video_id": (InvalidVideoId, 400),
    "not_found": (NotFound, 404),
    "unauthorized": (Unauthorized, 401),
    "forbidden": (Forbidden, 403),
    "expired": (Expired, 410),
    "conflict": (Conflict, 409),
    "segment_conflict": (SegmentConflict, 409),
    "stream_ended": (StreamEnded, 409),
    "request_timeout": (RequestTimeout, 408),
    "upload_too_large": (UploadTooLarge, 413),
    "unsupported_media": (UnsupportedMedia, 422),
    "storage_error": (StorageError, 507),
    "unavailable": (Unavailable, 503),
    "transcode_failed": (TranscodeError, 500),
    "worker_crashed": (WorkerCrashed, 500),
    "config_error": (ConfigError, 500),
}
for _code, (_cls, _status) in ERRORS.items():
    _cls.code, _cls.http_status = _code, _status


def from_data(data: dict[str, Any]) -> StreamdError:
    """The error `as_data` described (an unknown code becomes a plain StreamdError)."""
    cls = ERRORS.get(str(data.get("error")), (StreamdError, 500))[0]
    return cls(str(data.get("message")), data.get("detail"))


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
        response = json_error(exc.http_status, exc.code, exc.message, exc.detail)
        if isinstance(exc, Unauthorized):  # RFC 6750 3
            response.headers["WWW-Authenticate"] = 'Bearer realm="streamd"'
        if exc.retry_after_s is not None:
            response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        log.warning("%s %s -> %d", request.method, request.path, exc.status)
        return json_error(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason, exc.text)
    log.error("%s %s -> 500", request.method, request.path, exc_info=exc)
    return json_error(500, "internal_error", "internal server error", repr(exc))
