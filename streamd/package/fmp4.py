"""Fragmented MP4 / CMAF segments (RFC 8216 3.3), one track each: a rung's video, and the
audio (shared by every rung, an HLS audio rendition and a DASH adaptation set of its own,
as DASH-IF IOP and CMAF ask). Init segments (ftyp+moov) come from FFmpeg's muxer, the media
is CMAF chunks (`cmaf`) with absolute decode times.

The media is not FFmpeg's: its mov muxer, without an edit list, starts the decode times at
the first presentation time, which presents B-frame video two frames after its audio.
"""

from __future__ import annotations

from streamd.model.ladder import Rung
from streamd.package import cmaf
from streamd.package.base import EncodedPacket, Packaged, mux

OPTIONS = {
    # frag_discont + no edit list: each fragment's tfdt is the packet's own decode time.
    "movflags": "frag_keyframe+empty_moov+default_base_moof+frag_discont"
    "+negative_cts_offsets+skip_trailer",
    "use_editlist": "0",
}


def package(
    video: tuple[EncodedPacket, ...], audio: tuple[EncodedPacket, ...], rung: Rung
) -> Packaged:
    """A rung's video (its audio is packaged once, by `package_audio`)."""
    return Packaged(cmaf.chunk(1, video), init_segment(video, rung))


def package_audio(audio: tuple[EncodedPacket, ...], rung: Rung) -> Packaged:
    """The audio of a segment, for every rung."""
    return Packaged(cmaf.chunk(1, audio, video=False), audio_init_segment(audio, rung))


def init_segment(video: tuple[EncodedPacket, ...], rung: Rung) -> bytes:
    """The init segment for video that starts with `video`'s IDR (whose SPS and PPS make its
    avcC): what FFmpeg's muxer writes before the first packet."""
    return split_fmp4(mux("mp4", OPTIONS, video[:1], None, rung))[0]


def audio_init_segment(audio: tuple[EncodedPacket, ...], rung: Rung) -> bytes:
    return split_fmp4(mux("mp4", OPTIONS, None, audio[:1], rung))[0]


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
