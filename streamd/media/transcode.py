"""A transcode job, as run inside a worker process: one upload through the stream pipeline.

The job carries everything it needs (store spec, pipeline state, settings), so any worker,
here or on another machine, can run it; the result carries the state for the next upload.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import time
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.filter
from av.bitstream import BitStreamFilterContext

from streamd.errors import UnsupportedMedia
from streamd.media.alternate import EARLY_KEPT, LiveAlternates
from streamd.media.codecs.h264 import has_sps
from streamd.media.output import Report, SegmentWriter
from streamd.media.pieces import PieceReader
from streamd.media.pipeline import StreamPipeline
from streamd.media.probe import describe, open_live, open_media, stored_source, time_s, video_span
from streamd.media.scale import RungPictures, thumbnail
from streamd.media.subtitles import (
    ClosedCaptions,
    Cue,
    SubtitleReader,
    language,
    text_streams,
)
from streamd.model import layout
from streamd.model.jobs import (
    LAG,
    JobProgress,
    LiveSource,
    MediaLimits,
    Piece,
    SourceInfo,
    TranscodeJob,
    TranscodeResult,
)
from streamd.model.pipeline import AUDIO_HZ, TIMELINE_ORIGIN_S, VIDEO_HZ, audio_sample_at
from streamd.package import EncodedPacket
from streamd.store import Store, open_store

log = logging.getLogger("streamd.media.transcode")


class _Upload:
    """One upload going through the pipeline: timestamps rebased onto the stream's timeline."""

    def __init__(
        self,
        number: int,
        video_id: str,
        store: Store,
        pipeline: StreamPipeline,
        publisher: SegmentWriter,
        span: tuple[Fraction, Fraction] | None,
        limits: MediaLimits,
        piece: Piece | None = None,
    ) -> None:
        self.number, self.video_id, self.store = number, video_id, store
        self.piece = piece
        self.limits = limits
        self.pipeline, self.publisher = pipeline, publisher
        # A live session (no span) starts at its first frame and lasts until its pipe ends.
        self.live = span is None
        self.first_s, end_s = span or (Fraction(0), Fraction(0))
        self.duration_s = float(end_s - self.first_s)
        self.early_audio: list[av.AudioFrame] | None = [] if self.live else None
        # Live H.264: its own packets, in Annex B, may be the top rung as they came.
        self.passing: BitStreamFilterContext | None = None
        self.in_band_sps: bool | None = False  # live: its IDRs carry SPS/PPS (None: not seen)
        self.early_packets: list[av.Packet[Any]] = []
        self.lag: mmap.mmap | None = None  # live: how long its bytes wait for this worker
        self.start_90k = pipeline.state.video_pts_90k
        if piece is not None:  # planned to end where the next piece begins
            self.duration_s = (piece.end_90k - self.start_90k) / VIDEO_HZ
        self.resampler = av.AudioResampler(format="fltp", layout="stereo", rate=48_000)
        self.pictures: RungPictures | None = None
        self.rotation_deg = 0
        self.last_pts = self.start_90k - 1
        self.audio_started = False
        self.frames = 0
        publisher.upload, publisher.progress = number, 0.0
        self.subtitles = SubtitleReader(self._stream_s, self._ours)
        self.closed_captions = ClosedCaptions(self._stream_s)
        # A live session's further audio tracks: alternate languages, encoded with the main.
        self.alternates = LiveAlternates(pipeline, self._at_90k)
        self.audio_streams: list[tuple[int, int, str, str, float]] = []

    def _stream_s(self, t: Fraction) -> float:
        """A source time on the stream's timeline (seconds from its start)."""
        return (self.start_90k + float(t - self.first_s) * VIDEO_HZ) / VIDEO_HZ - TIMELINE_ORIGIN_S

    def _ours(self, t: Fraction) -> bool:
        """Whether a subtitle at source time `t` is this upload's (a piece's own stretch)."""
        piece = self.piece
        return piece is None or (piece.from_s <= t and (piece.last or t < piece.to_s))

    def _at_90k(self, frame: av.VideoFrame | av.AudioFrame) -> int | None:
        t = time_s(frame.pts, frame.time_base)
        return None if t is None else self.start_90k + round((t - self.first_s) * VIDEO_HZ)

    def begin(self, info: SourceInfo, first: av.VideoFrame) -> None:
        if self.live:
            self.first_s = time_s(first.pts, first.time_base) or Fraction(0)
            self.publisher.report(JobProgress(self.number, 0.0, source=info))
        duration_s = None if self.live else self.duration_s
        # 8-bit 4:2:0 only: what every player decodes (High 10, 4:2:2 and 4:4:4 are not).
        passes = (
            self.passing is not None
            and self.in_band_sps is True
            and first.format.name in ("yuv420p", "yuvj420p")
        )
        passthrough_bps = (info.bitrate_bps or 0) if passes else None
        self.pipeline.begin_upload(
            self.number,
            duration_s,
            info.geometry,
            info.frame_rate,
            passthrough_bps,
            None if self.piece is None else self.piece.segments,
        )
        self.rotation_deg = info.geometry.rotation_deg
        early_packets, self.early_packets = self.early_packets, []
        for packet in early_packets:
            self.source_packet(packet)
        early, self.early_audio = self.early_audio or [], None
        for frame in early:  # what came before it is trimmed to the picture's time
            self.audio(frame)
        self.alternates.begin()

    @property
    def late_s(self) -> float:
        """Live: how long the bytes in hand waited for this worker (the server says)."""
        return LAG.unpack_from(self.lag)[0] if self.lag is not None else 0.0

    def source_packet(self, packet: av.Packet[Any]) -> None:
        """A live source's own video packet (Annex B), on the output timeline."""
        if not self.pipeline.encoders:  # before the first picture: it sets the timeline
            self.early_packets = [*self.early_packets[-EARLY_KEPT:], packet]
            return
        tb = packet.time_base
        pts = packet.pts if packet.pts is not None else packet.dts
        if pts is None or tb is None:
            return
        dts = packet.dts if packet.dts is not None else pts
        at = self.start_90k - round(self.first_s * VIDEO_HZ)
        self.pipeline.source_packet(
            EncodedPacket(
                bytes(packet),
                at + round(pts * tb * VIDEO_HZ),
                at + round(dts * tb * VIDEO_HZ),
                round((packet.duration or 0) * tb * VIDEO_HZ),
                packet.is_keyframe,
            )
        )

    def video(self, frame: av.VideoFrame) -> None:
        pts = self._at_90k(frame)
        if not self.live and pts is not None and pts >= self.pipeline.upload_end_90k:
            return  # beyond the span the packets announced (or the piece): a stray frame
        if self.piece is not None and (pts is None or pts < self.start_90k):
            return  # before the piece: the one before has it
        self.closed_captions.frame(frame)  # before the scaler takes its time
        if self.live and self.closed_captions.cues:  # shown while the session goes on
            self._report_cues()
        pts = max(pts if pts is not None else 0, self.last_pts + 1)
        self.last_pts = pts
        shape = (frame.width, frame.height, frame.format.name)
        self.pipeline.plan_frame(pts, frame.key_frame)
        rungs = self.pipeline.active_rungs
        if self.pictures is None or self.pictures.shape != shape or self.pictures.rungs != rungs:
            # The first frame, a size change, or a rung left out (transcoding fell behind).
            self.limits.check_frame(frame.width, frame.height)
            self.pictures = RungPictures(frame, self.rotation_deg, rungs)
        started = time.perf_counter()
        scaled = self.pictures(frame)
        elapsed = time.perf_counter() - started
        skip = len(self.pipeline.state.rungs) - len(rungs)
        for i, share in enumerate(self.pictures.shares):
            self.publisher.rung_seconds[skip + i] += elapsed * share
        if self.frames == 0:
            self.store.put(layout.thumbnail_key(self.video_id), thumbnail(scaled[-1]))
        self.pipeline.push_video(scaled, pts, frame.key_frame)
        thumbs = self.publisher.thumbs
        if thumbs is not None and thumbs.wants(self.pipeline.open_sequence):  # its first frame
            thumbs.picture(self.pipeline.open_sequence, scaled[-1])
        self.frames += 1
        if not self.live:
            total = max(1, round(self.duration_s * VIDEO_HZ))
            self.publisher.progress = min(99.0, 100 * (pts - self.start_90k) / total)

    def _report_cues(self) -> None:
        cues, self.closed_captions.cues = tuple(self.closed_captions.cues), []
        if cues:
            self.publisher.report(JobProgress(self.number, 0.0, cues=cues))

    def audio(self, frame: av.AudioFrame | None) -> None:
        at = None
        if self.early_audio is not None:  # live, before the first picture: it sets the time
            if frame is not None:
                self.early_audio = [*self.early_audio[-EARLY_KEPT:], frame]
            return
        if frame is not None and not self.audio_started:
            at = self._at_90k(frame) or self.start_90k
            if self.piece is not None and self._before_track(frame, at):
                return  # the piece's decoding started early: audio its pre-roll needs not
            self.audio_started = True
        for out in self.resampler.resample(frame):
            self.pipeline.push_audio(out.to_ndarray(), at)
            at = None

    def _before_track(self, frame: av.AudioFrame, at_90k: int) -> bool:
        """Whether a frame ends before the audio track begins (what follows it is appended
        to it: it must be the first that reaches the track)."""
        ends = audio_sample_at(at_90k) + round(frame.samples * AUDIO_HZ / (frame.sample_rate or 1))
        return ends <= self.pipeline.audio.end

    def feed(self, source: Path | bytes | LiveSource, aac_tail: bytes) -> tuple[SourceInfo, bytes]:
        """Decode the upload into the pipeline; returns what it held and its last AAC packet
        (the next upload's decoder starts from it)."""
        info: SourceInfo | None = None
        opened = (
            open_live(source.socket_path, source.container)
            if isinstance(source, LiveSource)
            else open_media(source)
        )
        if isinstance(source, LiveSource) and source.lag_path:
            with open(source.lag_path, "rb") as f:
                self.lag = mmap.mmap(f.fileno(), LAG.size, access=mmap.ACCESS_READ)
        with opened as c:
            if not c.streams.video:
                raise UnsupportedMedia("the source has no video stream")
            vs = c.streams.video[0]
            a_s = c.streams.audio[0] if c.streams.audio else None
            tracks = self.alternates.open(list(c.streams.audio)) if self.live else ()
            self.audio_streams = [
                (self.number, s.index, language(s), s.metadata.get("title") or "", 0.0)
                for s in ([] if self.live else c.streams.audio)
            ]
            streams = [vs] if a_s is None else [vs, a_s, *self.alternates.streams]
            for st in streams:
                st.codec_context.thread_type = "AUTO"
            if self.live:  # frame threads hold a frame each: no delay, unless it has slices
                vs.codec_context.thread_type = "SLICE"
            aac = a_s is not None and a_s.codec_context.name == "aac"
            if self.live and vs.codec_context.name == "h264":
                # FLV carries AVCC: to Annex B, SPS/PPS before each IDR. MPEG-TS is Annex B
                # already (the filter passes it), with SPS/PPS in band if the encoder repeats
                # them, as x264, OBS and hardware encoders do for TS: checked at its first IDR.
                self.passing = BitStreamFilterContext("h264_mp4toannexb", vs)
                self.in_band_sps = None if c.format.name == "mpegts" else True
            if aac and aac_tail:
                assert a_s is not None
                with contextlib.suppress(av.FFmpegError):
                    a_s.codec_context.decode(av.Packet(aac_tail))
            reader = None if self.piece is None else PieceReader(self.piece, vs)
            if reader is not None:
                reader.seek(c)
            subtitles = [] if self.live else text_streams(c)
            try:
                for packet in c.demux(*streams, *subtitles):
                    if reader is not None and reader.done(packet):
                        break
                    if packet.stream in subtitles:
                        self.subtitles.packet(packet)
                        continue
                    if packet.stream in self.alternates.streams:
                        self.alternates.packet(packet)
                        continue
                    if reader is not None and reader.skip(packet):
                        continue
                    if aac and packet.stream is a_s and packet.size:
                        aac_tail = bytes(packet)
                    elif self.in_band_sps is None and packet.stream is vs and packet.is_keyframe:
                        self.in_band_sps = has_sps(bytes(packet))
                    for frame in packet.decode():
                        if isinstance(frame, av.AudioFrame):
                            self.audio(frame)
                            continue
                        assert isinstance(frame, av.VideoFrame)
                        if info is None:
                            if self.live:  # an upload's was checked by the prober
                                self.limits.check_rate(float(vs.average_rate or 0))
                            info = describe(c, frame, None if self.live else self.duration_s)
                            info = replace(info, audio_tracks=tracks)
                            self.begin(info, frame)
                        self.video(frame)
                    if self.passing is not None and packet.stream is vs:
                        # After decoding: the filter takes the packet's data for its own.
                        for annexb in self.passing.filter(packet):
                            self.source_packet(annexb)
                if reader is not None and not reader.piece.last and info is not None:
                    for frame in reader.held():
                        self.video(frame)
            except av.FFmpegError as exc:
                raise UnsupportedMedia("the upload stopped decoding", str(exc)) from exc
        if info is None:
            raise UnsupportedMedia("the upload holds no decodable video frames")
        if self.audio_started:
            self.audio(None)
        self.closed_captions.finish()
        if self.live:
            self._report_cues()
        self.subtitles.cues += self.closed_captions.cues
        self.pipeline.end_upload()
        return info, aac_tail if aac else b""


