"""An SRT listener beside the event loop: publishers are let in or refused by stream id in
libsrt's listen callback, and each accepted one's bytes reach the loop through a bounded
queue.

One thread per listener waits in `srt_epoll_uwait` on the listening socket and every
connection (all non-blocking) and hands what it reads to the loop with
`call_soon_threadsafe`. A publisher whose consumer falls `queue_chunks` behind is not read
until the consumer has caught up halfway, rather than having chunks dropped: libsrt's own
receive buffer (8192 packets: several seconds at broadcast bitrates) keeps what arrives
meanwhile, and only past that does live mode lose packets, whole ones, inside libsrt. So a
short stall loses nothing, MPEG-TS packets stay whole, and other publishers are not slowed.
After `start`, libsrt is called only on that thread (and, to refuse a caller, in the listen
callback on libsrt's own); the loop posts requests to it (resume, hang up, stop).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from queue import SimpleQueue
from types import TracebackType

from streamd.ingest.srt import SrtError, StreamIdError, UnsupportedMode
from streamd.ingest.srt.connection import SrtConnection
from streamd.ingest.srt.libsrt import (
    LISTEN_CALLBACK,
    LIVE_MAX_PAYLOAD_BYTES,
    TRANSTYPE_LIVE,
    Epoll,
    EpollEvent,
    LibSrt,
    Reject,
    SockOpt,
    SockStatus,
    load,
    peer_name,
)
from streamd.ingest.srt.streamid import StreamId, parse_stream_id

log = logging.getLogger("streamd.ingest.srt")

# (stream id, peer "host:port") -> None to accept, or why not. Runs on libsrt's thread.
Authorize = Callable[[StreamId, str], str | None]
OnPublish = Callable[["SrtConnection"], Awaitable[None]]

WAIT_MS = 100  # the I/O thread looks up this often: stop requests, closes, drains
DRAIN_WAIT_MS = 10
EVENTS = 64  # ready sockets taken per wait; more are reported by the next one
CHUNK_BYTES = 64 * 1024  # read at most this much from one socket per wake-up: fairness
CLOSE_GRACE_S = 5.0  # on_publish tasks get this long to end after their read() saw b""
WATCH = Epoll.IN | Epoll.ERR


class SrtListener:
    """Takes SRT publishers on `host:port`: `authorize` decides in libsrt's listen callback
    (before any data is accepted), `on_publish` runs on the loop for each accepted one.

    `authorize(stream_id, peer)` runs on libsrt's receiving thread while a handshake waits:
    it must be quick, synchronous and thread-safe (a lookup in memory, no I/O), and return
    None to accept or the reason to refuse. `start()` raises `SrtUnavailable` if libsrt is
    missing, `SrtError` if the port cannot be had.
    """

    def __init__(
        self,
        host: str,
        port: int,
        authorize: Authorize,
        on_publish: OnPublish,
        *,
        latency_ms: int = 120,
        backlog: int = 16,
        queue_chunks: int = 64,
        library: LibSrt | None = None,
    ) -> None:
        self.host = host
        self.port = port  # the bound port once started (port 0 picks one)
        self.latency_ms = latency_ms
        self.backlog = backlog
        self.queue_chunks = queue_chunks
        self._authorize = authorize
        self._on_publish = on_publish
        self._srt = library
        # libsrt calls this from its own thread; ctypes frees the trampoline with the
        # object, so it lives as long as the listener does.
        self._hook = LISTEN_CALLBACK(self._listen_hook)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sock = -1
        self._eid = -1
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._stopped = asyncio.Event()
        # (what, socket) for the I/O thread to do: _resume or _drop.
        self._requests: SimpleQueue[tuple[Callable[[int], None], int]] = SimpleQueue()
        # The I/O thread's: a socket is in the epoll set iff in _conns and in neither of
        # _paused (its consumer is behind) or _draining (broken; read until it is empty).
        self._conns: dict[int, SrtConnection] = {}
        self._paused: set[int] = set()
        self._draining: dict[int, float] = {}  # socket -> give up at (monotonic)
        self._buffer = ctypes.create_string_buffer(LIVE_MAX_PAYLOAD_BYTES)  # the thread's
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections: set[SrtConnection] = set()  # the loop's: publishers now

    async def __aenter__(self) -> SrtListener:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def srt(self) -> LibSrt:
        if self._srt is None:
            raise RuntimeError("SrtListener not started")
        return self._srt

    async def start(self) -> None:
        """Bind, listen and start the I/O thread."""
        if self._thread is not None or self._stopping.is_set():
            raise RuntimeError("an SrtListener starts once")
        srt = self._srt = self._srt or load()
        self._loop = asyncio.get_running_loop()
        srt.startup()
        try:
            self._sock = srt.create_socket()
            srt.set_int(self._sock, SockOpt.TRANSTYPE, TRANSTYPE_LIVE)
            srt.set_int(self._sock, SockOpt.RCVSYN, 0)  # accepted sockets inherit it
            srt.set_int(self._sock, SockOpt.LATENCY, self.latency_ms)
            srt.bind(self._sock, self.host, self.port)
            self.port = srt.local_port(self._sock)
            srt.listen_callback(self._sock, self._hook)
            srt.listen(self._sock, self.backlog)
            self._eid = srt.epoll_create()
            srt.epoll_add(self._eid, self._sock, WATCH)
        except BaseException:
            self._release()
            raise
        self._thread = threading.Thread(target=self._run, name=f"srt:{self.port}", daemon=True)
        self._thread.start()
        log.info(
            "SRT listening on %s:%d (libsrt %s, latency %d ms)",
            self.host,
            self.port,
            srt.version_text,
            self.latency_ms,
        )

    async def close(self) -> None:
        """Hang up on every publisher (their read() returns b""), stop the thread, close
        the sockets, release libsrt; then give on_publish tasks a moment to end."""
        if self._thread is None:
            return
        self._stopping.set()
        await self._stopped.wait()
        self._thread.join()
        self._thread = None
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=CLOSE_GRACE_S)
            for task in late:
                log.warning("SRT on_publish still running after close; cancelled: %s", task)
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        log.info("SRT listener on %s:%d closed", self.host, self.port)

    # -- libsrt's thread: the listen callback ------------------------------------------

    def _listen_hook(
        self, opaque: int | None, sock: int, hs_version: int, peer: int | None, sid: bytes | None
    ) -> int:
        """Accept (0) or refuse (-1) a caller before its handshake completes."""
        # An exception escaping a ctypes callback returns 0, which would let the caller in.
        try:
            where = peer_name(peer)
            try:
                stream_id = parse_stream_id((sid or b"").decode())
            except UnsupportedMode as exc:
                return self._refuse(sock, where, Reject.BAD_MODE, str(exc))
            except (StreamIdError, UnicodeDecodeError) as exc:
                return self._refuse(sock, where, Reject.BAD_REQUEST, str(exc))
            reason = self._authorize(stream_id, where)
            if reason is not None:
                return self._refuse(sock, where, Reject.FORBIDDEN, reason)
            return 0
        except Exception:
            log.exception("SRT listen callback failed; caller refused")
            with contextlib.suppress(Exception):
                self.srt.set_reject_reason(sock, Reject.INTERNAL)
            return -1

    def _refuse(self, sock: int, peer: str, code: Reject, reason: str) -> int:
        log.warning("SRT caller %s refused (%s): %s", peer, code.name, reason)
        self.srt.set_reject_reason(sock, code)
        return -1

    # -- the I/O thread ------------------------------------------------------------------

    def _post(self, callback: Callable[..., object], *args: object) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop closed without close(): nobody is left to tell
            log.debug("SRT listener on port %d outlived its event loop", self.port)

    def _unwatch(self, sock: int) -> None:
        if sock in self._paused or sock in self._draining:
            return
        try:
            self.srt.epoll_remove(self._eid, sock)
        except SrtError as exc:  # already gone from libsrt: it cannot wake us either
            log.warning("SRT epoll_remove of %d: %s", sock, exc.message)

    def _run(self) -> None:
        events = (EpollEvent * EVENTS)()
        buffer = self._buffer
        try:
            while not self._stopping.is_set():
                while not self._requests.empty():
                    request, sock = self._requests.get()
                    request(sock)
                wait_ms = DRAIN_WAIT_MS if self._draining or self._paused else WAIT_MS
                for sock, flags in self.srt.epoll_uwait(self._eid, events, wait_ms):
                    if sock == self._sock:
                        self._accept(flags)
                    elif conn := self._conns.get(sock):
                        self._receive(conn, buffer)
                self._drain(buffer)
        except Exception:
            log.exception("SRT listener on port %d failed; publishers dropped", self.port)
        finally:
            try:
                for sock in list(self._conns):
                    self._drop(sock)
                self._release()
            finally:
                self._post(self._stopped.set)

    def _accept(self, flags: Epoll) -> None:
        if flags & Epoll.ERR:
            raise SrtError(f"SRT listening socket broke: {self.srt.sock_state(self._sock).name}")
        # One accept per wake-up: the listener stays ready while more wait, and an accept
        # with none waiting makes libsrt print an error line.
        accepted = self.srt.accept(self._sock)
        if accepted is None:
            return
        sock, peer = accepted
        try:
            # The stream id again, from the accepted socket: the callback let it in.
            stream_id = parse_stream_id(self.srt.get_string(sock, SockOpt.STREAMID).decode())
            self.srt.set_int(sock, SockOpt.RCVSYN, 0)
            self.srt.epoll_add(self._eid, sock, WATCH)
        except (SrtError, StreamIdError, UnicodeDecodeError) as exc:
            log.warning("SRT publisher %s dropped after accept: %s", peer, exc)
            self._close(sock, peer)
            return
        conn = SrtConnection(
            sock,
            stream_id,
            peer,
            queue_chunks=self.queue_chunks,
            resume=lambda u: self._requests.put((self._resume, u)),
            hang_up=lambda u: self._requests.put((self._drop, u)),
        )
        self._conns[sock] = conn
        self._post(self._started, conn)

    def _receive(self, conn: SrtConnection, buffer: ctypes.Array[ctypes.c_char]) -> None:
        """Read what is ready (up to CHUNK_BYTES); a broken connection starts draining."""
        parts: list[bytes] = []
        size = 0
        broken: SrtError | None = None
        try:
            while size < CHUNK_BYTES and (n := self.srt.recvmsg(conn._sock, buffer)):
                parts.append(ctypes.string_at(buffer, n))
                size += n
        except SrtError as exc:
            broken = exc
        if parts:
            if conn._handing_over():
                self._unwatch(conn._sock)
                self._paused.add(conn._sock)
            self._post(conn._put, b"".join(parts))
        if broken is not None:
            self._start_draining(conn, broken.message)

    def _start_draining(self, conn: SrtConnection, why: str) -> None:
        """The peer is gone. libsrt holds back packets until their play time (TSBPD) even
        then; they become readable within the latency, so read on until none are left."""
        if conn._sock in self._draining:
            return
        log.info("SRT publisher %r: %s", conn, why)
        self._unwatch(conn._sock)
        self._draining[conn._sock] = time.monotonic() + self._drain_s

    @property
    def _drain_s(self) -> float:
        return 2 * self.latency_ms / 1000 + 0.5

    def _resume(self, sock: int) -> None:
        """The consumer caught up: read the socket again."""
        conn = self._conns.get(sock)
        if conn is None or sock not in self._paused:
            return
        self._paused.discard(sock)
        if sock in self._draining:
            return  # `_drain` reads it
        try:
            self.srt.epoll_add(self._eid, sock, WATCH)
            state = self.srt.sock_state(sock)
        except SrtError as exc:
            log.warning("SRT publisher %r: epoll_add: %s", conn, exc.message)
            self._drop(sock)
            return
        # A socket that broke while out of the set raises no event when added again (and
        # one that breaks from now on does): it is drained by the clock instead.
        if state != SockStatus.CONNECTED:
            self._start_draining(conn, f"{state.name} while its reader was behind")
        else:
            self._receive(conn, self._buffer)

    def _drain(self, buffer: ctypes.Array[ctypes.c_char]) -> None:
        now = time.monotonic()
        for sock, give_up_at in list(self._draining.items()):
            conn = self._conns[sock]
            if sock in self._paused:  # the consumer is behind: wait for it, not the clock
                self._draining[sock] = now + self._drain_s
                continue
            self._receive(conn, buffer)
            try:
                left = self.srt.get_int(sock, SockOpt.RCVDATA)
            except SrtError:
                left = 0
            if left == 0 or now > give_up_at:
                if left:
                    log.warning("SRT publisher %r: %d packets never became readable", conn, left)
                self._drop(sock)

    def _drop(self, sock: int) -> None:
        """Close a connection's socket and end its reads."""
        conn = self._conns.get(sock)
        if conn is None:
            return
        self._unwatch(sock)
        del self._conns[sock]
        self._paused.discard(sock)
        self._draining.pop(sock, None)
        self._close(sock, repr(conn))
        self._post(self._ended, conn)

    def _close(self, sock: int, what: str) -> None:
        try:
            self.srt.close(sock)
        except SrtError as exc:  # libsrt closed it already (broken, collected)
            log.warning("SRT close of %s: %s", what, exc.message)

    def _release(self) -> None:
        """Listening socket, epoll, libsrt: whichever `start` got."""
        srt = self.srt
        steps: list[tuple[str, Callable[[], None]]] = []
        if self._sock >= 0:
            steps.append(("listening socket", lambda: srt.close(self._sock)))
        if self._eid >= 0:
            steps.append(("epoll", lambda: srt.epoll_release(self._eid)))
        steps.append(("libsrt", srt.cleanup))
        for what, release in steps:
            try:
                release()
            except SrtError as exc:
                log.warning("SRT release of the %s: %s", what, exc.message)
        self._sock = self._eid = -1

    # -- on the loop -----------------------------------------------------------------

    def _started(self, conn: SrtConnection) -> None:
        log.info("SRT publisher %r (%s)", conn, conn.stream_id.user or "no user")
        self.connections.add(conn)
        task = asyncio.get_running_loop().create_task(self._serve(conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, conn: SrtConnection) -> None:
        try:
            await self._on_publish(conn)
        except Exception:
            log.exception("SRT on_publish failed for %r", conn)
        finally:
            conn.close()

    def _ended(self, conn: SrtConnection) -> None:
        conn._end()
        self.connections.discard(conn)
        log.info("SRT publisher %r ended after %d bytes", conn, conn.bytes_received)
