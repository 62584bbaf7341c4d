"""Retention: live streams keep a DVR window, and the data dir keeps within its budget.

After each publish (and every few seconds) the limits in `[retention]` are applied:
- a live stream's segments older than `dvr_window_min` leave its playlists and MPD, as do
  its oldest while it keeps more than `max_stream_bytes`;
- while all streams keep more than `max_total_bytes`, the ended streams go whole (the oldest
  first: an ended playlist never changes, RFC 8216 6.2.1), then the live streams that keep
  the most lose their oldest segments.
Trimming waits until 5% of the limit is due at once, since it writes each playlist's body
again. A segment that left the playlists stays on disk for its duration plus the
playlist's (6.2.2: a player that loaded the playlist just before may still ask for it),
then its files, its previews, the WebM files made from it, its upload and its rows go.
Recordings uploaded whole are never trimmed (a VOD playlist is whole).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
from typing import TYPE_CHECKING

from streamd.config import RetentionConfig
from streamd.model import layout
from streamd.model.audio import ALTERNATE_PREFIX, commentary_key
from streamd.model.formats import SUBTITLES
from streamd.model.stream import DONE, Segment, Stream
from streamd.streams.publisher import kept_file_keys

if TYPE_CHECKING:
    from streamd.streams.registry import Streams

log = logging.getLogger("streamd.streams.retention")
MIN_KEEP_TD = 8  # never fewer seconds than this many target durations (6.2.2 asks 3; the
# LL-HLS tail holds 6, and only the body before it is trimmed)
# Trimming writes a playlist's body whole, as long as the window: it waits until a batch is
# due (5% of a limit, at least 2 segments), so its cost per segment stays constant.
BATCH = 0.05
SWEEP_S = 2.0  # due files are looked for at least this often


class Retention:
    """Applies `[retention]` to every stream of a server."""

    def __init__(self, config: RetentionConfig, streams: Streams, target_duration_s: float):
        self.config, self.streams = config, streams
        self.min_keep_s = MIN_KEEP_TD * target_duration_s
        self.keep_s = max(config.window_s, self.min_keep_s) if config.window_s else 0.0
        self.batch_s = max(2 * target_duration_s, BATCH * self.keep_s)
        self._wake = asyncio.Event()
        self._over = False  # over max_total_bytes with nothing left to remove

    def published(self, stream: Stream, segment: Segment) -> None:
        """A publisher segment listener: look again soon."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), SWEEP_S)
            self._wake.clear()
            try:
                await self.apply()
            except Exception:  # a failed pass is logged; the next one tries again
                log.exception("retention pass failed")

    async def apply(self) -> None:
        if self.config.sliding:
            for stream in list(self.streams.records.values()):
                if self._trimmable(stream):
                    await self._trim(stream, self._first_kept(stream))
            if self.config.max_total_bytes:
                await self._total()
        for stream in list(self.streams.records.values()):
            await self._delete_due(stream)

    # -- what leaves the playlists -------------------------------------------------------------
    @staticmethod
    def _trimmable(stream: Stream) -> bool:
        return bool(stream.segments) and not stream.ended and not stream.vod

    def _first_kept(self, stream: Stream) -> int:
        """The first segment within the window and the stream's byte budget."""
        segments, end_s = stream.segments, stream.segments[-1].end_s
        first = 0
        if self.keep_s and end_s - segments[0].start_s >= self.keep_s + self.batch_s:
            first = bisect.bisect_right(segments, end_s - self.keep_s, key=lambda s: s.end_s)
        budget = self.config.max_stream_bytes
        kept = stream.kept_bytes - sum(s.size_bytes for s in segments[:first])
        if budget and kept > budget:
            first = self._drop_bytes(stream, first, kept - budget + int(BATCH * budget))
        return stream.first_sequence + first

    def _drop_bytes(self, stream: Stream, first: int, excess: int) -> int:
        """Move `first` on until `excess` bytes are dropped, keeping at least min_keep_s."""
        segments, end_s = stream.segments, stream.segments[-1].end_s
        while excess > 0 and first < len(segments) - 1:
            if end_s - segments[first + 1].start_s < self.min_keep_s:
                break
            excess -= segments[first].size_bytes
            first += 1
        return first

    async def _trim(self, stream: Stream, first_sequence: int) -> int:
        if first_sequence <= stream.first_sequence:
            return 0
        playlist_s = stream.segments[-1].end_s - stream.segments[0].start_s
        seg_s = max(s.duration_s for s in stream.segments[: first_sequence - stream.first_sequence])
        due = self.streams.clock.wall_s() + seg_s + playlist_s  # RFC 8216 6.2.2
        gone = await self.streams.publisher.retire(stream, first_sequence, due)
        if gone:
            log.info(
                "%s: %d segments left the playlists, which start at %d",
                stream.video_id,
                gone,
                stream.first_sequence,
                extra={"stream": stream.video_id},
            )
        return gone

    async def _total(self) -> None:
        """Over `max_total_bytes`: ended streams go whole, oldest first; then the live
        streams that keep the most lose their oldest segments."""
        records = self.streams.records
        total = sum(s.kept_bytes for s in records.values())
        if total <= self.config.max_total_bytes:
            self._over = False
            return
        excess = total - int((1 - BATCH) * self.config.max_total_bytes)
        ended = sorted((s for s in records.values() if s.ended), key=lambda s: s.updated_wall_s)
        for stream in ended:
            if excess <= 0:
                break
            log.warning(
                "deleting ended stream %s (%d bytes): all streams keep %d bytes, over "
                "retention.max_total_bytes",
                stream.video_id,
                stream.kept_bytes,
                total,
            )
            excess -= stream.kept_bytes
            await self.streams.delete(stream.video_id)
        live = sorted(
            (s for s in records.values() if self._trimmable(s)), key=lambda s: -s.kept_bytes
        )
        for stream in live:
            if excess <= 0:
                break
            before = stream.kept_bytes
            await self._trim(stream, stream.first_sequence + self._drop_bytes(stream, 0, excess))
            excess -= before - stream.kept_bytes
        if excess > 0 and not self._over:  # said once, until it is under again
            log.warning(
                "all streams keep %d bytes more than retention.max_total_bytes, and no more can"
                " go now (windows of %.0f s at least; recordings and live streams being made)",
                excess,
                self.min_keep_s,
            )
        self._over = excess > 0

    # -- what leaves the disk --------------------------------------------------------------
    async def _delete_due(self, stream: Stream) -> None:
        now = self.streams.clock.wall_s()
        due: list[Segment] = []
        while stream.retired and stream.retired[0][0] <= now:
            due.append(stream.retired.popleft()[1])
        if not due:
            return
        keys = [key for seg in due for key in self._keys(stream, seg)]
        uploads = self._done_uploads(stream)
        keys += [key for number in uploads for key in stream.uploads[number].keys]
        keys += [  # commentary sent for them
            commentary_key(stream.video_id, track.lang, number)
            for number in uploads
            for track in stream.alternates
        ]
        for number in uploads:
            stream.drop_upload(number)
        store, cache = self.streams.store, self.streams.publisher.cache
        for key in keys:
            cache.discard(key)  # (an edge's own RAM cache lets them age out)
        await asyncio.gather(*(store.delete(k) for k in keys))
        window_s = stream.segments[0].start_s if stream.segments else 0.0
        for track in stream.captions.values():  # cues shown only before the window
            track.drop_before(window_s)
        sequences = [s.sequence for s in due]
        await self.streams.state.forget(stream.video_id, sequences, uploads, window_s)
        self.streams.metrics.segments_deleted.inc(len(due))
        log.info(
            "%s: deleted segments %d-%d and %d uploads",
            stream.video_id,
            due[0].sequence,
            due[-1].sequence,
            len(uploads),
            extra={"stream": stream.video_id},
        )

    @staticmethod
    def _keys(stream: Stream, seg: Segment) -> list[str]:
        """Every file of a segment: each rung's in each packaging, an init segment no kept
        segment uses, its preview (and its sheet, with the sheet's last), its WebM files
        in every language."""
        vid, keys = stream.video_id, []
        first = stream.segments[0] if stream.segments else None
        variants = layout.file_variants([a.lang for a in stream.alternates], list(stream.captions))
        keys += kept_file_keys(stream, [seg], variants)
        for out in (*seg.rungs, *seg.audio):
            for packaging in out.size_bytes:
                keys.append(layout.segment_key(vid, packaging, out.name, seg.sequence))
            kept = first.rung(out.name) if first is not None else None
            alternate = out.name.startswith(ALTERNATE_PREFIX)  # one init for all its segments
            for packaging, init in out.inits.items():
                if not alternate and (kept is None or kept.inits.get(packaging) != init):
                    keys.append(layout.init_key(vid, packaging, out.name, init))
            name = f"seg{seg.sequence:06d}.webm"
            keys.append(layout.dash_webm_key(vid, f"webm-{out.name}", name))
        for lang in stream.captions:
            keys.append(layout.segment_key(vid, SUBTITLES.name, lang, seg.sequence))
        keys.append(layout.thumbnail_tile_key(vid, seg.sequence))
        if seg.sequence % layout.THUMBS_PER_SHEET == layout.THUMBS_PER_SHEET - 1:
            keys.append(layout.thumbnail_sheet_key(vid, seg.sequence // layout.THUMBS_PER_SHEET))
        return keys

    @staticmethod
    def _done_uploads(stream: Stream) -> list[int]:
        """Uploads wholly before the first kept segment (but the encoder session's first,
        which tells a restart from a retry)."""
        if not stream.segments:
            return []
        before = stream.segments[0].upload
        return [
            n
            for n, u in stream.uploads.items()
            if n < before and u.state in DONE and n != stream.session_base
        ]
