"""MPEG-TS segments (RFC 8216 3.2): self-contained, what every HLS player since 2009 plays."""

from __future__ import annotations

from streamd.model.ladder import Rung
from streamd.package.base import EncodedPacket, Packaged, mux

TS_PACKET = 188


def package(
    video: tuple[EncodedPacket, ...], audio: tuple[EncodedPacket, ...], rung: Rung
) -> Packaged:
    media = mux("mpegts", {}, video, audio, rung)
    return Packaged(media, iframe=first_picture(media))


def package_audio(audio: tuple[EncodedPacket, ...], rung: Rung) -> bytes:
    """An audio-only segment: an alternate language's rendition beside the variants."""
    return mux("mpegts", {}, None, audio, rung)


def first_picture(media: bytes) -> tuple[int, int] | None:
    """(offset, length) of the segment's first picture (its IDR): from the TS packet that
    starts its PES to the one that starts the next picture's, for an I-frame playlist's
    EXT-X-BYTERANGE. The PAT and PMT before it are left out, as RFC 8216 4.3.3.6 asks of a
    Media Initialization Section (the segment begins with it, so any range decodes)."""
    video_pid, start = None, None
    for offset in range(0, len(media) - TS_PACKET + 1, TS_PACKET):
        header = media[offset : offset + 4]
        if header[0] != 0x47:
            return None
        pid = ((header[1] & 0x1F) << 8) | header[2]
        if not header[1] & 0x40:  # no payload unit start
            continue
        payload = offset + 4
        if header[3] & 0x20:  # an adaptation field comes first
            payload += 1 + media[payload]
        pes_video = media[payload : payload + 4] == b"\0\0\1\xe0"
        if video_pid is None and pes_video:
            video_pid, start = pid, offset
        elif pid == video_pid and start is not None:
            return start, offset - start
    return None if start is None else (start, len(media) - start)
