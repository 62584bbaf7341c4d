"""Retention: a live DVR window slides by the HLS and DASH rules, and what leaves it leaves
the disk and the database; disk budgets per stream and in all."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import m3u8
import pytest
from aiohttp.test_utils import TestClient

from streamd.app import create_app
from streamd.clock import SystemClock
from streamd.config import Config, RetentionConfig
from streamd.manifests.hls import StreamPlaylists
from streamd.model.jobs import PartOutput, PublishedPart
from streamd.model.layout import STATE_FILE
from streamd.model.protection import Protection
from streamd.model.stream import Segment, Stream
from tests.conftest import AUTH, MediaFactory, fetch, published, upload, wait_for
from tests.test_state import RUNGS, _segment

NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}


def _publish(playlists: StreamPlaylists, stream: Stream, seg: Segment) -> dict[str, bytes]:
    change = playlists.add(stream, seg)
    return {**change.appended, **change.replaced}


def _sliding(count: int, **kw: Any) -> tuple[Stream, StreamPlaylists]:
    stream = Stream("s1", 1.7e9, rungs=RUNGS, frame_rate=30.0, start_wall_s=1.7e9, **kw)
    playlists = StreamPlaylists("s1", 2.0, sliding=True)
    for i in range(count):
        seg = _segment(i, 2.0 * i, 2.0, "init-a.mp4" if i < 3 else "init-b.mp4")
        if i == 2:
            seg = replace(seg, discontinuity=True)
        stream.add_segment(seg)
        playlists.add(stream, seg)
    return stream, playlists


def test_a_sliding_playlist_moves_its_media_sequence_and_keeps_map_and_key_at_its_head() -> None:
    protection = Protection(os.urandom(32), 2)
    stream, playlists = _sliding(10, protection=protection)
    before = m3u8.loads(playlists.get("hls/s1/fmp4/240p/index.m3u8").decode())  # type: ignore[union-attr]
    assert before.playlist_type is None  # a window that will slide is not EVENT (6.2.1)
    assert before.media_sequence == 0
    stream.retire(4, 0.0)
    change = playlists.trim(stream)
    assert "hls/s1/fmp4/240p/index.m3u8" in change.replaced  # written whole, once
    for packaging in ("fmp4", "ts"):
        text = playlists.get(f"hls/s1/{packaging}/240p/index.m3u8")
        assert text is not None
        parsed = m3u8.loads(text.decode())
        assert parsed.media_sequence == 4
        assert parsed.discontinuity_sequence == 1  # segment 2's EXT-X-DISCONTINUITY left
        assert (
            next(s.uri for s in parsed.segments)
            == f"seg000004.{'m4s' if packaging == 'fmp4' else 'ts'}"
        )
        assert len(parsed.segments) == 6
        first = parsed.segments[0]
        assert first.key is not None
        assert first.key.uri == "../../keys/2.key"
        if packaging == "fmp4":
            assert first.init_section is not None
            assert first.init_section.uri == "init-b.mp4"
            lines = text.decode().splitlines()
            head = lines.index("#EXT-X-INDEPENDENT-SEGMENTS") + 1
            # 4.3.2.4: the key applies to maps after it, so the map comes first, in clear.
            assert lines[head].startswith("#EXT-X-MAP")
            assert lines[head + 1].startswith("#EXT-X-KEY")
    # A segment after the trim appends to the new body as before.
    seg = _segment(10, 20.0, 2.0, "init-b.mp4")
    stream.add_segment(seg)
    _publish(playlists, stream, seg)
    parsed = m3u8.loads(playlists.get("hls/s1/ts/144p/index.m3u8").decode())  # type: ignore[union-attr]
    assert [s.uri for s in parsed.segments] == [f"seg{i:06d}.ts" for i in range(4, 11)]
    # Rebuilt from the record (a restart): the same playlist.
    again = StreamPlaylists.of(stream, 2.0, sliding=True)
    for key in ("hls/s1/ts/144p/index.m3u8", "hls/s1/fmp4/240p/index.m3u8"):
        assert again.get(key) == playlists.get(key)


def test_the_mpd_timeline_slides_with_its_periods_and_a_time_shift_depth() -> None:
    stream, playlists = _sliding(10)
    stream.retire(5, 0.0)
    playlists.trim(stream)
    mpd = ET.fromstring(playlists.get("hls/s1/fmp4/manifest.mpd") or b"")
    assert mpd.get("type") == "dynamic"
    assert mpd.get("timeShiftBufferDepth") == "PT10S"  # segments 5-9
    periods = mpd.findall("d:Period", NS)
    # Periods began at 0 and at 2 (the discontinuity); then at 3 the init changed.
    assert [p.get("id") for p in periods] == ["p3"]
    template = periods[0].find("d:AdaptationSet/d:SegmentTemplate", NS)
    assert template is not None
    assert template.get("startNumber") == "5"
    runs = template.findall("d:SegmentTimeline/d:S", NS)
    timescale = int(template.get("timescale") or 0)
    pto = int(template.get("presentationTimeOffset") or 0)
    assert (int(runs[0].get("t") or 0) - pto) / timescale == pytest.approx(4.0)  # 10 s - 6 s
    assert sum(1 + int(r.get("r") or 0) for r in runs) == 5


def test_the_low_latency_tail_is_not_cut_and_delta_updates_count_the_body() -> None:
    stream = Stream("s1", 1.7e9, rungs=RUNGS, frame_rate=30.0, start_wall_s=1.7e9)
    playlists = StreamPlaylists("s1", 2.0, sliding=True)
    for i in range(16):
        for p in range(4):
            outputs = tuple(PartOutput(r.name, b"x", "init-a.mp4") for r in RUNGS)
            part = PublishedPart(i, p, 0.5, 2.0 * i, p == 0, 0.5, p == 3, outputs)
            playlists.add_part(stream, part, 1.7e9 + 2.0 * i)
        seg = _segment(i, 2.0 * i, 2.0)
        stream.add_segment(seg)
        playlists.add(stream, seg)
    stream.retire(4, 0.0)
    playlists.trim(stream)
    key = "hls/s1/fmp4/240p/index.m3u8"
    full = m3u8.loads((playlists.get(key) or b"").decode())
    assert full.media_sequence == 4
    assert len(full.segments) == 12
    delta = (playlists.get(key, delta=True) or b"").decode()
    skipped = int(delta.split("SKIPPED-SEGMENTS=")[1].split("\n")[0])
    assert skipped + len(m3u8.loads(delta).segments) == 12  # 4.4.5.2: counted from the first


class SteppedClock(SystemClock):
    """The real clock, which a test can move on (for the 6.2.2 grace before deletion)."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def wall_s(self) -> float:
        return time.time() + self.offset_s


