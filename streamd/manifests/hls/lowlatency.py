"""Low-Latency HLS (draft-pantos-hls-rfc8216bis-16): parts, blocking reload, delta updates.

A live fMP4 media playlist with parts is its append-only body (header and old segments, as
in RFC 8216) followed by a tail: the segments within the skip boundary of the end (4.4.3.8:
what a delta update must keep), their parts while they are within three target durations of
the end (6.2.2), the parts of the segment being made, the preload hint and the rendition
reports. The tail is rendered again at every part; it holds a bounded number of segments,
so a part costs the same at hour 10 as at minute 1. A delta update (`_HLS_skip=YES`) is the
header, EXT-X-SKIP and the tail.

`Position` answers blocking requests (6.2.5.2); `Waiters` holds them, one future per
position asked for, so a publish wakes only the requests it satisfies. Both are kept alike
by the primary and by every edge (`LiveState`), from the same `PlaylistChange`s.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from streamd.errors import BadRequest
from streamd.manifests.hls.tags import MediaSegment

PART_LINGER_TD = 3  # 6.2.2: parts leave the playlist this many target durations from the end
SKIP_TD = 6  # 4.4.3.8: CAN-SKIP-UNTIL is at least six target durations
HOLD_BACK_PARTS = 3  # 4.4.3.8: PART-HOLD-BACK SHOULD be at least three part targets
BLOCK_TD = 3  # 6.2.5.2: a request blocked longer than this many target durations is a 503
PARTS_KEPT_TD = 2 * PART_LINGER_TD  # a part stays downloadable 3 TD after leaving (6.2.2)


def server_control(target_s: int, part_target_s: float) -> str:
    """EXT-X-SERVER-CONTROL and EXT-X-PART-INF, for the header of a playlist with parts."""
    hold = HOLD_BACK_PARTS * part_target_s
    return (
        f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={hold:.3f},"
        f"CAN-SKIP-UNTIL={SKIP_TD * target_s:.1f}\n"
        f"#EXT-X-PART-INF:PART-TARGET={part_target_s:.3f}\n"
    )


@dataclass(frozen=True)
class Part:
    """#EXT-X-PART: one partial segment of segment `msn`."""

    msn: int
    index: int
    duration_s: float
    uri: str
    independent: bool

    def render(self, gap: bool = False) -> str:
        """`gap`: its segment turned out a gap in this rung (left out part way under
        overload): a player that has not fetched the part skips it (4.4.4.9)."""
        independent = ",INDEPENDENT=YES" if self.independent else ""
        attrs = f'DURATION={self.duration_s:.5f},URI="{self.uri}"{independent}'
        return f"#EXT-X-PART:{attrs}{',GAP=YES' if gap else ''}\n"


@dataclass(frozen=True)
class Position:
    """How far a playlist has got: what a blocking request waits for (6.2.5.2)."""

    last_msn: int = -1  # the last whole segment
    part_msn: int = -1  # the parent of the last part
    part: int = -1  # the last part's index
    counts: tuple[tuple[int, int], ...] = ()  # parts of the recent whole segments
    ended: bool = False
    target_s: int = 2
    part_target_s: float = 0.0

    def reached(self, msn: int, part: int | None) -> bool:
        """Whether the playlist holds segment `msn` whole (no `part`), or that part."""
        if self.ended:
            return True  # 6.2.5.2: directives are ignored once the playlist has ENDLIST
        if part is None:
            return self.last_msn >= msn
        counts = dict(self.counts)
        while msn in counts and part >= counts[msn]:
            msn, part = msn + 1, 0  # past a segment's last part: the next one's first
        if msn <= self.last_msn:
            return True
        return (self.part_msn, self.part) >= (msn, part)

    def refuse(self, msn: int, part: int | None) -> None:
        """400 for a request further ahead than the draft lets a client ask (6.2.5.2)."""
        if msn > self.last_msn + 2:
            raise BadRequest(
                f"_HLS_msn={msn} is too far ahead",
                f"the last whole segment is {self.last_msn}; ask for at most two more",
            )
        if part is None or self.part_msn < 0 or not self.part_target_s:
            return
        limit = 3 / self.part_target_s if self.part_target_s < 1 else 3
        per_segment = max(1, round(self.target_s / self.part_target_s))
        ahead = (msn - self.part_msn) * per_segment + part - self.part
        if ahead > limit:
            raise BadRequest(
                f"_HLS_part={part} of segment {msn} is too far ahead",
                f"the last part is {self.part} of segment {self.part_msn}; "
                f"ask for at most {limit:g} parts ahead",
            )


