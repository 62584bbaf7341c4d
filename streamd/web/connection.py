"""One HTTP connection, in whichever process answers it (the primary or an edge): aiohttp's
request handler with deadlines, so slow or idle clients cannot hold memory, sockets or
handlers, and with answers for clients that half-close after their body.

- headers: a request's headers must be complete `http.header_timeout_s` after its first
  byte (or after connecting), however slowly they trickle in (slowloris);
- keep-alive: aiohttp's own `keepalive_timeout` closes connections idle between requests;
- writing: nothing is buffered past what the kernel takes (high-water mark 0), and a client
  that takes none of it for `http.write_timeout_s` is aborted (closed or not: a close would
  wait for a flush that never comes), which frees the handler and what it holds;
- a refused body's rest is read (and dropped) for `LINGER_S` at most, then the connection
  closes (aiohttp's `lingering_time`).

aiohttp has no public hook for the protocol class its servers make, so `install()` rebinds
the name `aiohttp.web_server.Server.__call__` looks up; that covers `web.run_app`, runners,
`web.Server` and the test server alike. What this module reads of aiohttp's handler
(`_waiter`, `_messages`, `_request_count`, `_current_request`) is private: kept here.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import struct
import termios
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web_fileresponse, web_protocol, web_server

from streamd.config import HttpConfig

log = logging.getLogger("streamd.web.connection")
LINGER_S = 2.0  # reading past a refused body, so that its client sees the answer
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
        self._fd: int | None = None
        self._header_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        self._unsent_bytes = 0
        self._stalled_checks = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._socket = cast(asyncio.Transport, transport)
        sock = self._socket.get_extra_info("socket")
        self._fd = sock.fileno() if sock is not None else None
        # Pause the writer as soon as the kernel takes less than it is given, so a handler
        # never queues MBs here for a client that reads slowly (or not at all).
        self._socket.set_write_buffer_limits(high=0)
        self._start_header_deadline()

    def connection_lost(self, exc: BaseException | None) -> None:
        for timer in (self._header_timer, self._write_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._write_timer = None
        self._socket = self._fd = None
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
            log.debug("%s: no whole headers in %g s", self.peername, self.deadlines.header_s)
            self.force_close()

    # -- writing -------------------------------------------------------------------------
    def pause_writing(self) -> None:
        super().pause_writing()
        if self.deadlines.write_s > 0 and self._socket is not None:
            self._unsent_bytes = self._unsent()
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
        """While the kernel takes nothing more, is the client reading anything at all?
        (Also once the connection is closing: a close waits for its flush.)"""
        self._write_timer = None
        sock = self._socket
        if not self.writing_paused or sock is None:
            return
        unsent = self._unsent()
        self._stalled_checks = 0 if unsent < self._unsent_bytes else self._stalled_checks + 1
        self._unsent_bytes = unsent
        if self._stalled_checks < WRITE_CHECKS:
            self._schedule_write_check()
            return
        log.debug("%s: read nothing for %g s: aborted", self.peername, self.deadlines.write_s)
        self.force_close()
        sock.abort()

    def _unsent(self) -> int:
        """What the client has yet to take: our buffer and the kernel's bytes not yet
        acknowledged (SIOCOUTQ), so a slow reader's progress shows even while the kernel's
        buffer is too full to take more of ours."""
        assert self._socket is not None
        unsent = self._socket.get_write_buffer_size()
        if self._fd is not None:
            try:
                queued = fcntl.ioctl(self._fd, termios.TIOCOUTQ, bytes(4))
            except OSError:  # not a socket that says: our buffer alone, then
                self._fd = None
            else:
                unsent += int(struct.unpack("i", queued)[0])
        return unsent

    # -- the client's end ------------------------------------------------------------------
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
