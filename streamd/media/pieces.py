"""Which of a recording's packets one of its pieces decodes (streamd.model.recording plans
the pieces; each is transcoded apart, on any worker).

A piece seeks a second before its keyframe, so that the audio before it can pre-roll its
AAC encoder; it decodes only the video of its own GOPs (closed at its keyframe and at the
next piece's), and stops a second past its end, once the audio that ends its AAC stream
is in, however the file interleaves.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import av

from streamd.model.jobs import Piece

MARGIN_S = 1.0  # decoded before and after the piece's span
EPSILON = Fraction(1, 1000)


def _time_s(packet: av.Packet[Any], decode_order: bool) -> Fraction | None:
    first, second = (packet.dts, packet.pts) if decode_order else (packet.pts, packet.dts)
    ts = first if first is not None else second
    return None if ts is None or packet.time_base is None else ts * packet.time_base


class PieceReader:
    """One piece's view of the recording's packets."""

    def __init__(self, piece: Piece, video: av.video.stream.VideoStream) -> None:
        self.piece, self.video = piece, video

    def seek(self, container: av.container.InputContainer) -> None:
        before = self.piece.from_s - MARGIN_S
        if before > 0 and self.video.time_base is not None:
            container.seek(int(before / self.video.time_base), stream=self.video, backward=True)

    def skip(self, packet: av.Packet[Any]) -> bool:
        """A packet that is not the piece's to decode (video outside its GOPs)."""
        t = _time_s(packet, decode_order=False)
        if t is None or packet.stream is not self.video:
            return False  # a flush packet at the end gives the decoders' last frames
        early = t < Fraction(self.piece.from_s) - EPSILON
        return early or (not self.piece.last and t >= Fraction(self.piece.to_s) - EPSILON)

    def done(self, packet: av.Packet[Any]) -> bool:
        """Past the piece's end by enough: the rest of the file is the next pieces'."""
        t = _time_s(packet, decode_order=True)
        return not self.piece.last and t is not None and t > self.piece.to_s + MARGIN_S

    def held(self) -> Iterator[av.VideoFrame]:
        """Once it stopped before the file's end: the pictures the decoder still holds."""
        for frame in self.video.codec_context.decode(None):
            if frame.time_base is None:  # unset on a flushed picture
                frame.time_base = self.video.time_base
            yield frame
