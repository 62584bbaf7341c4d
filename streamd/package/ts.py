"""MPEG-TS segments (RFC 8216 3.2): self-contained, what every HLS player since 2009 plays."""

from __future__ import annotations

from streamd.model.ladder import Rung
from streamd.package.base import EncodedPacket, Packaged, mux


def package(
    video: tuple[EncodedPacket, ...], audio: tuple[EncodedPacket, ...], rung: Rung
) -> Packaged:
    return Packaged(mux("mpegts", {}, video, audio, rung))
