"""SRT publishers into live sessions: the stream id names the stream and carries the key
(`#!::r={videoId},m=publish,s={key}`), checked in libsrt's listen callback with the same
keys as every other way in, so a refused caller never sends a byte; an accepted one's
MPEG-TS goes to its stream's live feed as it arrives.
"""

from __future__ import annotations

import logging

from streamd.access import Publishers
from streamd.config import Config
from streamd.errors import StreamdError
from streamd.ingest.srt import SrtError
from streamd.ingest.srt.connection import SrtConnection
from streamd.ingest.srt.libsrt import load
from streamd.ingest.srt.server import SrtListener
from streamd.ingest.srt.streamid import StreamId
from streamd.metrics import Metrics
from streamd.model import layout
from streamd.streams import Streams

log = logging.getLogger("streamd.ingest.srt")


class SrtIngest:
    """The SRT listener on `ingest.srt_port`, or why there is none (`unavailable`)."""

    def __init__(
        self, config: Config, streams: Streams, publishers: Publishers, metrics: Metrics
    ) -> None:
        self.config, self.streams, self.publishers = config, streams, publishers
        self.metrics = metrics
        self.listener: SrtListener | None = None
        self.unavailable: str | None = None  # why SRT is off, for /readyz

    async def start(self, port: int | None = None) -> None:
        """Listen, or say once why not (no libsrt here): the server runs on without SRT."""
        try:
            library = load()
            listener = SrtListener(
                self.config.host,
                self.config.ingest.srt_port if port is None else port,
                self._authorize,
                self._publish,
                library=library,
            )
            await listener.start()
        except SrtError as exc:
            self.unavailable = f"{exc.message}: {exc.detail or ''}".rstrip(": ")
            log.warning("SRT ingest is off: %s", self.unavailable)
            return
        self.listener = listener
        log.info("SRT listening on port %d", listener.port)

    @property
    def port(self) -> int:
        assert self.listener is not None
        return self.listener.port

    async def close(self) -> None:
        if self.listener is not None:
            await self.listener.close()

    def _authorize(self, stream_id: StreamId, peer: str) -> str | None:
        """On libsrt's thread, while the caller's handshake waits: the id and the key."""
        try:
            video_id = layout.check_video_id(stream_id.resource)
            self.publishers.check(video_id, stream_id.key or None)
        except StreamdError as exc:
            self.metrics.publishes.labels("srt", exc.code).inc()
            log.warning("srt %s refused: %s", peer, exc.message)
            return exc.message
        return None

    async def _publish(self, conn: SrtConnection) -> None:
        """An accepted caller: its stream's live session for as long as it sends."""
        try:
            feed = await self.streams.open_live(conn.stream_id.resource, "srt", "mpegts", conn.peer)
        except StreamdError as exc:  # the stream ended, or is being published already
            log.warning("srt %s refused: %s (%s)", conn.peer, exc.message, exc.detail)
            conn.close()
            return
        feed.on_takeover = conn.close
        try:
            while data := await conn.read():
                await feed.write(data)
        except ConnectionError as exc:  # taken over by a new publisher
            log.info("srt %s: %s", conn.peer, exc)
        finally:
            self.streams.close_live(feed)
            conn.close()
