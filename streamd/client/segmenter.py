"""Cut a local recording into self-contained segments for upload, without re-encoding.

Packets are remuxed as they are: each segment starts on a video keyframe, so it decodes on
its own, and keeps the source's timestamps (the server rebases them itself).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Generator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import av.error
from av.audio.stream import AudioStream
from av.bitstream import BitStreamFilterContext
from av.packet import Packet
from av.stream import Stream
from av.video.stream import VideoStream

from streamd.client.packets import (
    decode_time_s,
    fill_missing_dts,
    shift,
    time_s,
    to_annexb,
)
from streamd.errors import UnsupportedMedia

log = logging.getLogger(__name__)

# MPEG-TS carries these natively (and HLS players expect them there); anything else
# (VP8/VP9/AV1 video, Opus/Vorbis/FLAC audio...) goes into Matroska, which takes any codec.
TS_VIDEO_CODECS = frozenset({"h264", "hevc"})
TS_AUDIO_CODECS = frozenset({"aac", "mp3", "ac3", "eac3", "mp2"})

# Length-prefixed (MP4-style) H.264/HEVC must become Annex B before it goes into MPEG-TS.
_ANNEXB_FILTERS = {"h264": "h264_mp4toannexb", "hevc": "hevc_mp4toannexb"}


@dataclass(frozen=True)
class SourceSegment:
    """One uploadable piece of a recording: a standalone container holding a few seconds."""

    index: int
    data: bytes
    start_s: float
    duration_s: float
    extension: str

    @property
    def size_bytes(self) -> int:
        return len(self.data)

    @property
    def filename(self) -> str:
        """The name the server gets as a hint of the container, e.g. ``seg3.ts``."""
        return f"seg{self.index}.{self.extension}"


@dataclass(frozen=True)
class SegmentContainer:
    """Which muxer a recording's segments are written with, and their file extension."""

    format_name: str
    extension: str


MPEGTS = SegmentContainer("mpegts", "ts")
MATROSKA = SegmentContainer("matroska", "mkv")


def container_for(video_codec: str, audio_codec: str | None) -> SegmentContainer:
    """Pick the segment container that can carry these codecs (MPEG-TS when it can)."""
    if video_codec in TS_VIDEO_CODECS and (audio_codec is None or audio_codec in TS_AUDIO_CODECS):
        return MPEGTS
    return MATROSKA


def media_duration_s(path: str | Path) -> float | None:
    """How long a recording is (its video track when known), for progress reporting."""
    try:
        with av.open(str(path)) as source:
            if source.streams.video:
                video = source.streams.video[0]
                if video.duration is not None and video.time_base is not None:
                    return float(video.duration * video.time_base)
            if source.duration is not None:
                return float(source.duration) / 1_000_000  # AV_TIME_BASE
    except av.error.FFmpegError:
        return None
    return None


def iter_segments(
    path: str | Path, target_duration_s: float = 2.0
) -> Generator[SourceSegment, None, None]:
    """Cut a recording into keyframe-aligned segments of about `target_duration_s` each.

    A segment starts at the first video keyframe at or after each multiple of the target
    (counted from the first keyframe); audio goes with the segment whose time range holds
    its pts. Memory stays bounded by a segment or two, not the file.
    """
    if target_duration_s <= 0:
        raise ValueError(f"target_duration_s must be positive, got {target_duration_s}")
    try:
        source = av.open(str(path))
    except OSError:
        raise  # a missing or unreadable file is not a media problem (PyAV's are OSErrors)
    except av.error.FFmpegError as exc:
        raise UnsupportedMedia(f"cannot read {path} as media", str(exc)) from exc
    with source:
        if not source.streams.video:
            raise UnsupportedMedia(f"{path} has no video stream", "streamd segments need video")
        video = source.streams.video[0]
        audio = source.streams.audio[0] if source.streams.audio else None
        if video.time_base is None:
            raise UnsupportedMedia(f"{path}: its video stream has no time base")
        container = container_for(_codec_name(video), _codec_name(audio) if audio else None)
        _check_muxable(container, video, audio)
        cutter = _Cutter(video.time_base, _frame_ticks(video), target_duration_s, audio is not None)
        remuxer = _Remuxer(video, audio, container)
        index = 0
        packets = source.demux(*[s for s in (video, audio) if s is not None])
        try:
            for packet in packets:
                for segment in cutter.feed(packet):
                    yield remuxer.write(index, segment)
                    index += 1
            for segment in cutter.finish():
                yield remuxer.write(index, segment)
                index += 1
        except av.error.FFmpegError as exc:
            raise UnsupportedMedia(f"cannot remux {path}", str(exc)) from exc


