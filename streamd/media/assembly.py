"""The segments a pipeline is putting together: each one's start, packets per rung and
audio, until every rung has gone past its end and it is released whole."""

from __future__ import annotations

from dataclasses import dataclass, field

from streamd.package import EncodedPacket


@dataclass
class Assembly:
    """Packets of the segments of one job, released as soon as each is complete. Columns
    hold one entry per segment, from `first_sequence` on."""

    first_sequence: int
    starts_90k: list[int] = field(default_factory=list)
    skips: list[int] = field(default_factory=list)  # rungs left out of each segment
    uploads: list[int] = field(default_factory=list)  # the upload each segment comes from
    audio_starts: list[int] = field(default_factory=list)
    video: list[list[list[EncodedPacket]]] = field(default_factory=list)  # [segment][rung]
    audio: list[list[EncodedPacket]] = field(default_factory=list)
    # A live session's alternate audio languages: [segment][alternate], like `audio`.
    alternates: list[list[list[EncodedPacket]]] = field(default_factory=list)
    seen_alternates: list[int] = field(default_factory=list)
    seen_pts: list[int] = field(default_factory=list)  # highest video pts out of each rung
    seen_audio: int = -1
    released: int = 0
    ready_wall_s: list[float] = field(default_factory=list)  # when each segment was closed
    part_starts: list[list[int]] = field(default_factory=list)  # live parts of each segment

    def forget_released(self) -> int:
        """Drop the released segments but the last (packets are placed by the start after
        it); returns how many went."""
        drop = self.released - 1
        columns = (self.starts_90k, self.skips, self.uploads, self.audio_starts, self.video)
        for column in (*columns, self.audio, self.alternates, self.part_starts, self.ready_wall_s):
            del column[:drop]
        self.first_sequence += drop
        self.released -= drop
        return drop
