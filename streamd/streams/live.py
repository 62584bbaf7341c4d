"""A live session's bytes on their way to the worker that owns the stream.

Every ingest protocol ends here (as MediaMTX's all feed one stream core): RTMP writes FLV,
SRT and chunked HTTP write MPEG-TS. The worker connects to the feed's Unix socket and
demuxes what comes as it comes; the end of the session is the end of that connection. A
worker that dies takes only its connection: the next one to connect gets the session's
`header` (FLV header and codec configuration) again, then the bytes from where it stands.

How far behind the worker is, the age of the bytes it is handed now, is kept in an 8-byte
file the worker maps (`lag_path`): a publisher's own stalls (a network drop, an encoder
pausing) make media arrive late, but only a worker that cannot keep up makes it wait here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mmap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamd.errors import Conflict
from streamd.model.jobs import LAG

log = logging.getLogger("streamd.streams.live")
QUEUE_CHUNKS = 256  # bytes waiting for the worker, in the publisher's reads (~1-2 s)


class LiveFeed:
    """One publisher's session: `write` its bytes (waits while the worker is behind),
    `close` at its end. `protocol` and `peer` say who feeds it."""

    def __init__(self, path: Path, container: str, protocol: str, peer: str) -> None:
        self.path, self.container = path, container
        self.protocol, self.peer = protocol, peer
        self.header = b""  # what every worker gets first (an FLV file header)
        self.config: dict[str, bytes] = {}  # codec configuration, for a worker that takes over
        self.bytes = 0
        self.frames = 0  # video frames, as far as the protocol tells them apart
        self.opened = self.last_write = time.monotonic()
        self.ended = False  # the publisher is done: the worker reads to the end, then EOF
        self.done = asyncio.Event()  # every byte reached a worker, or the feed was aborted
        self.on_takeover: Callable[[], None] = lambda: None  # drops the publisher's connection
        self._workers = 0  # connections so far
        # (bytes, when they came), bounded by `write`; None: the end
        self._queue: asyncio.Queue[tuple[bytes, float] | None] = asyncio.Queue()
        self._lag: mmap.mmap | None = None
        self._room = asyncio.Event()
        self._server: asyncio.AbstractServer | None = None
        self._writer: asyncio.StreamWriter | None = None  # to the worker reading now
        self._pending = b""  # bytes a worker was writing when it went away

    @property
    def lag_path(self) -> Path:
        return self.path.with_suffix(".lag")

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # left by a crash
        with self.lag_path.open("wb+") as f:  # a few bytes in the live dir (tmpfs if it can)
            f.write(bytes(LAG.size))
            f.flush()
            self._lag = mmap.mmap(f.fileno(), LAG.size)
        self._server = await asyncio.start_unix_server(self._serve, self.path)

    def _set_lag(self, lag_s: float) -> None:
        if self._lag is not None and not self._lag.closed:
            LAG.pack_into(self._lag, 0, lag_s)

    async def write(self, data: bytes) -> None:
        """Hand bytes to the worker; waits while it is behind (the publisher's TCP window
        closes, and its encoder drops frames rather than streamd holding them)."""
        if self.ended:
            raise ConnectionResetError("the live session has ended")
        self._queue.put_nowait((data, time.monotonic()))
        self.bytes += len(data)
        self.last_write = time.monotonic()
        if self._queue.qsize() >= QUEUE_CHUNKS:
            self._room.clear()
            await self._room.wait()

    def silent_s(self) -> float:
        return time.monotonic() - self.last_write

    def as_json(self) -> dict[str, Any]:
        """What operators see of the session (the API, the status page)."""
        elapsed_s = max(time.monotonic() - self.opened, 0.001)
        return {
            "protocol": self.protocol,
            "peer": self.peer,
            "connected": not self.ended,
            "bytes": self.bytes,
            "frames": self.frames,
            "bitrateBps": round(self.bytes * 8 / elapsed_s),
            "connectedS": round(elapsed_s, 1),
        }

    def end(self) -> None:
        """The publisher is gone: the worker gets what is queued, then the end."""
        if not self.ended:
            self.ended = True
            self._queue.put_nowait(None)
            self._room.set()

    async def close(self) -> None:
        """Stop serving (the job is over, or never started)."""
        self.end()
        self.done.set()
        writer = self._writer
        if writer is not None and not writer.transport.is_closing():
            writer.transport.abort()  # its task ends on its own, not cancelled at exit
        if self._server is not None:
            self._server.close()
            self._server = None
        for path in (self.path, self.lag_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        if self._lag is not None:
            self._lag.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One worker's connection: the header, then the session until its end."""
        config = b"".join(self.config.values()) if self._workers else b""
        self._workers += 1
        self._writer = writer
        try:
            writer.write(self.header + config + self._pending)
            self._pending = b""
            await writer.drain()
            while True:
                if self._queue.empty():
                    self._set_lag(0.0)
                item = await self._queue.get()
                if self._queue.qsize() < QUEUE_CHUNKS // 2:
                    self._room.set()
                if item is None:
                    break
                chunk, came = item
                self._set_lag(time.monotonic() - came)
                self._pending = chunk
                writer.write(chunk)
                await writer.drain()
                self._pending = b""
            self.done.set()
        except (ConnectionError, OSError) as exc:
            log.warning("live feed %s: the worker went away (%s)", self.path.name, exc)
        finally:
            self._writer = None
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


class LiveSessions:
    """One stream's live sessions by upload number: at most one publisher at a time, and a
    silent one (an encoder reconnecting after a network drop) taken over by the next."""

    def __init__(self, video_id: str, directory: Path, takeover_after_s: float) -> None:
        self.video_id, self.directory = video_id, directory
        self.takeover_after_s = takeover_after_s
        self.feeds: dict[int, LiveFeed] = {}
        self.ended = False  # the last publisher left: the stream waits for it a while

    def current(self) -> LiveFeed | None:
        """The session being published now, if any."""
        return next((f for f in reversed(self.feeds.values()) if not f.ended), None)

    def take_over(self, protocol: str, peer: str) -> None:
        """Make way for a new publisher: refused while one is sending (Conflict)."""
        for feed in self.feeds.values():
            if feed.ended:
                continue
            silent_s = feed.silent_s()
            if silent_s < self.takeover_after_s:
                raise Conflict(
                    f"stream {self.video_id!r} is already being published",
                    f"by {feed.protocol} from {feed.peer}; a new publisher takes over after"
                    f" {self.takeover_after_s:g} s of silence",
                )
            log.warning(
                "%s: %s from %s takes over from %s (silent %.1f s)",
                self.video_id,
                protocol,
                peer,
                feed.peer,
                silent_s,
            )
            feed.end()
            feed.on_takeover()

    async def open(self, number: int, protocol: str, container: str, peer: str) -> LiveFeed:
        feed = LiveFeed(
            self.directory / f"{self.video_id}-{number}.sock", container, protocol, peer
        )
        await feed.open()
        self.feeds[number] = feed
        self.ended = False
        return feed

    async def close(self, number: int) -> None:
        """The session's job is over: its worker read it to the end, or is gone."""
        feed = self.feeds.pop(number, None)
        if feed is not None:
            await feed.close()
            self.ended = not self.feeds

    async def close_all(self) -> None:
        for feed in self.feeds.values():
            await feed.close()
