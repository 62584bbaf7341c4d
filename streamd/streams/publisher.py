"""Recording and announcing what was published.

A segment a worker has written becomes visible here: one transaction in the state store,
a few lines appended to each media playlist (in RAM first, so viewers see it at once, then
on disk), its bytes put in the RAM cache, and a `PlaylistChange` handed to every listener
(edge processes follow the playlists this way). Nothing here walks the stream's history.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from streamd.clock import Clock
from streamd.errors import NotFound
from streamd.manifests.hls import PlaylistChange, StreamPlaylists
from streamd.metrics import Metrics
from streamd.model import layout
from streamd.model.captions import CaptionTrack, webvtt_segment
from streamd.model.formats import FILE_FORMATS, SUBTITLES
from streamd.model.jobs import PublishedPart, PublishedSegment
from streamd.model.stream import Segment, Stream, Upload
from streamd.store import AsyncStore, SegmentCache
from streamd.store.state import StateStore

log = logging.getLogger("streamd.streams.publisher")
Listener = Callable[[PlaylistChange], None]


class Publisher:
    """Every stream's playlists, and the one way segments get into them."""

    def __init__(
        self,
        state: StateStore,
        store: AsyncStore,
        cache: SegmentCache,
        clock: Clock,
        metrics: Metrics,
        target_duration_s: float,
        dash_webm: bool = False,
        sliding: bool = False,
    ) -> None:
        self.state, self.store, self.cache = state, store, cache
        self.clock, self.metrics = clock, metrics
        self.target_duration_s = target_duration_s
        self.dash_webm = dash_webm  # the MPDs name WebM renditions (made on demand)
        self.sliding = sliding  # retention may trim live streams: their playlists slide
        self.playlists: dict[str, StreamPlaylists] = {}
        self.listeners: set[Listener] = set()
        self.segment_listeners: set[Callable[[Stream, Segment], None]] = set()  # once recorded

    def get(self, video_id: str) -> StreamPlaylists:
        """A stream's playlists (for serving); NotFound before its first segment."""
        playlists = self.playlists.get(video_id)
        if playlists is None:
            layout.check_video_id(video_id)
            raise NotFound(f"no stream {video_id!r} with published segments")
        return playlists

    async def restore(self, stream: Stream) -> None:
        """At start-up: rebuild a stream's playlists from its record and write them whole,
        so the disk agrees with the record even after a crash between the two."""
        if not stream.segments:
            return
        playlists = StreamPlaylists.of(
            stream, self.target_duration_s, self.dash_webm, self.sliding and not stream.vod
        )
        self.playlists[stream.video_id] = playlists
        for key, body in playlists.files().items():  # media playlists before masters
            await self.store.put(key, body)

    async def publish(self, stream: Stream, upload: Upload, seg: PublishedSegment) -> None:
        """Make one segment visible: recorded, in every playlist, in the cache, announced."""
        if seg.sequence < stream.next_sequence:
            return  # published before a restart
        now = self.clock.wall_s()
        if stream.start_wall_s is None and seg.ready_wall_s:  # live: when its frames came
            stream.start_wall_s = seg.ready_wall_s - seg.start_s - seg.duration_s
        elif stream.start_wall_s is None:
            source_s = (upload.source or {}).get("durationS") or seg.duration_s
            stream.start_wall_s = min(now, upload.received_wall_s) - source_s
        if not stream.rungs:
            stream.rungs, stream.frame_rate = seg.ladder, seg.frame_rate
        segment = Segment.published(seg, now, stream.discontinuity_due)
        await asyncio.gather(
            *(self.write_subtitles(stream, [segment], t) for t in stream.captions.values())
        )
        stream.discontinuity_due = False
        unnamed = [a.rendition for a in stream.alternates if not a.init]
        change = self._add(stream, segment)
        for name in unnamed:  # a live session's alternate, published for the first time
            track = stream.audio_languages[name]
            if track.init:
                await self.state.add_audio(stream.video_id, track, stream.audio_position(name))
        delay_s = now - (seg.ready_wall_s or upload.received_wall_s)
        stream.publish_delay_s = round(delay_s, 3)
        self.metrics.publish_delay.observe(delay_s)
        for rung in seg.rungs:
            self.metrics.segments_published.labels(rung.name).inc()
        await asyncio.gather(
            self.state.record(stream, segments=[segment]),
            self._warm_cache(stream.video_id, seg),
        )
        await self._write(change)
        for listener in list(self.segment_listeners):
            listener(stream, segment)
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

    def publish_part(self, stream: Stream, part: PublishedPart) -> None:
        """Make an LL-HLS part visible: in every fMP4 playlist, its bytes in RAM (here and,
        through the announcement, on every edge), its blocked requests answered. Nothing is
        written: a part lives only until its segment has been whole for a while."""
        if part.sequence < stream.next_sequence:
            return  # its segment is published already (a restart)
        if stream.start_wall_s is None:  # the stream's first frames: its wall-clock origin
            stream.start_wall_s = self.clock.wall_s() - part.segment_start_s - part.duration_s
        playlists = self._playlists(stream)
        pdt_s = stream.start_wall_s + part.segment_start_s
        self._announce(playlists.add_part(stream, part, pdt_s))
        self.metrics.parts_published.inc()

    async def publish_gap(self, stream: Stream, uploads: Sequence[int], duration_s: float) -> None:
        """Hold the place of uploads that never came: EXT-X-GAP segments of `duration_s`
        each, so the timeline (and every wall-clock time after it) stays true."""
        if not stream.segments:
            return  # nothing published yet: the stream simply starts later
        gaps = []
        for number in uploads:
            last = stream.segments[-1]
            gap = Segment(
                stream.next_sequence, last.end_s, duration_s, number, self.clock.wall_s(), ()
            )
            await self._write(self._add(stream, gap))
            gaps.append(gap)
        await self.state.record(stream, segments=gaps)
        log.warning(
            "%s: uploads %d-%d lost; %d gap segments of %.3f s published",
            stream.video_id,
            uploads[0],
            uploads[-1],
            len(gaps),
            duration_s,
        )

    def _add(self, stream: Stream, segment: Segment) -> PlaylistChange:
        """Add a segment to the record and to every playlist, and announce it: viewers see
        it now (playlists are served from RAM); the state store and the disk follow."""
        stream.add_segment(segment)
        stream.updated_wall_s = segment.published_wall_s
        playlists = self._playlists(stream)
        change = playlists.add(stream, segment)
        self._announce(change)
        return change

    def _playlists(self, stream: Stream) -> StreamPlaylists:
        playlists = self.playlists.get(stream.video_id)
        if playlists is None:
            sliding = self.sliding and not stream.vod  # a recording keeps every segment
            playlists = StreamPlaylists(
                stream.video_id, self.target_duration_s, self.dash_webm, sliding
            )
            self.playlists[stream.video_id] = playlists
        return playlists

    async def write_subtitles(
        self, stream: Stream, segments: Sequence[Segment], track: CaptionTrack
    ) -> None:
        """Each segment's WebVTT file in the track's language: the cues shown during it
        (written before a playlist names it, and again when late cues come for it)."""
        await asyncio.gather(
            *(
                self.store.put(
                    layout.segment_key(stream.video_id, SUBTITLES.name, track.lang, seg.sequence),
                    webvtt_segment(track.between(seg.start_s, seg.end_s)),
                )
                for seg in segments
                if not seg.gap
            )
        )

    async def forget_files(self, stream: Stream, segments: Sequence[Segment], lang: str) -> None:
        """Kept files that show `lang`'s subtitles (WebM for `?lang=`), made before late
        cues came for their segments: made again when next asked for."""
        audio = [None, *(a.lang for a in stream.alternates)]
        variants = [layout.file_variant(a, lang) for a in audio]
        keys = kept_file_keys(stream, segments, variants)
        await asyncio.gather(*(self.store.delete(key) for key in keys))

    async def add_track(self, stream: Stream, lang: str) -> None:
        """A new subtitle language (its segments' files written): its playlist, and the
        masters that name it."""
        playlists = self.playlists.get(stream.video_id)
        if playlists is None:
            return  # nothing published yet: the first segment makes the playlists
        change = playlists.add_track(stream, lang)
        self._announce(change)
        await self._write(change)

    async def add_audio(self, stream: Stream, rendition: str) -> None:
        """An alternate audio rendition made for more segments: its playlists take them,
        and the masters and MPD name it."""
        playlists = self.playlists.get(stream.video_id)
        if playlists is None:
            return
        change = playlists.add_audio(stream, rendition)
        self._announce(change)
        await self._write(change)

    async def retire(self, stream: Stream, first_sequence: int, due_wall_s: float) -> int:
        """Retention: the segments before `first_sequence` leave the record and every
        playlist (their files go at `due_wall_s`). How many left."""
        playlists = self.playlists.get(stream.video_id)
        if playlists is None or not playlists.sliding or stream.ended:
            return 0  # EVENT and VOD playlists only ever grow; ended ones never change
        gone = stream.retire(first_sequence, due_wall_s)
        if not gone:
            return 0
        change = playlists.trim(stream)
        self._announce(change)
        await self.state.record(stream)  # where the playlists start, before they are written
        await self._write(change)
        return len(gone)

    async def end(self, stream: Stream) -> None:
        """EXT-X-ENDLIST on every media playlist (the record says `ended` already)."""
        playlists = self.playlists.get(stream.video_id)
        if playlists is None:
            return
        change = playlists.end(stream)
        self._announce(change)
        await self._write(change)

    def remove(self, video_id: str) -> None:
        """A deleted stream's playlists: gone here and from every edge."""
        playlists = self.playlists.pop(video_id, None)
        if playlists is not None:
            self._announce(PlaylistChange(video_id, playlists.ended, removed=True))

    def _announce(self, change: PlaylistChange) -> None:
        for listener in list(self.listeners):
            listener(change)

    async def _write(self, change: PlaylistChange) -> None:
        # Media playlists go before the masters that name them.
        for key, data in change.appended.items():
            await self.store.append(key, data)
        for key, body in change.replaced.items():
            await self.store.put(key, body)

    async def _warm_cache(self, video_id: str, seg: PublishedSegment) -> None:
        outputs = (*seg.rungs, *seg.audio)
        keys = [
            layout.segment_key(video_id, packaging, r.name, seg.sequence)
            for r in outputs
            for packaging in r.size_bytes
        ]
        keys += [
            layout.init_key(video_id, packaging, r.name, init)
            for r in outputs
            for packaging, init in r.inits.items()
        ]
        datas = await asyncio.gather(*(self.store.get(k) for k in keys))
        for key, data in zip(keys, datas, strict=True):
            self.cache.put(key, data)


def kept_file_keys(
    stream: Stream, segments: Sequence[Segment], variants: Sequence[str]
) -> list[str]:
    """The files encoded from these segments' rungs when first asked for (WebM for
    /viewstream) and kept, in these language variants (`layout.file_variant`)."""
    encoded = [f.name for f in FILE_FORMATS.values() if f.encoded]
    return [
        layout.file_key(stream.video_id, fmt, out.name, seg.sequence, variant)
        for seg in segments
        for out in seg.rungs
        for fmt in encoded
        for variant in variants
    ]
