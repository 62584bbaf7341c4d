"""What a packager is given (encoded packets of one segment) and what it returns, and the
PyAV muxing every container here shares. Worker-only."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

import av

from streamd.model.ladder import Rung
from streamd.model.pipeline import AUDIO_HZ, VIDEO_HZ


@dataclass(frozen=True)
class EncodedPacket:
    """An encoded access unit, in 90 kHz (video) or 48 kHz (audio) ticks."""

    data: bytes
    pts: int
    dts: int
    duration: int
    is_keyframe: bool


@dataclass(frozen=True)
class SegmentMedia:
    """Everything one output segment holds, for every rung."""

    sequence: int
    upload: int
    start_90k: int
    duration_90k: int
    video: tuple[tuple[EncodedPacket, ...], ...]  # per rung, in decode order
    audio: tuple[EncodedPacket, ...]  # shared by every rung
    skip_rungs: int = 0  # the tallest rungs left out of this segment (their video is empty)
    ready_wall_s: float = 0.0  # live: when the frame that closed it reached the worker
    alternates: tuple[tuple[EncodedPacket, ...], ...] = ()  # live: other audio languages

    @property
    def duration_s(self) -> float:
        return self.duration_90k / VIDEO_HZ


@dataclass(frozen=True)
class PartMedia:
    """An LL-HLS partial segment of a live session: a run of each rung's packets in decode
    order, and the audio of its time span. A segment's parts hold all of its packets."""

    sequence: int  # of the parent segment
    index: int  # within it, from 0
    duration_90k: int
    segment_start_90k: int
    video: tuple[tuple[EncodedPacket, ...], ...]  # per rung (empty for rungs left out)
    video_end_dts: tuple[int | None, ...]  # per rung: where the next part's video starts
    audio: tuple[EncodedPacket, ...]
    audio_end_pts: int | None
    target_s: float  # PART-TARGET
    next_begins_segment: bool  # the next part is likely the first of the next segment
    # Live: each alternate audio language's run of the part, and where its next one starts.
    alternates: tuple[tuple[EncodedPacket, ...], ...] = ()
    alternate_end_pts: tuple[int | None, ...] = ()

    @property
    def independent(self) -> bool:
        """Every rung's part starts with a keyframe (a segment's first part always does)."""
        return all(v[0].is_keyframe for v in self.video if v)


@dataclass(frozen=True)
class Packaged:
    """One rung of one segment in one container: its media bytes, and the init segment
    they need (None for self-contained formats such as MPEG-TS)."""

    media: bytes
    init: bytes | None = None
    iframe: tuple[int, int] | None = None  # (offset, length) of the first picture's bytes


class Packager(Protocol):
    def __call__(
        self, video: tuple[EncodedPacket, ...], audio: tuple[EncodedPacket, ...], rung: Rung
    ) -> Packaged: ...


def init_name(init: bytes) -> str:
    """Content-addressed init segment name, so a changed SPS never overwrites one a player
    holds."""
    return f"init-{hashlib.sha256(init).hexdigest()[:12]}.mp4"


def _packet(p: EncodedPacket, stream: av.stream.Stream, hz: int) -> av.Packet[Any]:
    out = av.Packet(p.data)
    out.stream = stream
    out.time_base = Fraction(1, hz)
    out.pts, out.dts, out.duration = p.pts, p.dts, p.duration
    out.is_keyframe = p.is_keyframe
    return out


def mux(
    fmt: str,
    options: dict[str, str],
    video: tuple[EncodedPacket, ...] | None,
    audio: tuple[EncodedPacket, ...] | None,
    rung: Rung,
) -> bytes:
    """Mux one rung's H.264 and AAC packets with FFmpeg's `fmt` muxer (None: no such track).
    Timestamps are written as they come (absolute on the stream's timeline), so consecutive
    segments join without discontinuities."""
    buf = io.BytesIO()
    merged: list[tuple[float, int, EncodedPacket, av.stream.Stream]] = []
    with av.open(buf, "w", format=fmt, options=dict(options)) as out:
        if video is not None:
            # H.264 carries SPS/PPS in band; PyAV extracts the avcC for MP4 from the first IDR.
            vs = out.add_mux_stream("h264", width=rung.width, height=rung.height)
            vs.time_base = Fraction(1, VIDEO_HZ)
            merged += [(p.dts / VIDEO_HZ, 0, p, vs) for p in video]
        if audio is not None:
            # An AAC stream opened with the same settings gives the AudioSpecificConfig.
            a_s = out.add_stream("aac", rate=AUDIO_HZ, layout="stereo")
            a_s.bit_rate = rung.audio_bitrate_bps
            a_s.time_base = Fraction(1, AUDIO_HZ)
            merged += [(p.dts / AUDIO_HZ, 1, p, a_s) for p in audio]
        # Interleave by time so players (and the TS muxer) see A/V close together.
        merged.sort(key=lambda t: (t[0], t[1]))
        for _, kind, p, stream in merged:
            out.mux(_packet(p, stream, VIDEO_HZ if kind == 0 else AUDIO_HZ))
    return buf.getvalue()
