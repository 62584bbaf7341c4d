"""One accepted SRT publisher as the event loop sees it: who, and its bytes through a
bounded queue that the listener's I/O thread fills.

The bound is kept by counting, on both threads, the chunks handed over and not yet read:
at `queue_chunks` the I/O thread stops reading the socket, and once the reader is down to
half of that it asks for it to be read again. Nothing is dropped here; libsrt buffers.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from streamd.ingest.srt.streamid import StreamId


class SrtConnection:
    """One accepted publisher: who (`stream_id`, `peer`), its bytes through `read()`.

    Bytes are whatever the publisher sent (MPEG-TS from ffmpeg and OBS), in order, in
    chunks of one or more SRT packets. One reader at a time.
    """

    def __init__(
        self,
        sock: int,
        stream_id: StreamId,
        peer: str,
        *,
        queue_chunks: int,
        resume: Callable[[int], None],
        hang_up: Callable[[int], None],
    ) -> None:
        self.stream_id = stream_id
        self.peer = peer
        self.bytes_received = 0  # handed to the loop
        self.bytes_read = 0  # taken by read()
        self.pauses = 0  # times reading stopped because the consumer fell behind
        self._sock = sock
        self._limit = queue_chunks
        self._resume = resume  # ask the I/O thread to read this socket again
        self._hang_up = hang_up  # ask the I/O thread to close it
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(self._limit + 1)  # + the end
        self._ended = False  # b"" queued: nothing more is queued after it
        self._closing = False
        # Between the I/O thread and the loop: chunks handed over and not yet read, and
        # whether that stopped the reading.
        self._lock = threading.Lock()
        self._in_flight = 0
        self._paused = False

    def __repr__(self) -> str:
        return f"<SrtConnection {self.stream_id.resource} from {self.peer}>"

    async def read(self) -> bytes:
        """The next bytes the publisher sent; b"" once it has gone or was closed."""
        chunk = await self._queue.get()
        if not chunk:
            self._queue.put_nowait(b"")  # every later read() sees the end too
            return b""
        self.bytes_read += len(chunk)
        self._consumed()
        return chunk

    def close(self) -> None:
        """Stop reading this publisher and hang up on it (at the I/O thread's next look)."""
        if self._closing:
            return
        self._closing = True
        while not self._queue.empty():  # the unread bytes, and the end if it was queued
            self._queue.get_nowait()
        self._ended = True
        self._queue.put_nowait(b"")
        self._hang_up(self._sock)

    @property
    def closed(self) -> bool:
        return self._closing or self._ended

    # -- on the loop -----------------------------------------------------------------

    def _put(self, chunk: bytes) -> None:
        self.bytes_received += len(chunk)
        if not self._closing and not self._ended:
            self._queue.put_nowait(chunk)

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self._queue.put_nowait(b"")

    def _consumed(self) -> None:
        with self._lock:
            self._in_flight -= 1
            resume = self._paused and self._in_flight <= self._limit // 2
            if resume:
                self._paused = False
        if resume:
            self._resume(self._sock)

    # -- on the I/O thread -------------------------------------------------------------

    def _handing_over(self) -> bool:
        """Count a chunk about to be posted to `_put`; True if that fills the queue: stop
        reading the socket until `resume` is asked for."""
        with self._lock:
            self._in_flight += 1
            pause = self._in_flight >= self._limit and not self._paused
            if pause:
                self._paused = True
                self.pauses += 1
        return pause
