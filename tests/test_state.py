"""The pieces that keep publishing flat: playlists that grow by appending, stream state in
SQLite, the edges' feed, and errors that cross processes as data."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import sqlite3
from pathlib import Path

import m3u8
import pytest
from aiohttp import StreamReader
from aiohttp.base_protocol import BaseProtocol

from streamd.errors import ERRORS, SegmentConflict, StreamdError, UnsupportedMedia, from_data
from streamd.manifests.hls import PlaylistChange, StreamPlaylists
from streamd.manifests.hls.tags import MediaPlaylist, MediaSegment
from streamd.model.jobs import RungOutput
from streamd.model.ladder import Rung
from streamd.model.pipeline import PipelineState
from streamd.model.stream import HELD, PUBLISHED, Segment, Stream, Upload
from streamd.store.sqlite import SCHEMA_VERSION, SqliteState
from streamd.web import feed

CODECS = "avc1.64000d,mp4a.40.2"
RUNGS = (Rung("240p", 320, 240, 300_000, 128_000), Rung("144p", 192, 144, 150_000, 128_000))


def _segment(seq: int, start_s: float, duration_s: float, init: str = "init-a.mp4") -> Segment:
    outputs = tuple(
        RungOutput(
            r.name, {"fmp4": 1000 + seq, "ts": 1200 + seq}, "avc1.64000d,mp4a.40.2", {"fmp4": init}
        )
        for r in RUNGS
    )
    return Segment(seq, start_s, duration_s, seq, 1_700_000_000.0 + start_s, outputs)


def _stream(durations: list[float], inits: list[str] | None = None) -> Stream:
    stream = Stream("s1", 1_700_000_000.0, rungs=RUNGS, frame_rate=30.0, start_wall_s=1.7e9)
    start = 0.0
    for i, d in enumerate(durations):
        stream.add_segment(_segment(i, start, d, (inits or ["init-a.mp4"] * len(durations))[i]))
        start += d
    return stream


def _full_render(stream: Stream, packaging: str, rung: str) -> bytes:
    """The playlist rendered whole from the record (how 0.1 wrote every playlist)."""
    segments = []
    init = None
    for s in stream.segments:
        out = s.rung(rung)
        if out is not None and packaging == "fmp4":
            init = out.inits.get("fmp4")
        segments.append(
            MediaSegment(
                f"seg{s.sequence:06d}.{'m4s' if packaging == 'fmp4' else 'ts'}",
                s.duration_s,
                stream.start_wall_s + s.start_s if stream.start_wall_s else None,
                init,
                gap=out is None,
                discontinuity=s.discontinuity,
            )
        )
    return MediaPlaylist(tuple(segments), 2, ended=stream.ended).render().encode()


@pytest.mark.parametrize("seed", range(5))
def test_appending_gives_the_playlist_a_full_render_gives(seed: int) -> None:
    rnd = random.Random(seed)
    durations = [rnd.choice([2.0, 2.0, 1.967, 2.4, 0.3]) for _ in range(30)]
    durations[17] = 3.6  # longer than the target: the header changes, the playlist is rewritten
    inits = ["init-a.mp4"] * 10 + ["init-b.mp4"] * 20  # an SPS change: a second EXT-X-MAP
    whole = _stream(durations, inits)
    for i in rnd.sample(range(1, 30), 6):  # missing uploads, dropped rungs, restarts
        seg = whole.segments[i]
        kind = rnd.choice(["gap", "dropped", "restart"])
        rungs = () if kind == "gap" else seg.rungs[1:] if kind == "dropped" else seg.rungs
        whole.segments[i] = dataclasses.replace(seg, rungs=rungs, discontinuity=kind == "restart")
    segments, whole = whole.segments, _stream([])
    for seg in segments:
        whole.add_segment(seg)
    playlists = StreamPlaylists("s1", 2.0)
    growing = Stream("s1", whole.created_wall_s, rungs=RUNGS, frame_rate=30.0, start_wall_s=1.7e9)
    on_disk: dict[str, bytes] = {}
    for seg in whole.segments:
        growing.add_segment(seg)
        change = playlists.add(growing, seg)
        for key, data in change.appended.items():
            on_disk[key] += data
        on_disk.update(change.replaced)
    whole.ended = True
    for key, data in playlists.end(whole).appended.items():
        on_disk[key] += data
    for packaging in ("fmp4", "ts"):
        for rung in ("240p", "144p"):
            key = f"hls/s1/{packaging}/{rung}/index.m3u8"
            expected = _full_render(whole, packaging, rung)
            assert playlists.get(key) == expected
            assert on_disk[key] == expected
            parsed = m3u8.loads(expected.decode())
            assert parsed.target_duration == 4
            gaps = [not s.rungs or s.rung(rung) is None for s in whole.segments]
            assert [bool(s.gap_tag) for s in parsed.segments] == gaps
            assert [s.discontinuity for s in parsed.segments] == [
                s.discontinuity for s in whole.segments
            ]
            assert parsed.is_endlist
    # The one walk over the record (at start-up) builds the same bytes.
    rebuilt = StreamPlaylists.of(whole, 2.0)
    assert rebuilt.files() == playlists.files()


def test_masters_are_replaced_only_when_they_change() -> None:
    stream = _stream([2.0, 2.0])
    playlists = StreamPlaylists("s1", 2.0)
    growing = Stream("s1", stream.created_wall_s, rungs=RUNGS, frame_rate=30.0)
    growing.add_segment(stream.segments[0])
    first = playlists.add(growing, stream.segments[0])
    assert "hls/s1/fmp4/master.m3u8" in first.replaced
    # Same sizes and durations again: the bit rates, and so the master, stay the same.
    same = Segment(1, 2.0, 2.0, 1, 0.0, stream.segments[0].rungs)
    growing.add_segment(same)
    second = playlists.add(growing, same)
    assert not any(k.endswith("master.m3u8") for k in second.replaced)
    assert set(second.appended) == {
        f"hls/s1/{p}/{r}/index.m3u8" for p in ("fmp4", "ts") for r in ("240p", "144p")
    }


async def test_sqlite_state_round_trip(tmp_path: Path) -> None:
    state = SqliteState(tmp_path / "state.sqlite3")
    await state.open()
    stream = Stream("cam", 1.7e9, next_upload=0, rungs=RUNGS, frame_rate=29.97)
    stream.session, stream.session_base, stream.session_first = "b", 7, 9
    up = Upload(0, "ab" * 32, 1234, ("ingest/cam/000000.ts",), 1.7e9 + 1, source={"w": 1})
    up.session_start = True
    stream.add_upload(up)
    await state.record(stream, uploads=[up])
    stream.pipeline = PipelineState(next_segment=2, audio_carry=b"\x01\x02", levels=("3.0",))
    stream.set_state(up, PUBLISHED)
    segments = _stream([2.0, 1.5, 2.0]).segments
    segments[1] = dataclasses.replace(segments[1], rungs=(), discontinuity=True)  # a gap
    for seg in segments:
        stream.add_segment(seg)
        await state.record(stream, segments=[seg])
    await state.record(stream, uploads=[up], pipeline=True)
    await state.close()

    again = SqliteState(tmp_path / "state.sqlite3")
    await again.open()
    (loaded,) = await again.load()
    await again.close()
    assert loaded.segments == stream.segments
    assert loaded.uploads == stream.uploads
    assert loaded.pipeline == stream.pipeline
    assert loaded.rungs == RUNGS
    assert loaded.rates("240p", "ts") == stream.rates("240p", "ts") != (0, 0)
    assert loaded.counts[PUBLISHED] == 1
    assert loaded.counts[HELD] == 0
    assert not loaded.pending
    assert (loaded.session, loaded.session_base, loaded.session_first) == ("b", 7, 9)
    assert loaded.segment_at(2.5) is None  # in the gap
    assert loaded.segment_at(4.0) == stream.segments[2]
    assert loaded.segment_at(5.5) is None


async def test_a_schema_1_database_is_brought_up_to_date(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    fixture = Path(__file__).parent / "fixtures" / "state-v1.sql"
    with sqlite3.connect(path) as db:
        db.executescript(fixture.read_text())
    state = SqliteState(path)
    await state.open()
    (stream,) = await state.load()
    assert stream.session is None
    assert stream.session_base == 0
    assert not stream.segments[0].discontinuity
    assert not stream.uploads[0].session_start
    assert stream.uploads[0].ingest == ""  # schema 4: a segment upload, not a live session
    assert stream.segments[0].rungs[0].iframes == {}  # schema 5: no I-frame ranges known
    # It takes the new columns from now on.
    stream.session = "s2"
    out = dataclasses.replace(stream.segments[0].rungs[0], iframes={"ts": (564, 3760)})
    seg = dataclasses.replace(
        stream.segments[0], sequence=1, start_s=2.0, discontinuity=True, rungs=(out,)
    )
    stream.add_segment(seg)
    await state.record(stream, segments=[seg])
    await state.close()
    again = SqliteState(path)
    await again.open()
    (loaded,) = await again.load()
    await again.close()
    assert loaded.session == "s2"
    assert [s.discontinuity for s in loaded.segments] == [False, True]
    assert loaded.segments[1].rungs[0].iframes == {"ts": (564, 3760)}
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 8


async def test_the_feed_carries_appends_and_whole_bodies() -> None:
    changes = [
        PlaylistChange("a", False, replaced={"hls/a/ts/240p/index.m3u8": b"#EXTM3U\n" * 40_000}),
        PlaylistChange("a", True, appended={"hls/a/ts/240p/index.m3u8": b"#EXT-X-ENDLIST\n"}),
        PlaylistChange("a", True, removed=True),
    ]
    loop = asyncio.get_running_loop()
    reader = StreamReader(BaseProtocol(loop), 2**30, loop=loop)  # never pauses
    for change in changes:
        reader.feed_data(feed.encode(change))
    reader.feed_data(b'{"ready": true}\n')
    reader.feed_eof()
    got = [c async for c in feed.decode(reader)]
    assert got == [*changes, None]


def test_errors_cross_processes_as_data() -> None:
    err = SegmentConflict("segment 3 was already uploaded", "sha256 ab")
    back = from_data(err.as_data())
    assert type(back) is SegmentConflict
    assert (back.message, back.detail, back.http_status) == (err.message, err.detail, 409)
    assert isinstance(from_data({"error": "unsupported_media", "message": "m"}), ValueError)
    unknown = from_data({"error": "from_the_future", "message": "m", "detail": None})
    assert type(unknown) is StreamdError
    # One table: every code names its class, and the class knows its code and status.
    for code, (cls, status) in ERRORS.items():
        assert (cls.code, cls.http_status) == (code, status)
    assert UnsupportedMedia.http_status == 422