class Waiters:
    """Requests held until a playlist reaches a position. One future per position asked
    for: a thousand viewers waiting for the next part are one future, and nothing runs for
    them until a publish reaches it."""

    def __init__(self) -> None:
        self._futures: dict[tuple[int, int | None], asyncio.Future[None]] = {}

    async def wait(self, position: Position, msn: int, part: int | None, timeout_s: float) -> bool:
        """Wait until the position is reached; False after `timeout_s`."""
        if position.reached(msn, part):
            return True
        key = (msn, part)
        future = self._futures.get(key)
        if future is None:
            future = self._futures[key] = asyncio.get_running_loop().create_future()
        try:  # shielded: one request timing out does not cancel the others' future
            await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            return False
        return True

    def wake(self, position: Position) -> None:
        for key in [k for k in self._futures if position.reached(*k)]:
            future = self._futures.pop(key)
            if not future.done():
                future.set_result(None)


@dataclass(frozen=True)
class LiveView:
    """What serving a playlist with parts needs beside its body: the tail, and how to make
    a delta update (the body's header, how many segments the body holds, and the EXT-X-MAP
    in force where the tail starts)."""

    tail: bytes
    header_len: int
    skipped: int
    resume: bytes
    position: Position

    def full(self, body: bytes) -> bytes:
        return body + self.tail

    def delta(self, body: bytes) -> bytes:
        """4.4.5.2: the body's segments replaced by EXT-X-SKIP (the header stays whole)."""
        if not self.skipped:
            return self.full(body)
        skip = f"#EXT-X-SKIP:SKIPPED-SEGMENTS={self.skipped}\n".encode()
        return body[: self.header_len] + skip + self.resume + self.tail


@dataclass
class LiveState:
    """Every live view, waiter and part of one stream, in one serving process."""

    views: dict[str, LiveView] = field(default_factory=dict)
    waiters: dict[str, Waiters] = field(default_factory=dict)
    parts: OrderedDict[str, tuple[int, bytes]] = field(default_factory=OrderedDict)
    joined: dict[tuple[str, bool], tuple[LiveView, bytes, bytes]] = field(default_factory=dict)

    def apply(self, views: dict[str, LiveView], parts: dict[str, tuple[int, bytes]]) -> None:
        """New parts and views: parts first, so a woken request finds its part."""
        for key, (msn, data) in parts.items():
            self.parts[key] = (msn, data)
        for key, view in views.items():
            self.views[key] = view
            waiters = self.waiters.get(key)
            if waiters is not None:
                waiters.wake(view.position)
        oldest = min((v.position.last_msn for v in self.views.values()), default=-1)
        oldest -= PARTS_KEPT_TD
        while self.parts and next(iter(self.parts.values()))[0] < oldest:
            self.parts.popitem(last=False)

    def serve(self, key: str, body: bytes, delta: bool = False) -> bytes:
        """A playlist's bytes as served: its body, and its tail if it has parts. Joined
        once per part and kind, not per request: a day's body is megabytes."""
        view = self.views.get(key)
        if view is None:
            return body
        cached = self.joined.get((key, delta))
        if cached is not None and cached[0] is view and cached[1] is body:
            return cached[2]
        data = view.delta(body) if delta else view.full(body)
        self.joined[key, delta] = (view, body, data)
        return data

    def end(self) -> None:
        """The stream ended: every view goes (its playlists are whole bodies again) and
        every held request is answered."""
        for key, view in self.views.items():
            waiters = self.waiters.get(key)
            if waiters is not None:
                waiters.wake(replace(view.position, ended=True))
        self.views.clear()
        self.joined.clear()

    def waiters_for(self, key: str) -> Waiters:
        return self.waiters.setdefault(key, Waiters())


