"""One HTTP connection, in whichever process answers it (the primary or an edge): what
aiohttp's request handler does, plus answering clients that half-close after their body.

aiohttp has no public hook for the protocol class its servers make, so `install()` rebinds
the name `aiohttp.web_server.Server.__call__` looks up; it covers `web.run_app`, runners,
`web.Server` and the test server alike. What this module reads of aiohttp's handler
(`_waiter`, `_messages`, `_current_request`) is private: kept here, in one place.
"""

from __future__ import annotations

from aiohttp import web_protocol, web_server


class Connection(web_protocol.RequestHandler):
    """aiohttp's request handler, answering clients that half-close."""

    def eof_received(self) -> bool | None:  # type: ignore[override]
        """Answer clients that half-close after their body, as `ffmpeg -method PUT` does.

        aiohttp closes the whole connection on a client's FIN (aio-libs/aiohttp#3659), so
        ffmpeg's segment uploads would never get an answer. While a request is pending, keep
        the write side open; an idle client leaving still closes at once. A body that can no
        longer be complete (the FIN came before its end) fails its reader now, instead of
        holding an upload slot until the idle timeout.
        """
        idle = self._waiter is not None and not self._waiter.done() and not self._messages
        if idle:
            return None
        request = self._current_request
        if request is not None and request.body_exists and not request.content.is_eof():
            request.content.set_exception(
                ConnectionResetError("the client closed the connection before its body's end")
            )
        return True


def install() -> None:
    """Have every aiohttp server in this process make `Connection`s (idempotent)."""
    web_server.RequestHandler = Connection  # type: ignore[attr-defined]