def _check_muxable(
    container: SegmentContainer, video: VideoStream, audio: AudioStream | None
) -> None:
    # Fail before reading anything when the codecs can't be copied (FFmpeg reads any text
    # file as "ansi" video, for one).
    with av.open(io.BytesIO(), "w", format=container.format_name) as out:
        for stream in (video, audio):
            if stream is None:
                continue
            try:
                out.add_stream_from_template(stream, opaque=True)
            except ValueError as exc:
                raise UnsupportedMedia(
                    f"cannot copy {_codec_name(stream)} {stream.type} into segments", str(exc)
                ) from exc


def _codec_name(stream: Stream) -> str:
    # The codec's own name, not its decoder's ("mp3", not "mp3float"; "av1", not "libdav1d").
    return str(stream.codec_context.codec.canonical_name)


def _frame_ticks(video: VideoStream) -> int:
    rate = video.average_rate or video.guessed_rate or video.base_rate
    if rate and video.time_base:
        return max(1, round(1 / (rate * video.time_base)))
    return 1


@dataclass
class _Segment:
    """Packets collected for one segment, with its bounds in video time-base ticks."""

    start_pts: int
    video: list[Packet[Stream]] = field(default_factory=list)
    audio: list[Packet[Stream]] = field(default_factory=list)
    # Known once the next segment's keyframe shows up; None for the last segment.
    end_pts: int | None = None
    # Where the last frame stops showing: the end of the last segment.
    video_end_pts: int = 0

    @property
    def duration_ticks(self) -> int:
        end = self.end_pts if self.end_pts is not None else self.video_end_pts
        return end - self.start_pts


class _Cutter:
    """Decides, packet by packet in demux order, where segments start and what they hold."""

    def __init__(
        self, video_tb: Fraction, frame_ticks: int, target_duration_s: float, has_audio: bool
    ) -> None:
        self.video_tb = video_tb
        self.frame_ticks = frame_ticks
        self.target_ticks = Fraction(target_duration_s) / video_tb
        # A keyframe within half a frame of a grid point counts as on it: timestamps in
        # coarse time bases (Matroska's milliseconds) are rounded.
        self.tolerance_ticks = Fraction(frame_ticks, 2)
        self.has_audio = has_audio
        self.origin_pts = 0
        self.grid_index = 1
        self.current: _Segment | None = None
        # Cut already, but audio interleaved a little behind the video may still belong to
        # it; it is let go once audio passes its end, or when the next one is cut.
        self.closing: _Segment | None = None
        # Audio before the first keyframe: it goes in segment 0.
        self.early_audio: list[Packet[Stream]] = []
        # Audio past the next grid point, interleaved ahead of the video: which segment
        # holds it is known once the keyframe that cuts there shows up.
        self.undecided_audio: list[Packet[Stream]] = []
        self.open_gop_warned = False

    def _next_cut_pts(self) -> Fraction:
        return self.origin_pts + self.grid_index * self.target_ticks - self.tolerance_ticks

    def feed(self, packet: Packet[Stream]) -> list[_Segment]:
        """Place one packet; returns the segments it completed."""
        if packet.pts is None or packet.size == 0:
            return []  # demuxer flush packets, or nothing to place on the timeline
        if packet.stream.type == "video":
            return self._feed_video(packet, packet.pts)
        return self._feed_audio(packet)

    def _feed_video(self, packet: Packet[Stream], pts: int) -> list[_Segment]:
        done: list[_Segment] = []
        if self.current is None:
            if not packet.is_keyframe:
                log.warning("dropping video before the first keyframe (pts %d)", pts)
                return done
            self.origin_pts = pts
            self.current = _Segment(start_pts=pts, audio=self.early_audio)
        elif packet.is_keyframe and pts >= self._next_cut_pts():
            done += self._cut(pts)
        elif pts < self.current.start_pts and not self.open_gop_warned:
            # A picture shown before the keyframe that starts its segment references the
            # previous segment (open GOP): decoded alone, the segment drops it.
            log.warning(
                "open GOP: frames before each cut need the previous segment and will be"
                " lost when segments are decoded alone; encode with closed GOPs"
            )
            self.open_gop_warned = True
        assert self.current is not None
        duration = packet.duration or self.frame_ticks
        self.current.video_end_pts = max(self.current.video_end_pts, pts + duration)
        self.current.video.append(packet)
        return done

    def _cut(self, pts: int) -> list[_Segment]:
        done: list[_Segment] = []
        ended = self.current
        assert ended is not None
        ended.end_pts = pts
        self.current = _Segment(start_pts=pts)
        cut_s = pts * self.video_tb
        for packet in self.undecided_audio:
            (ended if time_s(packet) < cut_s else self.current).audio.append(packet)
        self.undecided_audio = []
        if self.closing is not None:
            done.append(self.closing)
            self.closing = None
        if self.has_audio:
            self.closing = ended
        else:
            done.append(ended)
        # Sparse keyframes may jump several grid points at once.
        while pts >= self._next_cut_pts():
            self.grid_index += 1
        return done

    def _feed_audio(self, packet: Packet[Stream]) -> list[_Segment]:
        if self.current is None:
            self.early_audio.append(packet)
            return []
        at_s = time_s(packet)
        done: list[_Segment] = []
        closing = self.closing
        if closing is not None and closing.end_pts is not None:
            if at_s < closing.end_pts * self.video_tb:
                closing.audio.append(packet)
                return done
            done.append(closing)  # audio has moved past its end: nothing more comes for it
            self.closing = None
        if at_s >= self._next_cut_pts() * self.video_tb:
            self.undecided_audio.append(packet)
        else:
            self.current.audio.append(packet)
        return done

    def finish(self) -> list[_Segment]:
        """The segments still held once the source has no more packets."""
        if self.current is not None:
            self.current.audio += self.undecided_audio
        self.undecided_audio = []
        done = [s for s in (self.closing, self.current) if s is not None]
        self.closing = self.current = None
        return done


