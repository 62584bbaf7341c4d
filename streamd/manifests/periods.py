"""DASH Periods (ISO/IEC 23009-1 5.3.2), each a stretch of the stream played with the same
init segments without a break, and the SegmentTimeline of each of its tracks, kept as
segments come (a run of equal durations is one `S` with `@r`)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from streamd.model.audio import ALTERNATE_PREFIX
from streamd.model.formats import FMP4
from streamd.model.jobs import RungOutput
from streamd.model.pipeline import AUDIO_HZ, TIMELINE_ORIGIN_S, VIDEO_HZ
from streamd.model.stream import Segment


class Timeline:
    """A SegmentTimeline's `S` elements in one timescale, kept as segments are added (and,
    sliding, removed from the front): runs of [start, duration, repeat]."""

    def __init__(self, timescale: int) -> None:
        self.timescale = timescale
        self.runs: deque[list[int]] = deque()
        self.end: int | None = None  # where the last segment ends

    def ticks(self, seconds: float) -> int:
        return round((seconds + TIMELINE_ORIGIN_S) * self.timescale)

    def add(self, start_s: float, end_s: float) -> None:
        start, end = self.ticks(start_s), self.ticks(end_s)
        last = self.runs[-1] if self.runs else None
        if last is not None and start == self.end and end - start == last[1]:
            last[2] += 1
        else:
            self.runs.append([start, end - start, 0])
        self.end = end

    def drop_before(self, start_s: float) -> None:
        """The segments that start before `start_s` leave."""
        tick = self.ticks(start_s)
        while self.runs and self.runs[0][0] < tick:
            run = self.runs[0]
            if run[2]:
                run[0], run[2] = run[0] + run[1], run[2] - 1
            else:
                self.runs.popleft()

    def render(self, indent: str, coming: tuple[float, float] | None = None) -> str:
        """Its S elements, and (`coming`: start and expected end) the segment being made."""
        lines = [
            f'<S t="{start}" d="{duration}"' + (f' r="{repeat}"/>' if repeat else "/>")
            for start, duration, repeat in self.runs
        ]
        if coming is not None:
            start, end = self.ticks(coming[0]), self.ticks(coming[1])
            lines.append(f'<S t="{start}" d="{end - start}"/>')
        body = "".join(f"{indent}  {line}\n" for line in lines)
        return f"{indent}<SegmentTimeline>\n{body}{indent}</SegmentTimeline>\n"


@dataclass
class Period:
    """A stretch of the stream played with the same init segments, without a break."""

    first_sequence: int
    start_s: float
    inits: dict[str, str]  # by rendition (a rung, or the audio)
    video: Timeline = field(default_factory=lambda: Timeline(VIDEO_HZ))
    audio: Timeline = field(default_factory=lambda: Timeline(AUDIO_HZ))
    webm: Timeline = field(default_factory=lambda: Timeline(1000))  # Matroska's clock
    count: int = 0  # segments
    id: str = ""  # stays while its first segments leave (a sliding window)

    def __post_init__(self) -> None:
        self.id = self.id or f"p{self.first_sequence}"

    def takes(self, seg: Segment) -> bool:
        """Whether `seg` goes on in this period: the next sequence, on the same timeline,
        with the same renditions (overload leaves rungs out: a period must not name a
        segment that does not exist) and init segments."""
        if seg.discontinuity or seg.sequence != self.first_sequence + self.count:
            return False
        outputs = published_outputs(seg)
        return len(outputs) == len(self.inits) and all(
            self.inits.get(o.name) == init_of(o) for o in outputs
        )

    def trim(self, first_sequence: int, start_s: float) -> None:
        """Its segments before `first_sequence` (which starts at `start_s`) leave."""
        self.count -= first_sequence - self.first_sequence
        self.first_sequence = first_sequence
        for timeline in (self.video, self.audio, self.webm):
            timeline.drop_before(start_s)

    def add(self, seg: Segment) -> None:
        self.video.add(seg.start_s, seg.end_s)
        self.webm.add(seg.start_s, seg.end_s)
        if seg.audio:
            self.audio.add(seg.start_s, seg.end_s)
        self.count += 1


def published_outputs(seg: Segment) -> tuple[RungOutput, ...]:
    """The outputs a segment is published with: alternate audio comes later, and has one
    init segment for the whole stream."""
    return (*seg.rungs, *(a for a in seg.audio if not a.name.startswith(ALTERNATE_PREFIX)))


def init_of(out: RungOutput) -> str:
    return out.inits.get(FMP4.name, "")