def run_job(job: TranscodeJob, report: Report) -> TranscodeResult:
    """Decode each upload once, encode every rung, publish each segment as it completes."""
    started = time.monotonic()
    store = open_store(job.store_spec)
    pipeline: StreamPipeline
    publisher = SegmentWriter(job, store, report, lambda: pipeline)
    received = {inp.upload: inp.received_wall_s for inp in job.inputs}

    def behind(upload: int) -> float:
        """How late the frame in hand is, in overload delays (a rung is left out per whole
        one): after its upload arrived, or after a live frame should have."""
        limit_s = job.overload_delay_s
        late_s = live_upload.late_s if live_upload else time.time() - received[upload]
        return late_s / limit_s if limit_s > 0 else 0.0

    pipeline = StreamPipeline(
        job.state, job.settings, publisher, job.skip_rungs, behind, on_part=publisher.part
    )
    aac_tail, media_s = job.state.input_audio_tail, 0.0
    live_upload: _Upload | None = None
    cues: list[Cue] = []
    audio_streams: list[tuple[int, int, str, str, float]] = []
    for inp in job.inputs:
        source = inp.live or stored_source(store, inp.keys)
        if inp.piece is not None:
            span: tuple[Fraction, Fraction] | None = (
                Fraction(inp.piece.from_s),
                Fraction(inp.piece.to_s),
            )
            pipeline.audio_between(None if inp.piece.last else inp.piece.end_90k)
            aac_tail = b""
        else:
            span = None if isinstance(source, LiveSource) else video_span(source)
        upload = _Upload(
            inp.upload, job.video_id, store, pipeline, publisher, span, job.limits, inp.piece
        )
        live_upload = upload if span is None else None
        info, aac_tail = upload.feed(source, aac_tail)
        cues += upload.subtitles.cues
        # Where the upload's time 0 is in its own file: its first frame's (a piece's) time.
        audio_streams += [(*a[:4], float(upload.first_s)) for a in upload.audio_streams]
        if span is None:  # a live session: as long as its frames went
            upload.duration_s = (pipeline.upload_end_90k - upload.start_90k) / VIDEO_HZ
        media_s += upload.duration_s
        log.info(
            "%s upload %d decoded: %.2f s of %dx%d %s",
            job.video_id,
            inp.upload,
            upload.duration_s,
            info.geometry.width,
            info.geometry.height,
            info.video_codec,
            extra={"stream": job.video_id, "upload": inp.upload},
        )
    state = replace(pipeline.finish(), input_audio_tail=aac_tail)
    elapsed = time.monotonic() - started
    log.info(
        "transcoded %s uploads %s: %.2f s in %.2f s (%.2fx realtime), %d segments",
        job.video_id,
        [i.upload for i in job.inputs],
        media_s,
        elapsed,
        media_s / elapsed if elapsed else 0,
        publisher.count,
        extra={
            "stream": job.video_id,
            "realtime_factor": round(media_s / elapsed, 3) if elapsed else None,
        },
    )
    rung_seconds = {
        r.name: round(publisher.rung_seconds[i] + pipeline.rung_seconds[i], 4)
        for i, r in enumerate(state.rungs)
        if i >= job.skip_rungs
    }
    return TranscodeResult(
        state,
        media_s,
        elapsed,
        publisher.count,
        rung_seconds,
        pipeline.skip_rungs,
        tuple(cues),
        tuple(audio_streams),
    )
