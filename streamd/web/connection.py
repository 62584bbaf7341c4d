"""One HTTP connection, in whichever process answers it (the primary or an edge): aiohttp's
request handler with deadlines, so slow or idle clients cannot hold memory, sockets or
handlers, and with answers for clients that half-close after their body.

- headers: a request's headers must be complete `http.header_timeout_s` after its first
  byte (or after connecting), however slowly they trickle in (slowloris);
- keep-alive: aiohttp's own `keepalive_timeout` closes connections idle between requests;
- writing: nothing is buffered past what the kernel takes (high-water mark 0), and a client
  that takes none of it for `http.write_timeout_s` is cut, which frees the handler.

A cut connection is closed, and aborted if it has not gone `LINGER_S` later (it cannot flush
to a client that does not read). aiohttp has no public hook for the protocol class its
servers make, so `install()` rebinds the name `aiohttp.web_server.Server.__call__` looks up;
that covers `web.run_app`, runners, `web.Server` and the test server alike. What this module
reads of aiohttp's handler (`_waiter`, `_messages`, `_request_count`, `_current_request`)
is private: kept here, in one place.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web_fileresponse, web_protocol, web_server

from streamd.config import HttpConfig

log = logging.getLogger("streamd.web.connection")
LINGER_S = 2.0  # after a close: for a client to read an error answer, or for the flush
WRITE_CHECKS = 4  # per write deadline: a reader is cut 1 to 1.25 deadlines after its last byte


@dataclass(frozen=True)
class Deadlines:
    """What one connection may take (seconds; 0: no limit)."""

    header_s: float = 10.0
    write_s: float = 30.0


def handler_args(http: HttpConfig) -> dict[str, Any]:
    """What aiohttp's server hands each connection (`web.Application(handler_args=...)`,
    `web.Server(**...)`): its keep-alive and lingering times, and our deadlines."""
    return {
        "keepalive_timeout": http.keepalive_timeout_s,
        "lingering_time": LINGER_S,
        "deadlines": Deadlines(http.header_timeout_s, http.write_timeout_s),
    }


class Connection(web_protocol.RequestHandler):
    """aiohttp's request handler, with deadlines on headers and on writing."""

    def __init__(
        self, manager: web_server.Server, *, deadlines: Deadlines | None = None, **kwargs: Any
    ) -> None:
        super().__init__(manager, **kwargs)
        self.deadlines = deadlines or Deadlines()
        # aiohttp forgets its transport on close; ours is kept until the connection is lost,
        # to abort it if it will not go.
        self._socket: asyncio.Transport | None = None
        self._header_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        self._abort_timer: asyncio.TimerHandle | None = None
        self._unsent_bytes = 0
        self._stalled_checks = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._socket = cast(asyncio.Transport, transport)
        # Pause the writer as soon as the kernel takes less than it is given, so a handler
        # never queues MBs here for a client that reads slowly (or not at all).
        self._socket.set_write_buffer_limits(high=0)
        self._start_header_deadline()

    def connection_lost(self, exc: BaseException | None) -> None:
        for timer in (self._header_timer, self._write_timer, self._abort_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._write_timer = self._abort_timer = None
        self._socket = None
        super().connection_lost(exc)

    # -- headers -------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        parsed = self._request_count
        super().data_received(data)
        if self._request_count != parsed:  # a request's headers are complete
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
        elif data and self._awaiting_request():  # the first bytes of the next request
            self._start_header_deadline()

    def _awaiting_request(self) -> bool:
        """Between requests: no request is being handled, read or answered."""
        return self._waiter is not None and not self._waiter.done()

    def _start_header_deadline(self) -> None:
        if self.deadlines.header_s > 0 and self._header_timer is None:
            self._header_timer = self._loop.call_later(self.deadlines.header_s, self._headers_due)

    def _headers_due(self) -> None:
        self._header_timer = None
        if self._awaiting_request():
            self._cut(f"request headers not complete within {self.deadlines.header_s:g} s")

    # -- writing -------------------------------------------------------------------------
    def pause_writing(self) -> None:
        super().pause_writing()
        if self.deadlines.write_s > 0 and self._socket is not None:
            self._unsent_bytes = self._socket.get_write_buffer_size()
            self._stalled_checks = 0
            self._schedule_write_check()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _schedule_write_check(self) -> None:
        interval = self.deadlines.write_s / WRITE_CHECKS
        self._write_timer = self._loop.call_later(interval, self._check_writing)

    def _check_writing(self) -> None:
        """While the kernel takes nothing more, is the client reading anything at all?"""
        self._write_timer = None
        if not self.writing_paused or self._socket is None or self._socket.is_closing():
            return
        unsent = self._socket.get_write_buffer_size()
        self._stalled_checks = 0 if unsent < self._unsent_bytes else self._stalled_checks + 1
        self._unsent_bytes = unsent
        if self._stalled_checks >= WRITE_CHECKS:
            self._cut(f"the client read nothing for {self.deadlines.write_s:g} s")
        else:
            self._schedule_write_check()

    # -- either ----------------------------------------------------------------------------
    def _cut(self, why: str) -> None:
        log.debug("cut a connection from %s: %s", self.peername, why)
        self.force_close()
        if self._socket is not None and self._abort_timer is None:
            self._abort_timer = self._loop.call_later(LINGER_S, self._socket.abort)

    def eof_received(self) -> bool | None:  # type: ignore[override]
        """Answer clients that half-close after their body, as `ffmpeg -method PUT` does.

        aiohttp closes the whole connection on a client's FIN (aio-libs/aiohttp#3659), so
        ffmpeg's segment uploads would never get an answer. While a request is pending, keep
        the write side open; an idle client leaving still closes at once. A body that can no
        longer be complete (the FIN came before its end) fails its reader now, instead of
        holding an upload slot until the idle timeout.
        """
        idle = self._awaiting_request() and not self._messages
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
    # asyncio's native sendfile writes around the protocol (the writer is never paused), so
    # a client that stops reading would hold a FileResponse's handler and file for good.
    # uvloop has no sendfile: this is what streamd does there anyway.
    web_fileresponse.NOSENDFILE = True  # type: ignore[misc]
