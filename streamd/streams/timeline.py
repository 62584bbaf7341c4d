"""Where a stream's media time goes on when something breaks it: uploads that never came
or failed (EXT-X-GAP in their place), an encoder that restarted (a new timeline after
EXT-X-DISCONTINUITY, at the real time it began), a live worker that died (the time it took
with it as EXT-X-GAP). Media sequence and every PROGRAM-DATE-TIME stay true through each.

The caller holds the stream's runner lock around every call.
"""

from __future__ import annotations

import logging
import math

from streamd.clock import Clock
from streamd.model.pipeline import TIMELINE_ORIGIN_S, VIDEO_HZ
from streamd.model.stream import Stream, Upload
from streamd.store.state import StateStore
from streamd.streams.publisher import Publisher

log = logging.getLogger("streamd.streams.timeline")
# Gap segments one hole may hold at most: a sender that skips a million numbers must not
# make a million playlist entries.
MAX_GAP_UPLOADS = 30


class Timeline:
    """One stream's timeline repairs."""

    def __init__(
        self,
        stream: Stream,
        publisher: Publisher,
        state: StateStore,
        clock: Clock,
        segment_duration_s: float,
    ) -> None:
        self.stream, self.publisher, self.state, self.clock = stream, publisher, state, clock
        self.segment_duration_s = segment_duration_s

    async def skip_gap(self) -> bool:
        """Go on past missing uploads to the first one held (after `gap_timeout_s`, or at
        the end): their time becomes EXT-X-GAP segments, and the timeline resumes after."""
        stream = self.stream
        missing_from = stream.next_upload
        if missing_from is None or not stream.skip_gap():
            return False
        assert stream.next_upload is not None
        missing = range(missing_from, min(stream.next_upload, missing_from + MAX_GAP_UPLOADS))
        await self.publisher.publish_gap(stream, missing, self._upload_duration_s())
        if stream.segments and stream.next_sequence > stream.pipeline.next_segment:
            stream.pipeline = stream.pipeline.resumed_at(
                stream.next_sequence, stream.segments[-1].end_s
            )
        await self.state.record(stream, pipeline=True)
        return True

    def _upload_duration_s(self) -> float:
        """How long a missing upload probably was: as long as the one before it."""
        last = self.stream.segments[-1] if self.stream.segments else None
        if last is not None and last.gap:
            return last.duration_s
        before = self.stream.uploads.get(last.upload) if last is not None else None
        source_s = (before.source or {}).get("durationS") if before is not None else None
        return float(source_s) if source_s else self.segment_duration_s

    async def new_session(self, upload: Upload) -> None:
        """The encoder restarted: the stream goes on at the real time this upload began
        (never earlier than the end of the last segment), after EXT-X-DISCONTINUITY."""
        stream = self.stream
        if not stream.segments or stream.segments[-1].upload == upload.number:
            return  # nothing before it, or begun already (before a restart of streamd)
        last_end_s = stream.segments[-1].end_s
        source_s = (upload.source or {}).get("durationS") or 0.0
        began_s = upload.received_wall_s - source_s - (stream.start_wall_s or 0.0)
        stream.pipeline = stream.pipeline.resumed_at(stream.next_sequence, max(last_end_s, began_s))
        stream.discontinuity_due = True
        await self.state.record(stream, pipeline=True)

    async def worker_lost(self, upload: Upload) -> None:
        """A live session's worker died: the time until now is EXT-X-GAP, and the next
        worker goes on after a discontinuity."""
        stream = self.stream
        last_end_s = stream.segments[-1].end_s if stream.segments else 0.0
        now_s = self.clock.wall_s() - (stream.start_wall_s or self.clock.wall_s())
        await self._lost(upload, now_s - last_end_s)
        stream.pipeline = stream.pipeline.resumed_at(stream.next_sequence, max(now_s, last_end_s))
        stream.discontinuity_due = bool(stream.segments)
        await self.state.record(stream, pipeline=True)

    async def upload_failed(self, upload: Upload) -> None:
        """An upload failed to transcode: the rest of its time (as its probe measured it,
        after what it did publish) is EXT-X-GAP, and the next upload goes on after it, so
        the uploads after it keep their times. The caller records the stream."""
        stream = self.stream
        started_s = stream.pipeline.video_pts_90k / VIDEO_HZ - TIMELINE_ORIGIN_S
        source_s = float((upload.source or {}).get("durationS") or 0.0)
        if stream.segments:
            await self._lost(upload, started_s + source_s - stream.segments[-1].end_s)
        if stream.next_sequence > stream.pipeline.next_segment:
            last = stream.segments[-1]
            stream.pipeline = stream.pipeline.resumed_at(stream.next_sequence, last.end_s)

    async def _lost(self, upload: Upload, lost_s: float) -> None:
        """`lost_s` after the last segment as EXT-X-GAP segments, at most a segment
        duration each (a target duration bounds every segment, RFC 8216 4.3.3.1)."""
        if self.stream.segments and lost_s > 0.001:
            count = math.ceil(lost_s / self.segment_duration_s)
            await self.publisher.publish_gap(self.stream, [upload.number] * count, lost_s / count)