def _files(data: Path, vid: str) -> set[str]:
    return {str(p.relative_to(data)) for p in data.rglob("*") if p.is_file() and vid in str(p)}


def _rows(data: Path, vid: str) -> tuple[list[int], list[int]]:
    with sqlite3.connect(data / STATE_FILE) as db:
        seqs = [
            r[0]
            for r in db.execute("SELECT sequence FROM segments WHERE video_id=? ORDER BY 1", (vid,))
        ]
        ups = [
            r[0]
            for r in db.execute("SELECT number FROM uploads WHERE video_id=? ORDER BY 1", (vid,))
        ]
    return seqs, ups


async def _until(check: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_a_live_window_leaves_the_playlists_then_the_disk_and_the_database(
    aiohttp_client: Any, config: Config, media: MediaFactory
) -> None:
    clock = SteppedClock()
    cfg = replace(
        config,
        transcode=replace(config.transcode, segment_duration_s=1.0),
        retention=RetentionConfig(dvr_window_min=0.15),  # 9 s
    )
    client: TestClient = await aiohttp_client(create_app(cfg, clock=clock), headers=AUTH)
    pieces = media.split(media("mp4", duration_s=20, size="320x240", gop=30), 2.0)
    await upload(client, "win", pieces[0], number=0)
    await wait_for(client, "win", published(1))
    # The first segment's WebM, kept as made: as it is, and with English subtitles.
    cue = "WEBVTT\n\n00:00:00.100 --> 00:00:00.900\nFirst\n"
    assert (await client.post("/upload/win/captions?lang=en", data=cue)).status == 202
    webm = "/viewstream/win?timestamp=0.5&format=webm&resolution=144p"
    for query in ("", "&lang=en"):
        await fetch(client, webm + query)
    data = cfg.data_dir
    kept_webm = {"files/win/webm/144p/seg000000.webm", "files/win/webm/144p/seg000000.main_en.webm"}
    assert kept_webm <= _files(data, "win")
    for i, piece in enumerate(pieces[1:], 1):
        await upload(client, "win", piece, number=i)
    await wait_for(client, "win", published(len(pieces)))
    info = await wait_for(client, "win", lambda v: v["firstS"] > 0)
    ts = m3u8.loads((await fetch(client, "/hls/win/ts/144p/index.m3u8")).decode())
    fmp4 = m3u8.loads((await fetch(client, "/hls/win/fmp4/144p/index.m3u8")).decode())
    for playlist in (ts, fmp4):
        assert playlist.playlist_type is None
        assert playlist.media_sequence == ts.media_sequence > 0
        assert 9.0 <= sum(s.duration for s in playlist.segments) < 11.0
    assert fmp4.segments[0].init_section is not None
    first = ts.media_sequence
    started = datetime.fromisoformat(info["startedAt"]).timestamp()
    pdt = ts.segments[0].current_program_date_time.timestamp()
    assert info["firstS"] == pytest.approx(pdt - started, abs=0.002)
    mpd = ET.fromstring(await fetch(client, "/hls/win/fmp4/manifest.mpd"))
    template = mpd.find("d:Period/d:AdaptationSet/d:SegmentTemplate", NS)
    assert template is not None
    assert int(template.get("startNumber") or 0) == first
    assert mpd.get("timeShiftBufferDepth")
    # Each segment the playlists name is there; those that left stay on disk a while
    # (6.2.2), then go with their previews, uploads, rows and kept files.
    for seg in ts.segments:
        await fetch(client, f"/hls/win/ts/144p/{seg.uri}")
    assert (data / "hls/win/ts/144p/seg000000.ts").exists()
    clock.offset_s = 120.0
    await _until(lambda: not (data / "hls/win/ts/144p/seg000000.ts").exists())
    await _until(lambda: _rows(data, "win")[0][0] >= first)
    files = _files(data, "win")
    kept = {s.uri for s in ts.segments}
    assert {f.rsplit("/", 1)[1] for f in files if f.startswith("hls/win/ts/144p/seg")} == kept
    assert not any(f.startswith(("ingest/win/000001", "hls/win/thumbs/seg000000")) for f in files)
    assert not kept_webm & files
    seqs, ups = _rows(data, "win")
    assert seqs == list(range(first, first + len(ts.segments)))
    assert 0 in ups
    assert 1 not in ups
    await fetch(client, "/hls/win/ts/144p/seg000000.ts", status=404)
    info = await wait_for(client, "win", lambda v: True)
    names = {u.rsplit(".", 1)[0] for u in kept}
    media_bytes = sum(
        (data / f).stat().st_size
        for f in files
        if f.startswith(("hls/win/ts/", "hls/win/fmp4/")) and Path(f).stem in names
    )
    assert info["keptBytes"] == media_bytes


async def test_over_the_disk_budget_ended_streams_go_whole_then_live_ones_slide(
    aiohttp_client: Any, config: Config, media: MediaFactory
) -> None:
    cfg = replace(
        config,
        transcode=replace(config.transcode, segment_duration_s=1.0),
        retention=RetentionConfig(max_total_bytes=1),  # less than anything: all that can go
    )
    client: TestClient = await aiohttp_client(create_app(cfg), headers=AUTH)
    pieces = media.split(media("mp4", duration_s=16, size="320x240", gop=30), 2.0)
    for i, piece in enumerate(pieces[:2]):
        await upload(client, "old", piece, number=i)
    await wait_for(client, "old", published(2))
    assert (await client.post("/upload/old/end")).status == 202
    await _until_gone(client, "/api/videos/old")
    await _until(lambda: not _files(cfg.data_dir, "old/"))  # its files go after its record
    for i, piece in enumerate(pieces):
        await upload(client, "new", piece, number=i)
    await wait_for(client, "new", published(len(pieces)))
    info = await wait_for(client, "new", lambda v: v["firstS"] > 0)
    playlist = (await fetch(client, "/hls/new/fmp4/240p/index.m3u8")).decode()
    parsed = m3u8.loads(playlist)
    # Never fewer than 8 target durations (RFC 8216 6.2.2 asks for at least 3).
    assert 8.0 <= sum(s.duration for s in parsed.segments) < 9.5
    assert parsed.media_sequence > 0
    assert info["state"] == "live"
    # A restart finds the window where it was.
    await client.close()
    client = await aiohttp_client(create_app(cfg), headers=AUTH)
    assert (await fetch(client, "/hls/new/fmp4/240p/index.m3u8")).decode() == playlist
    assert (await client.get("/api/videos/old")).status == 404


async def _until_gone(client: TestClient, url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (await client.get(url)).status != 404:
        assert time.monotonic() < deadline, f"{url} is still there"
        await asyncio.sleep(0.1)


def test_a_windowed_thumbnails_track_loses_its_old_cues_a_minute_at_a_time(tmp_path: Path) -> None:
    from streamd.media.thumbs import TRIM_EVERY_S, ThumbnailTrack
    from streamd.store import FileStore

    store = FileStore(tmp_path)
    track = ThumbnailTrack(store, "s1", window_s=30.0)
    for sequence in range(200):  # 400 s of 2-s segments
        track.made = {sequence: 90}
        track.cue(sequence, 2.0 * sequence, 2.0)
    text = store.get("hls/s1/thumbs.vtt").decode()
    header, *cues = text.strip().split("\n\n")
    assert header == "WEBVTT"
    starts = [
        float(c.split(" --> ")[0].rsplit(":", 1)[1]) + 60 * int(c.split(":")[1]) for c in cues
    ]
    assert starts[-1] == 398.0
    assert 400.0 - 30.0 - TRIM_EVERY_S - 2.0 <= starts[0] <= 400.0 - 30.0
    assert starts == sorted(starts)
    assert cues[-1].endswith("sheet00007.jpg#xywh=640,360,160,90")