class LivePlaylistTail:
    """The tail of one media playlist with parts (see the module's docstring)."""

    def __init__(self, target_s: int, part_target_s: float) -> None:
        self.target_s, self.part_target_s = target_s, part_target_s
        self.window: deque[tuple[MediaSegment, tuple[Part, ...]]] = deque()
        self.current: list[Part] = []  # the segment being made
        self.head: MediaSegment | None = None  # its tags (PDT, map, discontinuity)
        self.next_begins_segment = False
        self.last_msn = -1
        self.counts: deque[tuple[int, int]] = deque(maxlen=8)

    def add_segment(self, entry: MediaSegment, msn: int) -> None:
        parts = tuple(p for p in self.current if p.msn == msn)
        if parts:
            self.counts.append((msn, len(parts)))
        self.window.append((entry, parts))
        self.current, self.head = [p for p in self.current if p.msn > msn], None
        self.last_msn = msn

    def leaving(self) -> list[tuple[int, MediaSegment]]:
        """Segments now beyond the skip boundary, oldest first, with their media sequence
        numbers: they go to the body."""
        out = []
        while len(self.window) > 1:
            later = sum(e.duration_s for e, _ in list(self.window)[1:])
            if later < SKIP_TD * self.target_s:
                break
            out.append((self.last_msn - len(self.window) + 1, self.window.popleft()[0]))
        return out

    def segments(self) -> list[tuple[int, MediaSegment]]:
        """Every whole segment in the tail, with its media sequence number."""
        first = self.last_msn - len(self.window) + 1
        return [(first + i, entry) for i, (entry, _) in enumerate(self.window)]

    def add_part(self, part: Part, head: MediaSegment, next_begins_segment: bool) -> None:
        if not self.current:
            self.head = head
        self.current.append(part)
        self.next_begins_segment = next_begins_segment

    def position(self, ended: bool = False) -> Position:
        # The newest part: of the segment being made, else of the newest whole segment.
        last = self.current[-1] if self.current else None
        if last is None:
            last = next((parts[-1] for _, parts in reversed(self.window) if parts), None)
        return Position(
            self.last_msn,
            last.msn if last else -1,
            last.index if last else -1,
            tuple(self.counts),
            ended,
            self.target_s,
            self.part_target_s,
        )

    def hint_uri(self, uri_of: Callable[[int, int], str]) -> str:
        """EXT-X-PRELOAD-HINT's part: the next of this segment, or the next segment's first."""
        if self.current and not self.next_begins_segment:
            last = self.current[-1]
            return uri_of(last.msn, last.index + 1)
        return uri_of(self.last_msn + 1 if not self.current else self.current[-1].msn + 1, 0)

    def render(
        self,
        current_map: str | None,
        current_key: str | None,
        hint: str,
        reports: str,
    ) -> tuple[bytes, bytes]:
        """(the tail, the EXT-X-MAP in force where it starts: a delta update's resume)."""
        resume = f'#EXT-X-MAP:URI="{current_map}"\n' if current_map else ""
        out: list[str] = []
        # Parts stay for the segments that end within PART_LINGER_TD of the end.
        keep_from, later = len(self.window), sum(p.duration_s for p in self.current)
        for i in range(len(self.window) - 1, -1, -1):
            if later >= PART_LINGER_TD * self.target_s:
                break
            keep_from, later = i, later + self.window[i][0].duration_s
        for i, (entry, parts) in enumerate(self.window):
            out.append(entry.tags(current_map, current_key))
            current_map, current_key = entry.map_uri or current_map, entry.key_uri
            if i >= keep_from:
                out += [p.render(entry.gap) for p in parts]
            out.append(entry.uri_lines())
        if self.current and self.head is not None:
            out.append(self.head.tags(current_map, current_key))
            out += [p.render() for p in self.current]
        out.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{hint}"\n')
        out.append(reports)
        return "".join(out).encode(), resume.encode()


def rendition_report(uri: str, position: Position) -> str:
    """#EXT-X-RENDITION-REPORT for a sibling playlist (4.4.5.4), its URI relative."""
    attrs = [f'URI="{uri}"', f"LAST-MSN={max(position.part_msn, position.last_msn)}"]
    if position.part_msn >= position.last_msn and position.part >= 0:
        attrs.append(f"LAST-PART={position.part}")
    return f"#EXT-X-RENDITION-REPORT:{','.join(attrs)}\n"
