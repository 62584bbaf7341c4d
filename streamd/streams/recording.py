"""A recording uploaded whole: its pieces transcoded on every worker at once, its segments
published in order as soon as the ones before them are (viewers start before it is done).

The pieces were planned when it arrived (`streamd.model.recording`): each job knows where
its piece sits on the timeline and which segment numbers it writes, so pieces finish in any
order. A segment that comes before its turn waits here; a piece that fails leaves EXT-X-GAP
segments in its place, and the rest of the recording is published around it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from streamd.errors import StreamdError
from streamd.model.jobs import JobInput, PublishedSegment, TranscodeJob, TranscodeResult
from streamd.model.pipeline import PipelineState
from streamd.model.recording import PlannedPiece
from streamd.model.stream import FAILED, PUBLISHED, TRANSCODING, Upload
from streamd.streams.audio import audio_of
from streamd.streams.captions import subtitles_of

if TYPE_CHECKING:
    from streamd.streams.runner import StreamRunner

log = logging.getLogger("streamd.streams.recording")


@dataclass(frozen=True)
class _Gap:
    """A segment of a failed piece: published as EXT-X-GAP in its turn."""

    upload: int
    duration_s: float


def plan_of(upload: Upload) -> PlannedPiece:
    assert upload.source is not None
    return PlannedPiece.from_json(upload.source["piece"])


async def transcode_recording(runner: StreamRunner, pieces: list[Upload]) -> None:
    """Every piece of a recording, as many at once as there are workers."""
    stream = runner.stream
    waiting: dict[int, tuple[Upload, PublishedSegment] | _Gap] = {}
    now = runner.clock.wall_s()
    stream.transcode_wall_s = (now, None)

    async def publish_ready() -> None:
        async with runner.lock:
            while (ready := waiting.pop(stream.next_sequence, None)) is not None:
                if isinstance(ready, _Gap):
                    await runner.publisher.publish_gap(stream, [ready.upload], ready.duration_s)
                else:
                    await runner.publisher.publish(stream, *ready)

    async def publish(upload: Upload, segment: PublishedSegment) -> None:
        waiting[segment.sequence] = (upload, segment)
        await publish_ready()

    slots = asyncio.Semaphore(max(1, runner.jobs.transcoders))

    async def run(upload: Upload) -> TranscodeResult | StreamdError | None:
        plan = plan_of(upload)
        async with slots:
            if runner.stopping:  # the stream is being deleted: no more pieces
                return None
            stream.set_state(upload, TRANSCODING)
            state = PipelineState(next_segment=plan.first_segment, video_pts_90k=plan.start_90k)
            job = TranscodeJob(
                stream.video_id,
                (JobInput(upload.number, upload.keys, upload.received_wall_s, piece=plan.piece),),
                state,
                replace(runner.settings, previews_window_s=0.0),  # a recording keeps all
                runner.store_spec,
                publish_from=max(plan.first_segment, stream.next_sequence),
                limits=runner.limits,
                timeout_s=runner.upload_timeout_s * plan.piece.segments,
                background=True,  # below every live stream's work
                protection=stream.protection,
            )
            result = await runner.run_job(job, {upload.number: upload}, publish)
        if isinstance(result, StreamdError):  # its place is kept, as gaps
            log.error(
                "%s: piece %d of the recording failed: %s (%s)",
                stream.video_id,
                upload.number,
                result.message,
                result.detail,
            )
            stream.set_state(upload, FAILED)
            upload.error = f"{result.message}: {result.detail or ''}"
            published = {s for s, w in waiting.items() if not isinstance(w, _Gap)}
            each_s = plan.duration_s / plan.piece.segments
            for sequence in range(plan.first_segment, plan.first_segment + plan.piece.segments):
                if sequence >= stream.next_sequence and sequence not in published:
                    waiting[sequence] = _Gap(upload.number, each_s)
        else:
            stream.set_state(upload, PUBLISHED)
            upload.percent = 100.0
        await publish_ready()
        if isinstance(result, TranscodeResult):
            await subtitles_of(runner, result)
            await audio_of(runner, result)
        return result

    todo = [u for u in pieces if _unpublished(u, stream.next_sequence)]
    results = await asyncio.gather(*(run(u) for u in todo))
    if runner.stopping:
        return
    async with runner.lock:
        for upload in pieces:
            if upload not in todo:  # published whole before a restart
                stream.set_state(upload, PUBLISHED)
        done = [r for r in results if isinstance(r, TranscodeResult)]
        if done:
            last = done[-1]
            stream.pipeline = replace(last.state, next_segment=stream.next_sequence)
            media_s = sum(r.media_duration_s for r in done)
            elapsed_s = runner.clock.wall_s() - now
            stream.realtime_factor = round(media_s / elapsed_s, 3) if elapsed_s else None
        stream.transcode_wall_s = (now, runner.clock.wall_s())
        assert stream.next_upload is not None
        stream.next_upload += len(pieces)
        stream.refresh_states()
        stream.updated_wall_s = runner.clock.wall_s()
        await runner.state.record(stream, uploads=pieces, pipeline=True)
    log.info(
        "%s: recording transcoded, %d pieces, %d segments, %.1f s",
        stream.video_id,
        len(pieces),
        stream.next_sequence,
        stream.duration_s,
    )


def _unpublished(upload: Upload, published: int) -> bool:
    plan = plan_of(upload)
    return plan.first_segment + plan.piece.segments > published
