"""A recording uploaded whole (`?mode=vod`), split into pieces at its keyframes so that
every worker transcodes a piece of it at once.

Each piece is planned here, before any is transcoded: where it starts on the output
timeline, where it ends (the next one's start), how many segments it is cut into and so
which segment numbers it writes. Pieces can then finish in any order and still join
exactly; the server publishes their segments in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streamd.model.jobs import Piece
from streamd.model.pipeline import TIMELINE_ORIGIN_S, VIDEO_HZ, EncodeSettings

MAX_PIECE_S = 60.0  # longer pieces gain nothing and lose more to a failure
PIECES_PER_WORKER = 3  # short enough that the last to finish does not leave workers idle


@dataclass(frozen=True)
class PlannedPiece:
    piece: Piece
    start_90k: int  # on the output timeline
    first_segment: int

    @property
    def duration_s(self) -> float:
        return (self.piece.end_90k - self.start_90k) / VIDEO_HZ

    def as_json(self) -> dict[str, Any]:
        """As kept in its upload's record (a restart goes on from it)."""
        p = self.piece
        return {
            "fromS": p.from_s,
            "toS": p.to_s,
            "start90k": self.start_90k,
            "end90k": p.end_90k,
            "firstSegment": self.first_segment,
            "segments": p.segments,
            "last": p.last,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PlannedPiece:
        piece = Piece(d["fromS"], d["toS"], d["end90k"], d["segments"], d["last"])
        return cls(piece, d["start90k"], d["firstSegment"])


def plan_pieces(
    keyframes: tuple[float, ...],
    end_s: float,
    frame_rate: float,
    settings: EncodeSettings,
    workers: int,
) -> list[PlannedPiece]:
    """Pieces of a recording whose video starts at keyframes[0] and ends at `end_s`: each
    from a keyframe, about duration / (workers x 3) long (at least three segments, at most
    a minute), the last no shorter than a segment."""
    first = keyframes[0]
    total_s = end_s - first
    target_s = min(
        MAX_PIECE_S,
        max(3 * settings.segment_duration_s, total_s / (max(1, workers) * PIECES_PER_WORKER)),
    )
    starts = [first]
    for key in keyframes[1:]:
        if key - starts[-1] >= target_s - 1e-6 and end_s - key >= settings.segment_duration_s:
            starts.append(key)
    frame_s = 1 / frame_rate if frame_rate > 0 else 1 / 30
    origin_90k = TIMELINE_ORIGIN_S * VIDEO_HZ
    planned, segment = [], 0
    for i, start in enumerate(starts):
        last = i == len(starts) - 1
        to_s = end_s if last else starts[i + 1]
        start_90k = origin_90k + round((start - first) * VIDEO_HZ)
        end_90k = origin_90k + round((to_s - first) * VIDEO_HZ)
        count = settings.segment_count((end_90k - start_90k) / VIDEO_HZ, frame_s)
        planned.append(PlannedPiece(Piece(start, to_s, end_90k, count, last), start_90k, segment))
        segment += count
    return planned