class _Remuxer:
    """Writes collected packets into one standalone container per segment."""

    def __init__(
        self, video: VideoStream, audio: AudioStream | None, container: SegmentContainer
    ) -> None:
        assert video.time_base is not None
        self.video = video
        self.video_tb: Fraction = video.time_base
        self.audio = audio
        self.container = container
        self.annexb_filter = self._annexb_filter_name()
        # One shift for the whole recording, so timestamps stay consistent across segments;
        # nonzero only when the source starts below zero (MP4 B-frame dts, AAC/Opus
        # priming), which each segment's muxer would otherwise shift in segment 0 alone.
        self.offset_s: Fraction | None = None

    def _annexb_filter_name(self) -> str | None:
        name = _codec_name(self.video)
        if self.container is not MPEGTS or name not in _ANNEXB_FILTERS:
            return None
        extradata = self.video.codec_context.extradata or b""
        # avcC/hvcC extradata starts with configurationVersion 1, Annex B with a start code.
        return _ANNEXB_FILTERS[name] if extradata[:1] == b"\x01" else None

    def _offset_for(self, segment: _Segment) -> Fraction:
        if self.offset_s is None:
            earliest = Fraction(0)
            for packet in (*segment.video, *segment.audio):
                for ts in (packet.pts, packet.dts):
                    if ts is not None:
                        earliest = min(earliest, ts * packet.time_base)
            self.offset_s = -earliest
            if self.offset_s:
                log.info("source starts at %.3f s: all timestamps move up by that", earliest)
        return self.offset_s

    def write(self, index: int, segment: _Segment) -> SourceSegment:
        """Mux one segment into its own container."""
        fill_missing_dts(segment.video)
        offset_s = self._offset_for(segment)
        buffer = io.BytesIO()
        # mpegts_copyts: write the timestamps given, with no muxing delay added.
        options = {"mpegts_copyts": "1"} if self.container is MPEGTS else {}
        with av.open(buffer, "w", format=self.container.format_name, options=options) as out:
            # opaque=True copies the stream as-is: no encoder for the codec is needed.
            out_video = out.add_stream_from_template(self.video, opaque=True)
            packets: list[tuple[Packet[Stream], Stream]] = []
            if self.annexb_filter:
                # Also gives the output stream the filter's Annex B parameters.
                annexb = BitStreamFilterContext(self.annexb_filter, self.video, out_video)
                packets += [(p, out_video) for p in to_annexb(segment.video, annexb)]
            else:
                packets += [(p, out_video) for p in segment.video]
            if self.audio is not None:
                out_audio = out.add_stream_from_template(self.audio, opaque=True)
                packets += [(p, out_audio) for p in segment.audio]
            # Hand the muxer packets in decode order across streams, as a demuxer would.
            packets.sort(key=lambda item: decode_time_s(item[0]))
            for packet, stream in packets:
                shift(packet, offset_s)
                packet.stream = stream
                out.mux(packet)
        return SourceSegment(
            index=index,
            data=buffer.getvalue(),
            start_s=float(segment.start_pts * self.video_tb + offset_s),
            duration_s=float(segment.duration_ticks * self.video_tb),
            extension=self.container.extension,
        )
