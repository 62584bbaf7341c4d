"""Runs each stream's uploads through the job queue, in order, and publishes what comes back.

One runner task per stream: uploads are transcoded strictly in number order (each starts
where the previous one's timeline ended); a segment is published (manifest, then playlists)
as soon as a worker has written it. After a restart the manifests say what is published and
what is still to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

from streamd import layout
from streamd.cache import SegmentCache
from streamd.clock import Clock
from streamd.config import Config
from streamd.errors import NotFound, SegmentConflict, StreamdError, StreamEnded, TranscodeError
from streamd.jobs import JobQueue
from streamd.ladder import parse_ladder
from streamd.metrics import Metrics
from streamd.pipeline import EncodeSettings
from streamd.publish import render_all
from streamd.store import AsyncStore
from streamd.streams import (
    FAILED,
    HELD,
    PUBLISHED,
    QUEUED,
    TRANSCODING,
    Segment,
    Stream,
    Upload,
)
from streamd.transcode import JobInput, JobProgress, PublishedSegment, TranscodeJob

log = logging.getLogger("streamd.scheduler")
# Queued uploads one job may take: enough to keep the encoders warm through a backlog,
# few enough that a failure costs little to retry one by one.
MAX_UPLOADS_PER_JOB = 8


class Scheduler:
    """Owns every stream: accepts uploads, runs their transcodes, publishes segments."""

    def __init__(
        self,
        config: Config,
        store: AsyncStore,
        jobs: JobQueue,
        cache: SegmentCache,
        clock: Clock,
        metrics: Metrics,
    ) -> None:
        self.config = config
        self.store = store
        self.jobs = jobs
        self.cache = cache
        self.clock = clock
        self.metrics = metrics
        tc = config.transcode
        self.settings = EncodeSettings(
            tuple(parse_ladder(tc.ladder)),
            tc.segment_duration_s,
            tc.preset,
            tc.audio_bitrate_bps,
            tc.encoder_threads,
        )
        self.streams: dict[str, Stream] = {}
        # Called with each stream whose playlists changed (edge processes follow them).
        self.listeners: set[Callable[[Stream], None]] = set()
        self._runners: dict[str, asyncio.Task[None]] = {}

    # -- lifetime --------------------------------------------------------------------------
    async def start(self) -> None:
        """Load every manifest, re-render its playlists and resume unfinished work."""
        for key in await self.store.list("streams/"):
            if not key.endswith("/manifest.json"):
                continue
            try:
                stream = Stream.from_json(json.loads(await self.store.get(key)))
            except (ValueError, KeyError, TypeError) as exc:
                log.error("skipping unreadable manifest %s: %r", key, exc)
                continue
            if stream.ingest_init:
                stream.init_arrived.set()
            for up in stream.uploads.values():
                if up.state == TRANSCODING:
                    up.state, up.percent = HELD, 0.0
            stream.refresh_states()
            self.streams[stream.video_id] = stream
            await self._write_playlists(stream)
            pending = sum(1 for u in stream.uploads.values() if u.state not in (PUBLISHED, FAILED))
            log.info(
                "loaded %s: %d segments published, %d uploads to do, %s",
                stream.video_id,
                len(stream.segments),
                pending,
                stream.state,
            )
            if not stream.ended:
                self._start_runner(stream)

    async def close(self) -> None:
        for task in self._runners.values():
            task.cancel()
        for task in self._runners.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _start_runner(self, stream: Stream) -> None:
        task = asyncio.create_task(self._run(stream), name=f"stream-{stream.video_id}")
        self._runners[stream.video_id] = task
        stream.wake.set()

    # -- what the HTTP handlers call -------------------------------------------------------
    def get(self, video_id: str) -> Stream:
        stream = self.streams.get(layout.check_video_id(video_id))
        if stream is None:
            raise NotFound(f"no stream {video_id!r}", "upload a segment to create it")
        return stream

    def refuse_if_ended(self, video_id: str) -> None:
        """Uploads to an ended stream are refused before their body is read."""
        stream = self.streams.get(layout.check_video_id(video_id))
        if stream is not None and (stream.ending or stream.ended):
            raise StreamEnded(f"stream {video_id!r} has ended", "start a new videoId")

    def stream_for_upload(self, video_id: str) -> Stream:
        self.refuse_if_ended(video_id)
        stream = self.streams.get(video_id)
        if stream is None:
            stream = Stream(video_id, self.clock.wall_s())
            self.streams[video_id] = stream
        return stream

    def existing_upload(self, stream: Stream, number: int, sha256: str) -> Upload | None:
        """The same upload received before (a retry), or None; raises on a conflict."""
        up = stream.uploads.get(number)
        if up is None:
            if stream.next_upload is not None and number < stream.next_upload:
                raise SegmentConflict(
                    f"segment {number} comes after the stream moved past it",
                    f"the stream is at segment {stream.next_upload}",
                )
            return None
        if up.sha256 != sha256:
            raise SegmentConflict(
                f"segment {number} was already uploaded with other bytes", f"sha256 {up.sha256}"
            )
        return up

    async def add_upload(self, stream: Stream, upload: Upload) -> None:
        """Record an accepted upload (already stored) and wake the stream's runner."""
        if stream.next_upload is None:
            stream.next_upload = upload.number
        upload.state = HELD
        stream.uploads[upload.number] = upload
        if stream.end_after is not None and upload.number >= stream.end_after:
            stream.ending = True
        stream.refresh_states()
        stream.updated_wall_s = self.clock.wall_s()
        await self._persist(stream)
        if stream.video_id not in self._runners:
            self._start_runner(stream)
        stream.wake.set()

    async def end(self, video_id: str) -> Stream:
        """Publish what was received, then close the playlists with EXT-X-ENDLIST."""
        stream = self.get(video_id)
        async with stream.lock:
            if not stream.ending:
                stream.ending = True
                await self._persist(stream)
        stream.wake.set()
        return stream

    async def end_after(self, video_id: str, last: int) -> None:
        """End once upload `last` has arrived: a pushed ENDLIST can overtake its segments."""
        stream = self.streams.get(layout.check_video_id(video_id))
        if stream is None or stream.ending:
            return
        if last in stream.uploads or (stream.next_upload or 0) > last:
            await self.end(video_id)
            return
        async with stream.lock:
            stream.end_after = last
            await self._persist(stream)
        stream.wake.set()

    # -- the runner --------------------------------------------------------------------------
    async def _run(self, stream: Stream) -> None:
        gap_timeout = self.config.upload.gap_timeout_s
        while True:
            stream.wake.clear()
            batch = stream.next_jobs(
                1 if stream.solo_until >= (stream.next_upload or 0) else MAX_UPLOADS_PER_JOB
            )
            if batch:
                try:
                    await self._transcode(stream, batch)
                except Exception as exc:  # a bug must not stop the stream for good
                    log.exception(
                        "%s uploads %s: unexpected error",
                        stream.video_id,
                        [u.number for u in batch],
                    )
                    async with stream.lock:
                        self._fail(stream, batch, TranscodeError("internal error", repr(exc)))
                        await self._persist(stream)
                continue
            if stream.ending:
                async with stream.lock:
                    if stream.skip_gap():
                        log.warning(
                            "%s: ending, skipping to held upload %s",
                            stream.video_id,
                            stream.next_upload,
                        )
                        continue
                    stream.ended = True
                    await self._write_playlists(stream)
                    await self._persist(stream)
                log.info(
                    "%s ended: %d segments, %.1f s",
                    stream.video_id,
                    len(stream.segments),
                    stream.duration_s,
                )
                return
            waiting_on_gap = stream.counts()[HELD] > 0 or stream.end_after is not None
            try:
                await asyncio.wait_for(stream.wake.wait(), gap_timeout if waiting_on_gap else None)
            except TimeoutError:
                async with stream.lock:
                    missing = stream.next_upload
                    if stream.skip_gap():
                        log.warning(
                            "%s: upload %s missing for %g s, going on without it",
                            stream.video_id,
                            missing,
                            gap_timeout,
                        )
                    elif stream.end_after is not None:
                        log.warning(
                            "%s: upload %d never came, ending", stream.video_id, stream.end_after
                        )
                        stream.ending = True

    async def _transcode(self, stream: Stream, batch: list[Upload]) -> None:
        """One job for a run of queued uploads: warm encoders carry from one to the next."""
        by_number = {u.number: u for u in batch}
        for u in batch:
            u.state = TRANSCODING
        job = TranscodeJob(
            stream.video_id,
            tuple(JobInput(u.number, u.keys) for u in batch),
            stream.pipeline,
            self.settings,
            self.store.store.spec(),
            publish_from=len(stream.segments),
        )
        progress: asyncio.Queue[JobProgress] = asyncio.Queue()
        task = asyncio.create_task(self.jobs.transcode(job, progress.put_nowait))
        while True:
            getter = asyncio.ensure_future(progress.get())
            await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                item = getter.result()
                if item.upload in by_number:
                    by_number[item.upload].percent = item.percent
                if item.segment is not None:
                    await self._publish(stream, by_number[item.segment.upload], item.segment)
                continue
            getter.cancel()
            if progress.empty():
                break
        async with stream.lock:
            try:
                result = task.result()
            except StreamdError as exc:
                self._fail(stream, batch, exc)
            else:
                for u in batch:
                    u.state, u.percent = PUBLISHED, 100.0
                stream.pipeline = result.state
                stream.realtime_factor = round(result.media_duration_s / result.elapsed_s, 3)
                for rung, seconds in result.rung_seconds.items():
                    self.metrics.transcode_seconds.labels(rung).inc(seconds)
                self._advance(stream, len(batch))
            await self._persist(stream)

    def _advance(self, stream: Stream, uploads: int = 1) -> None:
        assert stream.next_upload is not None
        stream.next_upload += uploads
        stream.refresh_states()
        stream.updated_wall_s = self.clock.wall_s()

    def _fail(self, stream: Stream, batch: list[Upload], exc: StreamdError) -> None:
        """A job failed. Alone, its upload is marked failed and the stream goes on after it
        (keeping what it did publish); in a run, the run is retried one upload at a time."""
        numbers = [u.number for u in batch]
        if len(batch) > 1:
            log.warning(
                "%s uploads %s failed together (%s); retrying one at a time",
                stream.video_id,
                numbers,
                exc.message,
            )
            for u in batch:
                u.state, u.percent = QUEUED, 0.0
            stream.solo_until = batch[-1].number
            return
        upload = batch[0]
        log.error(
            "%s upload %d failed: %s (%s)", stream.video_id, upload.number, exc.message, exc.detail
        )
        upload.state, upload.error = FAILED, f"{exc.message}: {exc.detail or ''}"
        for rung in stream.rungs or self.settings.ladder:
            self.metrics.segments_failed.labels(rung.name).inc()
        if len(stream.segments) > stream.pipeline.next_segment:
            last = stream.segments[-1]
            stream.pipeline = stream.pipeline.resumed_at(
                len(stream.segments), last.start_s + last.duration_s
            )
        self._advance(stream)

    async def _publish(self, stream: Stream, upload: Upload, seg: PublishedSegment) -> None:
        async with stream.lock:
            if seg.sequence < len(stream.segments):
                return  # published before a restart
            now = self.clock.wall_s()
            if stream.start_wall_s is None:
                source_s = (upload.source or {}).get("durationS") or seg.duration_s
                stream.start_wall_s = min(now, upload.received_wall_s) - source_s
            if not stream.rungs:
                stream.rungs, stream.frame_rate = seg.ladder, seg.frame_rate
            stream.segments.append(Segment.published(seg, now))
            stream.updated_wall_s = now
            # Viewers see it now (playlists are served from RAM); the disk follows.
            self._render_playlists(stream)
            delay_s = self.clock.wall_s() - upload.received_wall_s
            stream.publish_delay_s = round(delay_s, 3)
            self.metrics.publish_delay.observe(delay_s)
            for rung in seg.rungs:
                self.metrics.segments_published.labels(rung.name).inc()
            await asyncio.gather(self._warm_cache(stream, seg), self._persist(stream))
            await self._store_playlists(stream)
        log.info(
            "%s segment %d published (%.3f s at %.3f s) %.0f ms after upload %d arrived",
            stream.video_id,
            seg.sequence,
            seg.duration_s,
            seg.start_s,
            1000 * delay_s,
            upload.number,
            extra={
                "stream": stream.video_id,
                "segment": seg.sequence,
                "upload": upload.number,
                "publish_delay_ms": round(1000 * delay_s),
            },
        )

    async def _warm_cache(self, stream: Stream, seg: PublishedSegment) -> None:
        keys = [
            layout.segment_key(stream.video_id, packaging, r.name, seg.sequence)
            for packaging in layout.PACKAGINGS
            for r in seg.rungs
        ]
        keys += [layout.init_key(stream.video_id, r.name, r.init) for r in seg.rungs]
        datas = await asyncio.gather(*(self.store.get(k) for k in keys))
        for key, data in zip(keys, datas, strict=True):
            self.cache.put(key, data)

    def _render_playlists(self, stream: Stream) -> None:
        """Served from RAM at once (the disk copies follow in `_store_playlists`)."""
        rendered = render_all(stream, self.settings.segment_duration_s)
        stream.playlists = {key: text.encode() for key, text in rendered.items()}
        for listener in self.listeners:
            listener(stream)

    async def _write_playlists(self, stream: Stream) -> None:
        self._render_playlists(stream)
        await self._store_playlists(stream)

    async def _store_playlists(self, stream: Stream) -> None:
        # Media playlists go before the masters that name them.
        for key, body in stream.playlists.items():
            await self.store.put(key, body)

    async def _persist(self, stream: Stream) -> None:
        data = json.dumps(stream.to_json(), separators=(",", ":")).encode()
        await self.store.put(layout.manifest_key(stream.video_id), data)

    def incoming_dir(self) -> Path:
        path = self.config.data_dir / ".incoming"
        path.mkdir(parents=True, exist_ok=True)
        return path
