"""A stream's transcode pipeline: decoded frames in, segment packets out, state kept between
uploads.

Every rung is encoded from the same frames and the same cut decisions, so all rungs share
segment boundaries and each segment starts with an IDR frame. Timestamps run on across
uploads: the state after one upload is where the next one begins.

Audio is encoded once (AAC-LC stereo 48 kHz, `codecs.aac`) and muxed into every rung.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable
from dataclasses import replace
from fractions import Fraction

import av
import numpy as np

from streamd.media.assembly import Assembly
from streamd.media.codecs.aac import AUDIO_PREROLL_FRAMES, AudioTrack
from streamd.media.codecs.h264 import PassthroughRung, RungEncoder, h264_level, open_x264
from streamd.media.parts import PartCutter
from streamd.model.ladder import Geometry, Rung, plan_ladder
from streamd.model.pipeline import (
    AAC_FRAME,
    VIDEO_HZ,
    EncodeSettings,
    PipelineState,
    aac_frame_at,
    audio_sample_at,
)
from streamd.package import EncodedPacket, PartMedia, SegmentMedia

CALM_CUTS = 3  # segments in a row on time before a live session takes a rung back
ALTERNATE_LAG = 48_000  # samples (1 s) an alternate audio language may lag the main one


class StreamPipeline:
    """Encode one stream's frames into every rung and hand out finished segments."""

    def __init__(
        self,
        state: PipelineState,
        settings: EncodeSettings,
        on_segment: Callable[[SegmentMedia], None],
        skip_rungs: int = 0,
        behind: Callable[[int], float] = lambda upload: 0.0,
        now: Callable[[], float] = time.time,
        on_part: Callable[[PartMedia], None] | None = None,
    ) -> None:
        self.state = state
        self.skip_rungs = skip_rungs
        self.first_skip = skip_rungs
        self.behind, self.now = behind, now
        self.planned = (-1, False)  # (pts, cut) decided for the frame being scaled
        self.calm_cuts = 0  # live: cuts in a row at which the session was on time
        self.settings = settings
        self.on_segment = on_segment
        self.on_part = on_part
        self.parts: PartCutter | None = None  # live sessions, when parts are asked for
        self.audio = AudioTrack(state, settings.audio_bitrate_bps)
        # A live session's other audio languages, encoded as the main audio is (`alternate`).
        self.alternates: list[AudioTrack] = []
        self.alternate_names: list[str] = []
        # By rung; None for rungs left out. A live source may be the top rung as it came.
        self.encoders: list[RungEncoder | PassthroughRung | None] = []
        self.passthrough: PassthroughRung | None = None
        self.assembly = Assembly(state.next_segment)
        self.cuts_90k: list[int] = []
        self.upload_end_90k = state.video_pts_90k
        self.frame_90k = VIDEO_HZ // 30
        self.live_segment_90k = 0  # a live session's segment length; 0 for uploads
        self.first_frame = False
        self.audio_seen = False
        self.rung_seconds: list[float] = []
        self.upload = -1
        self.upload_first_segment = 0

    # -- an upload's life: begin, frames and audio, finish ------------------------------
    def begin_upload(
        self,
        upload: int,
        duration_s: float | None,
        geometry: Geometry,
        frame_rate: float,
        passthrough_bps: int | None = None,
        segments: int | None = None,
    ) -> None:
        """Plan the cuts of an upload of this length (and, on the stream's first, the ladder);
        a live session (`duration_s` None) is cut every segment duration as frames come.
        `segments`: how many to cut it into (a recording's piece, planned beforehand).

        Uploads given to one pipeline one after another share warm encoders: their segments
        join exactly as when they arrive alone, without the encoders' start and drain.
        """
        if not self.state.rungs:
            rungs = plan_ladder(
                list(self.settings.ladder), geometry, self.settings.audio_bitrate_bps
            )
            levels = tuple(
                h264_level(r.width, r.height, frame_rate, int(r.video_bitrate_bps * 1.2))
                for r in rungs
            )
            self.state = replace(
                self.state, rungs=tuple(rungs), levels=levels, frame_rate=round(frame_rate, 3)
            )
        frame_s = 1 / frame_rate if frame_rate > 0 else 1 / 30
        start = self.state.video_pts_90k
        self.frame_90k = round(frame_s * VIDEO_HZ)
        if duration_s is None:
            self.live_segment_90k = round(self.settings.segment_duration_s * VIDEO_HZ)
            self.cuts_90k, self.upload_end_90k = [], start
            if self.settings.part_duration_s > 0 and self.on_part is not None:
                self.parts = PartCutter(self.settings.part_duration_s, frame_s, self.on_part)
        else:
            parts = segments or self.settings.segment_count(duration_s, frame_s)
            total = round(duration_s * VIDEO_HZ)
            self.cuts_90k = [start + total * i // parts for i in range(1, parts)]
            self.upload_end_90k = start + total
            self.live_segment_90k = 0
        if not self.encoders:  # warm from the previous upload of this job otherwise
            skip = len(self.state.rungs) - len(self.active_rungs)
            if (
                self.settings.passthrough
                and passthrough_bps is not None
                and skip == 0
                and PassthroughRung.fits(self.state.rungs[0], geometry, passthrough_bps)
            ):
                self.passthrough = PassthroughRung()
            self.encoders = [
                None
                if i < skip
                else RungEncoder(
                    open_x264(
                        r,
                        level,
                        frame_rate,
                        self.settings.x264_preset(self.live_segment_90k > 0),
                        self.threads(i - skip),
                        live=self.live_segment_90k > 0,
                    )
                )
                for i, (r, level) in enumerate(
                    zip(self.state.rungs, self.state.levels, strict=True)
                )
            ]
            if self.passthrough is not None:
                self.encoders[0] = self.passthrough
            self.assembly.seen_pts = [-1] * len(self.encoders)
            self.rung_seconds = [0.0] * len(self.encoders)
        self.upload = upload
        self.upload_first_segment = len(self.assembly.starts_90k)
        self._open_segment(start)
        self.first_frame = True

    def add_alternates(self, names: list[str]) -> None:
        """A live session with further audio tracks (their renditions' `names`): each is
        encoded alongside the main audio, its first AAC frame where the main's next is."""
        count = len(names)
        self.alternate_names = names
        state = replace(self.state, audio_carry=b"", audio_base_sample=self.audio.base)
        self.alternates = [AudioTrack(state, self.settings.audio_bitrate_bps) for _ in range(count)]
        for track in self.alternates:
            track.emit_from = self.audio.emit_from
        self.assembly.seen_alternates = [-1] * count
        for segment in self.assembly.alternates:
            segment.extend([] for _ in range(count))

    def push_alternate(self, k: int, samples: np.ndarray, at_90k: int | None) -> None:
        """An alternate's samples, as `push_audio`'s."""
        track = self.alternates[k]
        track.add(samples, track.end if at_90k is None else self._audio_at(at_90k))
        if self.encoders:
            self._encode_audio()

    def audio_between(self, until_90k: int | None) -> None:
        """A recording's piece, transcoded apart from the others: keep the AAC frames from
        the one at its start (frames run on the timeline's grid) to the one at `until_90k`,
        where the next piece's begin (None: to the end). Its encoder is pre-rolled with the
        audio before the piece and runs on past its end, so the frames either side of a
        join are whole, as across uploads."""
        first = aac_frame_at(self.state.video_pts_90k)
        state = replace(
            self.state,
            audio_base_sample=first - (AUDIO_PREROLL_FRAMES + 1) * AAC_FRAME,
            audio_emit_from=first,
            audio_carry=b"",
        )
        self.audio = AudioTrack(state, self.settings.audio_bitrate_bps)
        self.audio.emit_until = None if until_90k is None else aac_frame_at(until_90k)

    def source_packet(self, packet: EncodedPacket) -> None:
        """A live source's own packet, on the output timeline: the top rung, if it passes."""
        if self.passthrough is not None and self.encoders[0] is self.passthrough:
            self.passthrough.feed(packet)

    def plan_frame(self, pts_90k: int, key: bool = True) -> None:
        """Before a frame is scaled: whether a segment starts at it (`key`: the source has
        an IDR here, where a passed-through rung can be cut), and which rungs it goes to.

        Behind real time, rungs are left out from the tallest, one per overload delay late:
        at a cut the closing segment keeps the rung; within a segment, the segment loses
        it. A live session that has caught up takes one back at a cut after `CALM_CUTS`.
        """
        cut = self._cut_due(pts_90k) and (key or self.passthrough is None)
        if self.encoders:
            late = self.behind(self.assembly.uploads[-1])
            left_out = self.skip_rungs - self.first_skip
            if late >= left_out + 1 and len(self.active_rungs) > 1:
                self._leave_out_top_rung(keep_current=cut)
                self.calm_cuts = 0
            elif cut and self.live_segment_90k and self.skip_rungs > 0:
                self.calm_cuts = self.calm_cuts + 1 if late < 0.5 else 0
                if self.calm_cuts >= CALM_CUTS:
                    self._take_back_rung()
        self.planned = (pts_90k, cut)

    def push_video(self, frames: list[av.VideoFrame], pts_90k: int, key: bool = True) -> None:
        """One source frame, scaled to every active rung, at its output time."""
        if self.planned[0] != pts_90k:
            self.plan_frame(pts_90k, key)
        cut = self.planned[1]
        if self.live_segment_90k:
            self.upload_end_90k = max(self.upload_end_90k, pts_90k + self.frame_90k)
        if cut:
            self._open_segment(pts_90k)
        elif self.parts is not None and not self.first_frame:
            self.parts.frame(self.assembly.part_starts[-1], pts_90k)
        new_segment, self.first_frame = cut or self.first_frame, False
        picture = av.video.frame.PictureType.I if new_segment else av.video.frame.PictureType.NONE
        active = [enc for enc in self.encoders if enc is not None]
        for frame, enc in zip(frames[len(frames) - len(active) :], active, strict=True):
            frame.pts = pts_90k
            frame.time_base = Fraction(1, VIDEO_HZ)
            frame.pict_type = picture
            enc.put(frame)
        for rung, running in enumerate(self.encoders):
            if running is not None:
                for p in running.take():
                    self._add_video(rung, p)
        self._encode_audio()

    def _take_back_rung(self) -> None:
        """The live session caught up: the last rung left out comes back at this cut, with a
        fresh encoder (its first picture an IDR, like every rung's at a cut)."""
        rung = self.skip_rungs - 1
        if rung == 0 and self.passthrough is not None:  # the source's own, from its IDR here
            self.passthrough = PassthroughRung()
            self.encoders[rung] = self.passthrough
        else:
            r, level = self.state.rungs[rung], self.state.levels[rung]
            frame_rate = self.state.frame_rate or 30.0
            threads = self.threads(0)  # the tallest active rung, as at the session's start
            preset = self.settings.x264_preset(live=True)
            codec = open_x264(r, level, frame_rate, preset, threads, live=True)
            self.encoders[rung] = RungEncoder(codec)
        self.skip_rungs = rung
        self.first_skip = min(self.first_skip, rung)
        self.calm_cuts = 0

    def _cut_due(self, pts_90k: int) -> bool:
        a = self.assembly
        if self.live_segment_90k:  # live: a segment duration after the segment's start
            # Passed through, a cut waits for the source's IDR: encoders that put one every
            # "2 s" often do it every 59 frames (1.967 s), which a strict 2 s would skip.
            due = self.live_segment_90k - self.frame_90k // 2
            if self.passthrough is not None:
                due = self.live_segment_90k * 9 // 10
            return pts_90k >= a.starts_90k[-1] + due
        opened = len(a.starts_90k) - self.upload_first_segment
        return opened <= len(self.cuts_90k) and pts_90k >= self.cuts_90k[opened - 1]

    def _leave_out_top_rung(self, keep_current: bool) -> None:
        """Leave the tallest rung out of the rest of this job. Its encoder is drained into
        the segments before (kept whole); the current one, unless `keep_current` (a cut:
        it is closing), loses the rung."""
        rung = len(self.state.rungs) - len(self.active_rungs)
        enc = self.encoders[rung]
        assert enc is not None
        enc.put(None)
        a = self.assembly
        for p in enc.finish():
            self._add_video(rung, p)
        if not keep_current:
            a.video[-1][rung] = []
            a.skips[-1] = rung + 1
        self.rung_seconds[rung] += enc.busy_s
        self.encoders[rung] = None
        self.skip_rungs = rung + 1

    def _encode_audio(self) -> None:
        for p in self.audio.encode_ready():
            self._add_audio(p)
        for k, track in enumerate(self.alternates):
            # A language that stops (or lags) must not hold the segments back: it is silent
            # once it is more than ALTERNATE_LAG behind the main audio.
            track.pad_to(self.audio.end - ALTERNATE_LAG)
            for p in track.encode_ready():
                self._add_alternate(k, p)
        self._release()

    def push_audio(self, samples: np.ndarray, at_90k: int | None) -> None:
        """Stereo float32 samples (2, n) starting at output time `at_90k` (None: right after
        the previous ones)."""
        self.audio_seen = True
        self.audio.add(samples, self.audio.end if at_90k is None else self._audio_at(at_90k))
        if self.encoders:  # before the first frame, audio only waits
            self._encode_audio()

    def end_upload(self) -> None:
        """The upload's frames are all in; the timeline moves to its end."""
        if not self.audio_seen:
            # A silent track keeps every segment's tracks the same; audio that merely ends
            # early is left alone, since the next upload's audio picks up from its timestamps.
            self.audio.pad_to(self._audio_at(self.upload_end_90k))
        self.audio_seen = False
        self.state = replace(self.state, video_pts_90k=self.upload_end_90k)
        self._encode_audio()

    def finish(self) -> PipelineState:
        """Drain the encoders, release the last segments, return the state to carry."""
        active = [(rung, enc) for rung, enc in enumerate(self.encoders) if enc is not None]
        for _, enc in active:
            enc.put(None)  # all drain at once
        for rung, enc in active:
            for p in enc.finish():
                self._add_video(rung, p)
            self.rung_seconds[rung] += enc.busy_s
        for p in self.audio.finish():
            self._add_audio(p)
        for k, track in enumerate(self.alternates):
            track.pad_to(self.audio.end)
            for p in track.finish():
                self._add_alternate(k, p)
        self._release(final=True)
        self.encoders, self.parts = [], None
        self.state = replace(
            self.state,
            next_segment=self.assembly.first_sequence + self.assembly.released,
            **self.audio.state(),
        )
        self.assembly = Assembly(self.state.next_segment)
        return self.state

    @property
    def active_rungs(self) -> tuple[Rung, ...]:
        """The rungs this job encodes (tallest first): all but the `skip_rungs` tallest."""
        skip = min(self.skip_rungs, len(self.state.rungs) - 1)
        return self.state.rungs[skip:]

    def threads(self, rung: int) -> int:
        """x264 threads for a rung: as configured, or (0) two for the tallest and one for the
        rest. Every rung already encodes on its own thread, so frame threads only need to
        split the tallest rung, over half the work; each frame thread holds frames of its
        own (x264's auto, 1.5 per core each, cost 135 MB more on the 1080p ladder)."""
        if self.settings.encoder_threads:
            return self.settings.encoder_threads
        return 2 if rung == 0 else 1

    # -- bookkeeping -------------------------------------------------------------------
    def _audio_at(self, pts_90k: int) -> int:
        return audio_sample_at(pts_90k)

    @property
    def open_sequence(self) -> int:
        """The segment being made."""
        a = self.assembly
        return a.first_sequence + len(a.starts_90k) - 1

    def _open_segment(self, start_90k: int) -> None:
        a = self.assembly
        if a.starts_90k and self.live_segment_90k:  # this frame closes the one before
            a.ready_wall_s.append(self.now())
        a.uploads.append(self.upload)
        a.skips.append(len(self.state.rungs) - len(self.active_rungs))
        a.starts_90k.append(start_90k)
        a.audio_starts.append(self._audio_at(start_90k))
        a.video.append([[] for _ in self.encoders])
        a.audio.append([])
        a.alternates.append([[] for _ in self.alternates])
        a.part_starts.append([start_90k])

    def _add_video(self, rung: int, p: EncodedPacket) -> None:
        a = self.assembly
        i = max(0, bisect.bisect_right(a.starts_90k, p.pts) - 1)
        a.video[i][rung].append(p)
        a.seen_pts[rung] = max(a.seen_pts[rung], p.pts)

    def _add_audio(self, p: EncodedPacket) -> None:
        a = self.assembly
        i = max(0, bisect.bisect_right(a.audio_starts, p.pts) - 1)
        a.audio[i].append(p)
        a.seen_audio = max(a.seen_audio, p.pts)

    def _add_alternate(self, k: int, p: EncodedPacket) -> None:
        a = self.assembly
        i = max(0, bisect.bisect_right(a.audio_starts, p.pts) - 1)
        a.alternates[i][k].append(p)
        a.seen_alternates[k] = max(a.seen_alternates[k], p.pts)

    def _release(self, final: bool = False) -> None:
        a = self.assembly
        if self.parts is not None:
            active = [enc is not None for enc in self.encoders]
            self.parts.release(a, active, self._audio_at, self._cut_due, self.upload_end_90k, final)
        while a.released < len(a.starts_90k):
            i = a.released
            last = i == len(a.starts_90k) - 1
            if self.parts is not None and self.parts.segment <= i:
                return  # its parts first
            if not final:
                if last:
                    return
                nxt, nxt_audio = a.starts_90k[i + 1], a.audio_starts[i + 1]
                seen = [
                    pts
                    for pts, enc in zip(a.seen_pts, self.encoders, strict=False)
                    if enc is not None
                ]
                if min(seen, default=nxt) < nxt or a.seen_audio < nxt_audio:
                    return
                if any(pts < nxt_audio for pts in a.seen_alternates):
                    return
            end = self.upload_end_90k if last else a.starts_90k[i + 1]
            self.on_segment(
                SegmentMedia(
                    sequence=a.first_sequence + i,
                    upload=a.uploads[i],
                    start_90k=a.starts_90k[i],
                    duration_90k=end - a.starts_90k[i],
                    video=tuple(tuple(v) for v in a.video[i]),
                    audio=tuple(a.audio[i]),
                    skip_rungs=a.skips[i],
                    ready_wall_s=self._ready_wall_s(i),
                    alternates=tuple(tuple(k) for k in a.alternates[i]),
                )
            )
            a.video[i], a.audio[i] = [], []
            a.alternates[i] = [[] for _ in self.alternates]
            a.released += 1
        if self.live_segment_90k and a.released > 256:
            self._compact()

    def _ready_wall_s(self, i: int) -> float:
        """When segment `i` of a live session was closed (its last frame had come): its
        publish delay counts from then, and its wall-clock time. 0 for uploads, whose
        delay counts from their arrival."""
        if not self.live_segment_90k:
            return 0.0
        a = self.assembly
        return a.ready_wall_s[i] if i < len(a.ready_wall_s) else self.now()

    def _compact(self) -> None:
        """Forget released segments (a live session's bookkeeping stays the same size at
        hour 10 as at minute 1)."""
        drop = self.assembly.forget_released()
        if self.parts is not None:
            self.parts.forget(drop)
        self.upload_first_segment -= drop
