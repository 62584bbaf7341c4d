"""Captions: a stream's subtitle tracks, one per language, as cues on its timeline.

Cue times are stream seconds (second 0 is the stream's first segment, as /viewstream's
`timestamp` counts). A track is kept sorted by start; a segment asks for the cues that
overlap it, found by bisection, so its cost is what it holds, not the track's length.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from streamd.model.pipeline import TIMELINE_ORIGIN_S, VIDEO_HZ

# A subtitle segment's cues are in stream seconds; its header ties them to the media's
# 90 kHz clock, where stream second 0 is the timeline's origin (TS PTS, fMP4 tfdt alike).
SEGMENT_HEADER = (
    f"WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:{TIMELINE_ORIGIN_S * VIDEO_HZ},LOCAL:00:00:00.000\n"
)


def timestamp(seconds: float) -> str:
    ms = max(0, round(seconds * 1000))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def webvtt_segment(cues: list[Cue]) -> bytes:
    """A subtitle segment: the cues shown during it, whole (a cue over two segments is in
    both, with the same times: players drop the repeat)."""
    out = [SEGMENT_HEADER]
    for cue in cues:
        settings = f" {cue.settings}" if cue.settings else ""
        out.append(f"\n{timestamp(cue.start_s)} --> {timestamp(cue.end_s)}{settings}\n{cue.text}\n")
    return "".join(out).encode()


@dataclass(frozen=True)
class Cue:
    """One caption: its time on the stream's timeline, its WebVTT cue settings and text."""

    start_s: float
    end_s: float
    text: str
    settings: str = ""  # WebVTT cue settings (line:90% align:center ...), as given


@dataclass
class CaptionTrack:
    """A stream's subtitles in one language."""

    lang: str  # BCP 47, as EXT-X-MEDIA's LANGUAGE
    name: str  # what players list (EXT-X-MEDIA's NAME)
    cues: list[Cue] = field(default_factory=list)
    longest_s: float = 0.0  # the longest cue: how far back an overlapping cue may start

    def add(self, cues: list[Cue]) -> None:
        for cue in cues:
            bisect.insort(self.cues, cue, key=lambda c: (c.start_s, c.end_s))
            self.longest_s = max(self.longest_s, cue.end_s - cue.start_s)

    def between(self, start_s: float, end_s: float) -> list[Cue]:
        """The cues shown at some time in [start_s, end_s)."""
        first = bisect.bisect_left(self.cues, start_s - self.longest_s, key=lambda c: c.start_s)
        last = bisect.bisect_left(self.cues, end_s, key=lambda c: c.start_s)
        return [c for c in self.cues[first:last] if c.end_s > start_s]

    def drop_before(self, time_s: float) -> None:
        """Retention: cues that ended before `time_s` go (those sure to have: it costs
        what it removes)."""
        keep = bisect.bisect_left(self.cues, time_s - self.longest_s, key=lambda c: c.start_s)
        del self.cues[:keep]
