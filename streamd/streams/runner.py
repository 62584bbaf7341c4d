"""Running one stream's uploads through the job queue, strictly in number order.

Each stream has one runner task: an upload is transcoded only after the one before it (its
timeline starts where that one's ended), a backlog goes as one job through warm encoders,
a missing upload is waited for (then skipped), and a failed one is marked and passed over.
What comes back is handed to the publisher segment by segment, as the worker writes it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

from streamd.clock import Clock
from streamd.config import IngestConfig
from streamd.errors import (
    SegmentConflict,
    StreamdError,
    TranscodeError,
    WorkerCrashed,
)
from streamd.jobs import JobQueue
from streamd.metrics import Metrics
from streamd.model.jobs import (
    JobInput,
    JobProgress,
    LiveSource,
    MediaLimits,
    PublishedSegment,
    TranscodeJob,
    TranscodeResult,
)
from streamd.model.pipeline import EncodeSettings
from streamd.model.stream import (
    FAILED,
    HELD,
    PUBLISHED,
    QUEUED,
    RECORDING,
    TRANSCODING,
    Stream,
    Upload,
)
from streamd.store.state import StateStore
from streamd.streams.audio import audio_of, catch_up, live_tracks
from streamd.streams.captions import add_cues, subtitles_of
from streamd.streams.live import LiveFeed, LiveSessions
from streamd.streams.overload import Overload
from streamd.streams.publisher import Publisher
from streamd.streams.recording import transcode_recording
from streamd.streams.timeline import Timeline

log = logging.getLogger("streamd.streams.runner")
Publish = Callable[[Upload, PublishedSegment], Awaitable[None]]
# Queued uploads one job may take: enough to keep the encoders warm through a backlog,
# few enough that a failure costs little to retry one by one.
MAX_UPLOADS_PER_JOB = 8


class StreamRunner:
    """One stream's uploads, in order; `lock` guards its record against interleaved
    changes, `wake` says there is new work."""

    def __init__(
        self,
        stream: Stream,
        *,
        state: StateStore,
        publisher: Publisher,
        jobs: JobQueue,
        settings: EncodeSettings,
        store_spec: str,
        clock: Clock,
        metrics: Metrics,
        gap_timeout_s: float,
        limits: MediaLimits,
        upload_timeout_s: float,
        ingest: IngestConfig,
        live_dir: Path,
        overload_delay_s: float = 0.0,
    ) -> None:
        self.stream = stream
        self.state, self.publisher, self.jobs = state, publisher, jobs
        self.settings, self.store_spec = settings, store_spec
        self.clock, self.metrics = clock, metrics
        self.gap_timeout_s = gap_timeout_s
        self.limits = limits
        self.upload_timeout_s = upload_timeout_s
        self.overload = Overload(stream, metrics, overload_delay_s)
        self.timeline = Timeline(stream, publisher, state, clock, settings.segment_duration_s)
        self.lock = asyncio.Lock()
        self.audio_lock = asyncio.Lock()  # alternate audio is made one job at a time
        self.background: set[asyncio.Task[None]] = set()
        self.wake = asyncio.Event()
        self.init_arrived = asyncio.Event()  # ffmpeg's fMP4 init.mp4, for its .m4s uploads
        if stream.ingest_init:
            self.init_arrived.set()
        self.task: asyncio.Task[None] | None = None
        self.stopping = False  # finish the job in hand, publish nothing more, then stop
        self.ingest = ingest
        self.live = LiveSessions(stream.video_id, live_dir, ingest.takeover_after_s)

    # -- what ingest calls -----------------------------------------------------------------
    def existing_upload(self, number: int, sha256: str) -> Upload | None:
        """The same upload received before (a retry), or None; raises on a conflict."""
        stream = self.stream
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

    async def add_upload(self, upload: Upload) -> None:
        """Record an accepted upload (already stored) and wake the runner. Under `lock`."""
        stream = self.stream
        self.live.ended = False
        if stream.next_upload is None:
            stream.next_upload = upload.number
        upload.state = HELD
        stream.add_upload(upload)
        if stream.end_after is not None and upload.number >= stream.end_after:
            stream.ending = True
        stream.refresh_states()
        stream.updated_wall_s = self.clock.wall_s()
        await self.state.record(stream, uploads=list(stream.pending.values()))
        self.start()

    async def start_live(self, protocol: str, container: str, peer: str) -> LiveFeed:
        """A publisher begins a live session: one upload that lasts as long as it sends,
        transcoded by one worker as it arrives (refused while another publisher sends)."""
        stream = self.stream
        async with self.lock:
            self.live.take_over(protocol, peer)
            number = max([*stream.uploads, (stream.next_upload or 0) - 1, -1]) + 1
            feed = await self.live.open(number, protocol, container, peer)
            upload = Upload(
                number,
                f"live:{protocol}",
                0,
                (),
                self.clock.wall_s(),
                session_start=True,
                ingest=protocol,
            )
            await self.add_upload(upload)
        log.info("%s: live session %d from %s %s", stream.video_id, number, protocol, peer)
        return feed

    async def end(self) -> None:
        """Publish what was received, then close the playlists with EXT-X-ENDLIST."""
        async with self.lock:
            if not self.stream.ending:
                self.stream.ending = True
                await self.state.record(self.stream)
        self.wake.set()

    async def end_after(self, last: int) -> None:
        """End once upload `last` has arrived: a pushed ENDLIST can overtake its segments."""
        stream = self.stream
        async with self.lock:  # the check and the mark at once: the upload may be arriving
            if stream.ending:
                return
            if last in stream.uploads or (stream.next_upload or 0) > last:
                stream.ending = True
            else:
                stream.end_after = last
            await self.state.record(stream)
        self.wake.set()

    async def add_recording(self, pieces: list[Upload]) -> None:
        """A recording uploaded whole, as its pieces (already stored): the stream ends once
        they are all published. Under `lock`."""
        stream = self.stream
        stream.next_upload = pieces[0].number
        for piece in pieces:
            stream.add_upload(piece)
        stream.end_after, stream.ending = pieces[-1].number, True
        stream.refresh_states()
        stream.updated_wall_s = self.clock.wall_s()
        await self.state.record(stream, uploads=pieces)
        self.start()

    async def set_ingest_init(self, key: str) -> None:
        self.stream.ingest_init = key
        await self.state.record(self.stream)
        self.init_arrived.set()

    # -- the task --------------------------------------------------------------------------
    def start(self) -> None:
        if self.task is None and not self.stream.ended:
            self.task = asyncio.create_task(self._run(), name=f"stream-{self.stream.video_id}")
        self.wake.set()

    async def drain(self) -> None:
        """Let the job in hand finish (its worker stops writing), publish nothing more, end
        the task: what deleting a stream needs before it removes the stream's files."""
        self.stopping = True
        self.wake.set()
        if self.task is not None:
            await self.task
        # Alternate audio being made in the background: its job ends, nothing is published.
        await asyncio.gather(*self.background, return_exceptions=True)

    async def stop(self) -> None:
        await self.live.close_all()
        for task in list(self.background):
            task.cancel()
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        stream = self.stream
        while not self.stopping:
            self.wake.clear()
            solo = stream.solo_until >= (stream.next_upload or 0)
            batch = stream.next_jobs(1 if solo else MAX_UPLOADS_PER_JOB)
            if batch and batch[0].ingest == RECORDING:  # every piece at once
                batch = stream.next_jobs(len(stream.pending))
            if batch:
                try:
                    if batch[0].ingest == RECORDING:
                        await transcode_recording(self, batch)
                        continue
                    if batch[0].session_start:
                        async with self.lock:
                            await self.timeline.new_session(batch[0])
                    await self._transcode(batch)
                except Exception as exc:  # a bug must not stop the stream for good
                    log.exception(
                        "%s uploads %s: unexpected error",
                        stream.video_id,
                        [u.number for u in batch],
                    )
                    async with self.lock:
                        await self._fail(batch, TranscodeError("internal error", repr(exc)))
                        await self.state.record(stream, uploads=batch, pipeline=True)
                continue
            if stream.ending:
                async with self.lock:
                    if await self.timeline.skip_gap():
                        continue
                    stream.ended = True  # and ENDLIST in RAM at once: the API never runs ahead
                    await self.publisher.end(stream)
                    await self.state.record(stream)
                log.info(
                    "%s ended: %d segments, %.1f s",
                    stream.video_id,
                    stream.next_sequence,
                    stream.duration_s,
                )
                return
            waiting_on_gap = stream.counts[HELD] > 0 or stream.end_after is not None
            timeout = self.gap_timeout_s if waiting_on_gap else None
            if self.live.ended and not waiting_on_gap:
                timeout = self.ingest.reconnect_window_s
            try:
                await asyncio.wait_for(self.wake.wait(), timeout)
            except TimeoutError:
                async with self.lock:
                    if self.live.ended and not waiting_on_gap:
                        log.info(
                            "%s: the publisher did not come back in %g s; ending",
                            stream.video_id,
                            self.ingest.reconnect_window_s,
                        )
                        stream.ending = True
                        continue
                    if not await self.timeline.skip_gap() and stream.end_after is not None:
                        log.warning(
                            "%s: upload %d never came, ending", stream.video_id, stream.end_after
                        )
                        stream.ending = True

    async def _transcode(self, batch: list[Upload]) -> None:
        """One job for a run of queued uploads: warm encoders carry from one to the next."""
        stream = self.stream
        by_number = {u.number: u for u in batch}
        for u in batch:
            stream.set_state(u, TRANSCODING)
        background = stream.recording
        live = batch[0].ingest != ""
        feed = self.live.feeds.get(batch[0].number)
        if live and feed is None:
            async with self.lock:  # its publisher was connected to a streamd that stopped
                await self._fail(batch, TranscodeError("the live session ended with the server"))
                await self.state.record(stream, uploads=batch, pipeline=True)
            return
        source = (
            None if feed is None else LiveSource(str(feed.path), feed.container, str(feed.lag_path))
        )
        job = TranscodeJob(
            stream.video_id,
            tuple(JobInput(u.number, u.keys, u.received_wall_s, source) for u in batch),
            stream.pipeline,
            self.settings,
            self.store_spec,
            publish_from=stream.next_sequence,
            limits=self.limits,
            timeout_s=None if live else self.upload_timeout_s * len(batch),
            skip_rungs=0 if background else stream.dropped_rungs,
            overload_delay_s=0.0 if background else self.overload.delay_s,
            background=background,
            protection=stream.protection,
        )
        try:
            result = await self.run_job(job, by_number)
            # A live session outlives its worker: a new one takes up the publisher's bytes.
            while isinstance(result, WorkerCrashed) and feed and not feed.done.is_set():
                if self.stopping:
                    break
                job = await self._live_worker_died(job, batch[0], result)
                result = await self.run_job(job, by_number)
        finally:
            if feed is not None:
                await self.live.close(batch[0].number)
        async with self.lock:
            if isinstance(result, StreamdError):
                await self._fail(batch, result)
            else:
                for u in batch:
                    stream.set_state(u, PUBLISHED)
                    u.percent = 100.0
                stream.pipeline = result.state
                stream.realtime_factor = round(result.media_duration_s / result.elapsed_s, 3)
                whole = {r.name for r in stream.rungs[result.skip_rungs :]}
                for rung, seconds in result.rung_seconds.items():
                    self.metrics.transcode_seconds.labels(rung).inc(seconds)
                    if rung in whole:  # not left out part way: its cost per second is known
                        stream.rung_cost[rung] = seconds / max(result.media_duration_s, 0.001)
                if not background and not live:
                    self.overload.after_job(batch[-1], result, self.clock.wall_s())
                self._advance(len(batch))
            await self.state.record(stream, uploads=batch, pipeline=True)
        if isinstance(result, StreamdError):
            await catch_up(self)  # what it published before it failed
        else:
            await subtitles_of(self, result)
            await audio_of(self, result)

    async def run_job(
        self,
        job: TranscodeJob,
        by_number: dict[int, Upload],
        publish: Publish | None = None,
    ) -> TranscodeResult | StreamdError:
        """Run a job, publishing its segments as the worker writes them (or handing them to
        `publish`: a recording's pieces publish in order)."""
        stream = self.stream
        progress: asyncio.Queue[JobProgress] = asyncio.Queue()
        task = asyncio.create_task(self.jobs.transcode(job, progress.put_nowait))
        try:
            while True:
                getter = asyncio.ensure_future(progress.get())
                await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    item = getter.result()
                    if item.upload in by_number:
                        by_number[item.upload].percent = item.percent
                        if item.source is not None:
                            by_number[item.upload].source = item.source.as_json()
                            if item.source.audio_tracks:
                                await live_tracks(self, item.source.audio_tracks)
                    if item.cues and not self.stopping:
                        await add_cues(self, item.cues)
                    if item.part is not None and not self.stopping:
                        self.publisher.publish_part(stream, item.part)
                    if item.segment is not None and not self.stopping:
                        upload = by_number[item.segment.upload]
                        if publish is not None:
                            await publish(upload, item.segment)
                            continue
                        async with self.lock:
                            await self.publisher.publish(stream, upload, item.segment)
                        if upload.ingest and not job.background:
                            self.overload.live_segment(item.segment)
                    continue
                getter.cancel()
                if progress.empty():
                    break
        except asyncio.CancelledError:  # the runner is stopped: so is its job
            getter.cancel()
            task.cancel()
            raise
        try:
            return task.result()
        except StreamdError as exc:
            return exc

    async def _live_worker_died(
        self, job: TranscodeJob, upload: Upload, exc: StreamdError
    ) -> TranscodeJob:
        """The job for the next worker of a live session whose worker died."""
        log.error(
            "%s: the worker of live session %d died (%s); a new one takes over",
            self.stream.video_id,
            upload.number,
            exc.detail,
        )
        async with self.lock:
            await self.timeline.worker_lost(upload)
        stream = self.stream
        return replace(job, state=stream.pipeline, publish_from=stream.next_sequence)

    def _advance(self, uploads: int = 1) -> None:
        stream = self.stream
        assert stream.next_upload is not None
        stream.next_upload += uploads
        stream.refresh_states()
        stream.updated_wall_s = self.clock.wall_s()

    async def _fail(self, batch: list[Upload], exc: StreamdError) -> None:
        """A job failed. Alone, its upload is marked failed and the stream goes on after it
        (keeping what it did publish, the rest of its time a gap); in a run, the run is
        retried one upload at a time."""
        stream = self.stream
        numbers = [u.number for u in batch]
        if len(batch) > 1:
            log.warning(
                "%s uploads %s failed together (%s); retrying one at a time",
                stream.video_id,
                numbers,
                exc.message,
            )
            for u in batch:
                stream.set_state(u, QUEUED)
                u.percent = 0.0
            stream.solo_until = batch[-1].number
            return
        upload = batch[0]
        log.error(
            "%s upload %d failed: %s (%s)", stream.video_id, upload.number, exc.message, exc.detail
        )
        stream.set_state(upload, FAILED)
        upload.error = f"{exc.message}: {exc.detail or ''}"
        for rung in stream.rungs or self.settings.ladder:
            self.metrics.segments_failed.labels(rung.name).inc()
        await self.timeline.upload_failed(upload)
        self._advance()
