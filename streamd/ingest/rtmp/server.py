"""The RTMP listener: OBS, ffmpeg and hardware encoders publish here, one `PublisherSession`
per connection, and an accepted publish becomes its stream's live session (FLV tags into
the stream's `LiveFeed`).

OBS: Server `rtmp://HOST:1935/live`, Stream Key `{videoId}?key={publish key}`. The app and
the key are checked before any media is taken, with the same keys as HTTP uploads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from streamd.access import Publishers
from streamd.config import Config
from streamd.errors import StreamdError
from streamd.ingest.rtmp import RtmpError, flv
from streamd.ingest.rtmp.session import (
    AudioTag,
    Connect,
    DeleteStream,
    Event,
    FCUnpublish,
    Metadata,
    Publish,
    PublisherSession,
    VideoTag,
)
from streamd.metrics import Metrics
from streamd.model import layout
from streamd.streams import Streams
from streamd.streams.live import LiveFeed

log = logging.getLogger("streamd.ingest.rtmp")
READ_BYTES = 1 << 16
TAG_AUDIO, TAG_VIDEO, TAG_SCRIPT = 8, 9, 18


class _Publisher:
    """One TCP connection, from the handshake to its end."""

    def __init__(
        self,
        server: RtmpServer,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.server, self.reader, self.writer = server, reader, writer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.session = PublisherSession()
        self.feed: LiveFeed | None = None
        self.video_id = ""

    async def run(self) -> None:
        idle_s = self.server.config.ingest.idle_timeout_s
        while True:
            try:
                data = await asyncio.wait_for(self.reader.read(READ_BYTES), idle_s)
            except TimeoutError:
                log.warning(
                    "rtmp %s %s: nothing for %g s; closing", self.peer, self.video_id, idle_s
                )
                return
            if not data:
                return
            events = self.session.feed(data)
            go_on = True
            for event in events:
                go_on = await self._handle(event)
                if not go_on:
                    break
            await self._send()
            if not go_on:
                return

    async def _send(self) -> None:
        out = self.session.data_to_send()
        if out:
            self.writer.write(out)
            await self.writer.drain()

    async def _handle(self, event: Event) -> bool:
        """Act on one event; False ends the connection."""
        feed = self.feed
        match event:
            case VideoTag() if feed is not None:
                data = flv.tag(TAG_VIDEO, event.timestamp_ms, event.body)
                if event.info.is_sequence_header:
                    feed.config["video"] = data
                elif event.info.packet in ("coded_frames", "coded_frames_x"):
                    feed.frames += 1
                await feed.write(data)
            case AudioTag() if feed is not None:
                data = flv.tag(TAG_AUDIO, event.timestamp_ms, event.body)
                if event.info.is_sequence_header:
                    feed.config["audio"] = data
                await feed.write(data)
            case Metadata() if feed is not None:
                data = flv.tag(TAG_SCRIPT, event.timestamp_ms, event.flv_body)
                feed.config.setdefault("metadata", data)
                await feed.write(data)
            case Connect():
                app = self.server.config.ingest.rtmp_app
                if event.app != app:
                    self._refused("unknown_app", f"unknown app {event.app[:64]!r}")
                    self.session.reject_connect(f"unknown app; publish to /{app}/VIDEO_ID")
                    return False
                self.session.accept_connect()
            case Publish():
                return await self._publish(event)
            case DeleteStream() | FCUnpublish():
                return self.feed is None  # the publisher is done with its stream
        return True

    async def _publish(self, event: Publish) -> bool:
        if self.feed is not None:
            self.session.reject_publish(event.stream_id, "one stream per connection")
            return False
        server = self.server
        try:
            video_id = layout.check_video_id(event.name)
            server.publishers.check(video_id, event.key or None)
        except StreamdError as exc:
            self._refused(exc.code, f"{exc.message}: {exc.detail or ''}")
            self.session.reject_publish(event.stream_id, exc.message)
            return False
        try:
            feed = await server.streams.open_live(video_id, "rtmp", "flv", self.peer)
        except StreamdError as exc:  # counted there
            log.warning("rtmp %s refused: %s: %s", self.peer, exc.message, exc.detail or "")
            self.session.reject_publish(event.stream_id, exc.message)
            return False
        self.video_id, self.feed = video_id, feed
        feed.header = flv.file_header(has_audio=True, has_video=True)
        feed.on_takeover = self.writer.transport.abort
        self.session.accept_publish(event.stream_id)
        return True

    def _refused(self, reason: str, detail: str) -> None:
        self.server.metrics.publishes.labels("rtmp", reason).inc()
        log.warning("rtmp %s refused: %s", self.peer, detail)

    def close(self) -> None:
        if self.feed is not None:
            self.server.streams.close_live(self.feed)
        self.writer.close()


class RtmpServer:
    """Publishers over RTMP, as many at once as connect."""

    def __init__(
        self, config: Config, streams: Streams, publishers: Publishers, metrics: Metrics
    ) -> None:
        self.config, self.streams, self.publishers = config, streams, publishers
        self.metrics = metrics
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self, port: int | None = None) -> None:
        self._server = await asyncio.start_server(
            self._connection, self.config.host, port or self.config.ingest.rtmp_port
        )
        log.info("RTMP listening on port %d, app /%s", self.port, self.config.ingest.rtmp_app)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        publisher = _Publisher(self, reader, writer)
        try:
            await publisher.run()
        except RtmpError as exc:
            log.warning("rtmp %s: %s (%s); closing", publisher.peer, exc.message, exc.detail)
        except (ConnectionError, OSError) as exc:
            log.info("rtmp %s: connection lost (%s)", publisher.peer, exc)
        finally:
            publisher.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
            self._connections.discard(task)
