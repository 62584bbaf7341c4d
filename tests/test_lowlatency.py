"""LL-HLS rules as pure code: positions blocking requests wait for, the tail of a playlist
with parts, and one future per position however many requests wait on it."""

from __future__ import annotations

import asyncio

import pytest

from streamd.errors import BadRequest
from streamd.manifests.hls.lowlatency import LivePlaylistTail, Part, Position, Waiters
from streamd.manifests.hls.tags import MediaSegment
from streamd.model.layout import part_name


def _part(msn: int, index: int) -> Part:
    return Part(msn, index, 0.2, part_name(msn, index), index == 0)


def _tail(segments: int, parts_per_segment: int = 10, current: int = 3) -> LivePlaylistTail:
    tail = LivePlaylistTail(target_s=2, part_target_s=0.202)
    for msn in range(segments):
        head = MediaSegment("", 0.0, map_uri="init.mp4" if msn == 0 else None)
        for i in range(parts_per_segment):
            tail.add_part(_part(msn, i), head, i == parts_per_segment - 1)
        tail.add_segment(MediaSegment(f"seg{msn:06d}.m4s", 2.0, map_uri="init.mp4"), msn)
        tail.leaving()
    for i in range(current):
        tail.add_part(_part(segments, i), MediaSegment("", 0.0), False)
    return tail


def test_position_of_parts_and_segments() -> None:
    p = _tail(4).position()
    assert (p.last_msn, p.part_msn, p.part) == (3, 4, 2)
    assert p.reached(3, None)
    assert not p.reached(4, None)  # segment 4 is not whole yet
    assert p.reached(4, 2)
    assert not p.reached(4, 3)
    # 6.2.5.2: a part past the end of a whole segment is the next one's first.
    assert p.reached(3, 10)  # = (4, 0)
    assert p.reached(2, 25)  # = (3, 0), not (3, 15)
    ended = Position(ended=True)
    assert ended.reached(99, 5)  # directives are ignored once the playlist has ENDLIST


def test_requests_too_far_ahead_are_refused() -> None:
    p = _tail(4).position()
    p.refuse(5, None)  # two past the last whole segment: allowed
    with pytest.raises(BadRequest):
        p.refuse(6, None)
    p.refuse(4, 2 + 14)  # 3 / 0.202 = 14.9 parts ahead allowed
    with pytest.raises(BadRequest):
        p.refuse(4, 2 + 16)
    with pytest.raises(BadRequest):
        p.refuse(5, 8)  # 8 + 10 - 2 = 16 parts ahead


def test_tail_keeps_parts_of_three_target_durations_and_hints_the_next() -> None:
    tail = _tail(10)
    body_bound = tail.leaving()  # already moved as they went past the skip boundary
    assert body_bound == []
    assert tail.window[0][0].uri == "seg000004.m4s"  # 6 x 2 s kept
    text, resume = tail.render("init.mp4", None, tail.hint_uri(part_name), "")
    lines = text.decode().splitlines()
    parted = sorted({line.split('"')[1][:10] for line in lines if line.startswith("#EXT-X-PART:")})
    # The segment being made (0.6 s) and the whole ones within 3 TD (6 s) of the end.
    assert parted == ["part000007", "part000008", "part000009", "part000010"]
    assert lines[-1] == '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part000010.3.m4s"'
    assert resume == b'#EXT-X-MAP:URI="init.mp4"\n'
    # Parts come before their segment's EXTINF (4.4.4.9).
    first = lines.index('#EXT-X-PART:DURATION=0.20000,URI="part000009.0.m4s",INDEPENDENT=YES')
    assert lines.index("seg000009.m4s") > first


def test_a_segment_that_became_a_gap_marks_its_parts() -> None:
    tail = LivePlaylistTail(target_s=2, part_target_s=0.202)
    tail.add_part(_part(0, 0), MediaSegment("", 0.0), False)
    tail.add_segment(MediaSegment("seg000000.m4s", 2.0, gap=True), 0)
    text, _ = tail.render(None, None, "part000001.0.m4s", "")
    assert b'URI="part000000.0.m4s",INDEPENDENT=YES,GAP=YES' in text


async def test_one_future_wakes_every_waiter_for_a_position() -> None:
    waiters = Waiters()
    position = _tail(2).position()
    held = [
        asyncio.create_task(waiters.wait(position, 2, position.part + 1, 5.0)) for _ in range(1000)
    ]
    late = asyncio.create_task(waiters.wait(position, 3, None, 0.05))
    await asyncio.sleep(0)
    assert len(waiters._futures) == 2  # what a thousand waiters cost
    assert await late is False  # timed out; the others still wait
    tail = _tail(2, current=4)
    waiters.wake(tail.position())
    assert all(await asyncio.gather(*held))
    assert len(waiters._futures) == 1  # segment 3 (its waiter timed out)
