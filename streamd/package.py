"""Packaging: one encode per rung, muxed twice, as MPEG-TS and as fragmented MP4 (CMAF).

Timestamps are written as they come (absolute on the stream's timeline), so consecutive
segments join without discontinuities in either format.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av

VIDEO_HZ = 90_000
AUDIO_HZ = 48_000
AAC_CODECS = "mp4a.40.2"  # AAC-LC
FMP4_OPTIONS = {
    # frag_discont + no edit list: each fragment's tfdt is the packet's own decode time.
    "movflags": "frag_keyframe+empty_moov+default_base_moof+frag_discont"
    "+negative_cts_offsets+skip_trailer",
    "use_editlist": "0",
}


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

    @property
    def duration_s(self) -> float:
        return self.duration_90k / VIDEO_HZ


def _packet(p: EncodedPacket, stream: av.stream.Stream, hz: int) -> av.Packet[Any]:
    out = av.Packet(p.data)
    out.stream = stream
    out.time_base = Fraction(1, hz)
    out.pts, out.dts, out.duration = p.pts, p.dts, p.duration
    out.is_keyframe = p.is_keyframe
    return out


def mux(
    fmt: str,
    video: tuple[EncodedPacket, ...],
    audio: tuple[EncodedPacket, ...],
    width: int,
    height: int,
    audio_bitrate_bps: int,
) -> bytes:
    """Mux one rung's packets into `mpegts` or fragmented `mp4` bytes."""
    buf = io.BytesIO()
    options = FMP4_OPTIONS if fmt == "mp4" else {}
    with av.open(buf, "w", format=fmt, options=dict(options)) as out:
        # H.264 carries SPS/PPS in band; PyAV extracts the avcC for MP4 from the first IDR.
        vs = out.add_mux_stream("h264", width=width, height=height)
        vs.time_base = Fraction(1, VIDEO_HZ)
        # An AAC stream opened with the same settings gives the AudioSpecificConfig.
        a_s = out.add_stream("aac", rate=AUDIO_HZ, layout="stereo")
        a_s.bit_rate = audio_bitrate_bps
        a_s.time_base = Fraction(1, AUDIO_HZ)
        # Interleave by time so players (and the TS muxer) see A/V close together.
        merged = sorted(
            [(p.dts / VIDEO_HZ, 0, p) for p in video] + [(p.dts / AUDIO_HZ, 1, p) for p in audio],
            key=lambda t: (t[0], t[1]),
        )
        for _, kind, p in merged:
            if kind == 0:
                out.mux(_packet(p, vs, VIDEO_HZ))
            else:
                out.mux(_packet(p, a_s, AUDIO_HZ))
    return buf.getvalue()


def split_fmp4(data: bytes) -> tuple[bytes, bytes]:
    """Split a fragmented MP4 into its init segment (ftyp+moov) and media (moof+mdat...)."""
    pos = 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        if kind == b"moof":
            return data[:pos], data[pos:]
        if size < 8:
            break
        pos += size
    raise ValueError("no moof box in fragmented MP4 output")


def init_name(init: bytes) -> str:
    """Content-addressed init segment name, so a changed SPS never overwrites a served one."""
    return f"init-{hashlib.sha256(init).hexdigest()[:12]}.mp4"


def avc_codecs(idr: bytes) -> str:
    """RFC 6381 `avc1.PPCCLL` read from the SPS inside an Annex B access unit."""
    i = 0
    while True:
        i = idr.find(b"\x00\x00\x01", i)
        if i < 0 or i + 7 > len(idr):
            raise ValueError("no SPS in the access unit")
        if idr[i + 3] & 0x1F == 7:
            return "avc1." + idr[i + 4 : i + 7].hex()
        i += 3


def codecs_string(video_codecs: str) -> str:
    return f"{video_codecs},{AAC_CODECS}"
