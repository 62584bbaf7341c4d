"""Which streams exist: loaded from the state store at start (after migrating a 0.1 data
dir), created by their first upload, each with its runner."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from streamd.clock import Clock
from streamd.config import Config
from streamd.errors import Conflict, NotFound, StreamdError, StreamEnded
from streamd.jobs import JobQueue
from streamd.metrics import Metrics
from streamd.model import layout
from streamd.model.captions import Cue
from streamd.model.jobs import MediaLimits
from streamd.model.ladder import parse_ladder
from streamd.model.pipeline import EncodeSettings
from streamd.model.protection import (
    NONE,
    Protection,
    check_config,
    check_method,
    method_of,
    new_stream_method,
)
from streamd.model.stream import DONE, HELD, TRANSCODING, Stream
from streamd.store import AsyncStore
from streamd.store.migrate import migrate_v1
from streamd.store.state import StateStore
from streamd.streams import audio, captions
from streamd.streams.live import LiveFeed
from streamd.streams.publisher import Publisher
from streamd.streams.runner import StreamRunner

log = logging.getLogger("streamd.streams")


def encode_settings(config: Config) -> EncodeSettings:
    tc = config.transcode
    return EncodeSettings(
        tuple(parse_ladder(tc.ladder)),
        tc.segment_duration_s,
        tc.preset,
        tc.audio_bitrate_bps,
        tc.encoder_threads,
        tc.passthrough,
        config.hls.part_duration_s,
        tc.live_preset,
        config.retention.window_s,
    )


def _live_dir() -> Path:
    """Where live sessions' sockets and lag files go: memory where there is /dev/shm, and a
    short path (a Unix socket's is at most 107 bytes)."""
    shm = Path("/dev/shm")
    return Path(tempfile.mkdtemp(prefix="streamd-live-", dir=shm if shm.is_dir() else None))


class Streams:
    """Every stream's record and runner, by videoId."""

    def __init__(
        self,
        config: Config,
        state: StateStore,
        store: AsyncStore,
        publisher: Publisher,
        jobs: JobQueue,
        clock: Clock,
        metrics: Metrics,
    ) -> None:
        self.config, self.state, self.store, self.publisher = config, state, store, publisher
        self.jobs, self.clock, self.metrics = jobs, clock, metrics
        check_config(config)  # [protection]: refused at start, not at the first upload
        self.settings = encode_settings(config)
        self.records: dict[str, Stream] = {}
        self.runners: dict[str, StreamRunner] = {}
        self.live_dir = Path(tempfile.gettempdir())  # made in start()

    # -- lifetime --------------------------------------------------------------------------
    async def start(self) -> None:
        """Load every stream, rebuild its playlists, resume its unfinished work."""
        self.live_dir = _live_dir()
        streams = await self.state.load()
        known = {s.video_id for s in streams}
        streams += await migrate_v1(self.store, self.state, known)
        for stream in streams:
            for up in list(stream.pending.values()):
                if up.state == TRANSCODING:
                    stream.set_state(up, HELD)
                    up.percent = 0.0
            stream.refresh_states()
            self.records[stream.video_id] = stream
            await self.publisher.restore(stream)
            runner = self._runner(stream)
            last = stream.uploads[max(stream.uploads)] if stream.uploads else None
            runner.live.ended = last is not None and last.ingest != ""  # it may come back
            pending = sum(1 for u in stream.pending.values() if u.state not in DONE)
            log.info(
                "loaded %s: %d segments published, %d uploads to do, %s",
                stream.video_id,
                stream.next_sequence,
                pending,
                stream.state,
            )
            if not stream.ended:
                runner.start()

    async def close(self) -> None:
        for runner in self.runners.values():
            await runner.stop()
        shutil.rmtree(self.live_dir, ignore_errors=True)

    def _runner(self, stream: Stream) -> StreamRunner:
        runner = StreamRunner(
            stream,
            state=self.state,
            publisher=self.publisher,
            jobs=self.jobs,
            settings=self.settings,
            store_spec=self.store.store.spec(),
            clock=self.clock,
            metrics=self.metrics,
            gap_timeout_s=self.config.upload.gap_timeout_s,
            limits=MediaLimits.of(self.config.upload),
            upload_timeout_s=self.config.transcode.upload_timeout_s,
            overload_delay_s=self.config.transcode.overload_delay_s,
            ingest=self.config.ingest,
            live_dir=self.live_dir,
        )
        self.runners[stream.video_id] = runner
        return runner

    # -- lookups -----------------------------------------------------------------------------
    def get(self, video_id: str) -> Stream:
        stream = self.records.get(layout.check_video_id(video_id))
        if stream is None:
            raise NotFound(f"no stream {video_id!r}", "upload a segment to create it")
        return stream

    def runner(self, video_id: str) -> StreamRunner:
        self.get(video_id)
        return self.runners[video_id]

    def refuse_if_ended(self, video_id: str) -> None:
        """Uploads to an ended stream are refused before their body is read."""
        stream = self.records.get(layout.check_video_id(video_id))
        if stream is not None and (stream.ending or stream.ended):
            raise StreamEnded(f"stream {video_id!r} has ended", "start a new videoId")

    def check_encryption(self, video_id: str, requested: str | None) -> str:
        """The method an upload's ?encryption= asks for, checked before its body is read: a
        new stream's choice (400 if it cannot have it), or the one the stream already has
        (409 if the upload asks for another)."""
        stream = self.records.get(video_id)
        if stream is None:
            return new_stream_method(self.config, requested)
        method = method_of(stream.protection)
        if requested is not None and check_method(requested) != method:
            raise Conflict(
                f"stream {video_id!r} is encrypted with {method}, not {requested}",
                "a stream's encryption is chosen by its first upload",
            )
        return method

    def for_upload(self, video_id: str, encryption: str | None = None) -> StreamRunner:
        """The runner an upload goes to, making the stream if this is its first (with the
        encryption its ?encryption= or the config asks for)."""
        self.refuse_if_ended(video_id)
        method = self.check_encryption(video_id, encryption)
        stream = self.records.get(video_id)
        if stream is None:
            rotation = self.config.protection.key_rotation_segments
            protection = None if method == NONE else Protection.new(rotation)
            stream = Stream(video_id, self.clock.wall_s(), protection=protection)
            self.records[video_id] = stream
            return self._runner(stream)
        return self.runners[video_id]

    async def open_live(self, video_id: str, protocol: str, container: str, peer: str) -> LiveFeed:
        """A publisher whose key was checked begins a live session (every protocol comes
        here): counted by its result, and a stream it would have made is not kept if it is
        refused (ended, or being published already)."""
        try:
            feed = await self.for_upload(video_id).start_live(protocol, container, peer)
        except StreamdError as exc:
            self.metrics.publishes.labels(protocol, exc.code).inc()
            self.forget_if_empty(video_id)
            raise
        self.metrics.publishes.labels(protocol, "accepted").inc()
        log.info("%s %s publishes %s", protocol, peer, video_id, extra={"stream": video_id})
        return feed

    def close_live(self, feed: LiveFeed) -> None:
        """The publisher went: the worker reads the session to its end."""
        feed.end()
        self.metrics.publisher_disconnects.labels(feed.protocol).inc()
        log.info("%s %s stopped publishing (%d bytes)", feed.protocol, feed.peer, feed.bytes)

    async def delete(self, video_id: str) -> None:
        """A stream and everything it has: runner stopped, playlists withdrawn (edges too),
        its record gone, its uploads and published objects deleted."""
        self.get(video_id)
        runner = self.runners.pop(video_id)
        await runner.drain()
        async with runner.lock:  # an upload being accepted finishes first
            del self.records[video_id]
            self.publisher.remove(video_id)
            await self.state.delete_stream(video_id)
        prefixes = (
            layout.stream_prefix(video_id),
            f"ingest/{video_id}/",
            layout.file_prefix(video_id),
        )
        for prefix in prefixes:
            for key in await self.store.list(prefix):
                await self.store.delete(key)
        log.warning("deleted stream %s", video_id)

    async def add_captions(self, video_id: str, lang: str, name: str, cues: list[Cue]) -> None:
        """Cues for a stream's subtitles in `lang` (streamd.streams.captions)."""
        await captions.add_captions(self.runners[video_id], lang, name, cues)

    async def add_commentary(
        self,
        video_id: str,
        lang: str,
        name: str,
        upload: int,
        keep: Callable[[str], Awaitable[None]],
    ) -> str:
        """Audio in `lang` for the time of upload `upload` (streamd.streams.audio)."""
        return await audio.add_commentary(self.runners[video_id], lang, name, upload, keep)

    def forget_if_empty(self, video_id: str) -> None:
        """A stream whose first upload was refused is not kept (unless ffmpeg's init.mp4
        came for it: its segments need that)."""
        stream = self.records.get(video_id)
        if stream is not None and not (stream.uploads or stream.segments or stream.ingest_init):
            del self.records[video_id]
            self.runners.pop(video_id, None)
