"""Overload: a live stream that publishes too late leaves its tallest rung out of new segments
(EXT-X-GAP there, players switch down) and brings it back once it keeps up; a recording's
jobs run on workers that yield the CPU to live streams."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import av
import m3u8
import numpy as np
from aiohttp.test_utils import TestClient

from streamd.appkeys import STREAMS
from streamd.config import TranscodeConfig
from streamd.media.pipeline import StreamPipeline
from streamd.model.ladder import Geometry, parse_ladder
from streamd.model.pipeline import EncodeSettings, PipelineState
from streamd.package import SegmentMedia
from tests.conftest import (
    TEST_LADDER,
    AppClient,
    MediaFactory,
    fetch,
    ffprobe,
    published,
    upload,
    wait_for,
)
from tests.test_ops import _get, _metrics


async def _live(
    client: TestClient, video_id: str, parts: list[Path], numbers: range, start: float
) -> None:
    """Upload 2 s parts as a live encoder does: each once its time (from `start`) has come."""
    for i in numbers:
        await asyncio.sleep(max(0.0, start + 2.0 * i - time.monotonic()))
        await upload(client, video_id, parts[i], number=i)
        await wait_for(client, video_id, published(i + 1))


async def test_a_live_stream_behind_drops_its_top_rung_then_restores_it(
    make_client: AppClient, media: MediaFactory
) -> None:
    ladder = TranscodeConfig(ladder=list(TEST_LADDER), workers=1, overload_delay_s=0.001)
    client = await make_client(transcode=ladder)
    parts = media.split(media("mp4", duration_s=12, gop=30), 2.0)
    assert len(parts) == 6
    # Every job publishes later than 1 ms after its upload: the stream is "behind".
    start = time.monotonic()
    await _live(client, "busy", parts, range(1), start)
    runner = client.app[STREAMS].runners["busy"]
    assert runner.overload.delay_s == 0.001
    info = await (await client.get("/api/videos/busy")).json()
    assert info["droppedRungs"] == ["240p"]
    # Left out from its first frame: the master names only the rung that has segments.
    master = m3u8.loads((await fetch(client, "/viewstream/metadata/busy")).decode())
    assert [p.stream_info.resolution for p in master.playlists] == [(192, 144)]
    samples = await _metrics(client)
    assert _get(samples, "streamd_rungs_dropped", rung="240p") == 1
    assert _get(samples, "streamd_ladder_changes_total", rung="240p", change="dropped") == 1
    await _live(client, "busy", parts, range(1, 2), start)
    # Caught up: three calm jobs bring the rung back.
    runner.overload.delay_s = 1000.0
    await _live(client, "busy", parts, range(2, 6), start)
    info = await (await client.get("/api/videos/busy")).json()
    assert info["droppedRungs"] == []
    assert info["uploads"]["failed"] == 0
    samples = await _metrics(client)
    assert _get(samples, "streamd_ladder_changes_total", rung="240p", change="restored") == 1
    master = m3u8.loads((await fetch(client, "/viewstream/metadata/busy")).decode())
    assert sorted(p.stream_info.resolution for p in master.playlists) == [(192, 144), (320, 240)]
    for packaging in ("ts", "fmp4"):
        top = m3u8.loads((await fetch(client, f"/hls/busy/{packaging}/240p/index.m3u8")).decode())
        low = m3u8.loads((await fetch(client, f"/hls/busy/{packaging}/144p/index.m3u8")).decode())
        assert [bool(s.gap_tag) for s in top.segments] == [True] * 5 + [False]
        assert not any(s.gap_tag for s in low.segments)
        # The same timeline in both: players switch between them at any segment.
        assert [s.duration for s in top.segments] == [s.duration for s in low.segments]
    await fetch(client, "/hls/busy/ts/240p/segment-1.ts", 404)
    # /viewstream asked for the dropped rung gives the next one down.
    resp = await client.get("/viewstream/busy?timestamp=3&resolution=240p")
    assert resp.status == 200
    assert resp.headers["X-Resolution"] == "144p"


async def test_a_recording_runs_in_the_background(
    make_client: AppClient, media: MediaFactory
) -> None:
    client = await make_client(transcode=TranscodeConfig(ladder=["144p:150k"], workers=1))
    parts = media.split(media("mp4", duration_s=8, gop=30), 2.0)
    for i, part in enumerate(parts):  # as fast as it can: a recording
        await upload(client, "rec", part, number=i)
    stream = client.app[STREAMS].records["rec"]
    assert stream.recording
    await wait_for(client, "rec", published(len(parts)))
    # Its jobs ran on the niced workers: look at them.
    jobs = client.app[STREAMS].jobs
    niced = [p for w in jobs._background for p in w.processes()]  # type: ignore[attr-defined]
    assert niced, "no background worker was started"
    for proc in niced:
        stat = Path(f"/proc/{proc.pid}/stat").read_text()  # noqa: ASYNC240
        fields = stat.rsplit(")", 1)[1].split()
        assert int(fields[16]) == 19  # nice, field 19 of /proc/PID/stat


async def test_a_job_behind_real_time_leaves_the_top_rung_out_at_once(
    make_client: AppClient, media: MediaFactory, tmp_path: Path
) -> None:
    ladder = TranscodeConfig(ladder=list(TEST_LADDER), workers=1, overload_delay_s=0.001)
    client = await make_client(transcode=ladder)
    # One 6 s upload: three segments from one job, behind from its first frame.
    await upload(client, "slow", media("mp4", duration_s=6, gop=30), number=0)
    info = await wait_for(client, "slow", published(1))
    assert info["segments"] == 3
    assert info["droppedRungs"] == ["240p"]
    top = m3u8.loads((await fetch(client, "/hls/slow/fmp4/240p/index.m3u8")).decode())
    assert [bool(s.gap_tag) for s in top.segments] == [True, True, True]
    low = m3u8.loads((await fetch(client, "/hls/slow/fmp4/144p/index.m3u8")).decode())
    assert [s.duration for s in top.segments] == [s.duration for s in low.segments]
    # /viewstream asked for the rung left out gives the next one down, whole.
    first = await fetch(client, "/viewstream/slow?timestamp=0&resolution=240p&format=ts")
    (tmp_path / "first.ts").write_bytes(first)
    probe = ffprobe(tmp_path / "first.ts", "-show_streams", "-show_format")
    assert probe["streams"][0]["height"] == 144
    assert float(probe["format"]["duration"]) >= low.segments[0].duration - 0.1


def test_a_live_session_leaves_its_top_rung_out_and_takes_it_back() -> None:
    """In one long live job: late by an overload delay at the 2 s cut, the tallest rung is
    left out of new segments; on time again, it comes back three cuts later."""
    settings = EncodeSettings(tuple(parse_ladder(TEST_LADDER)), 1.0, "ultrafast", 64_000)
    late = [0.0]
    segments: list[SegmentMedia] = []
    pipeline = StreamPipeline(PipelineState(), settings, segments.append, behind=lambda _: late[0])
    pipeline.begin_upload(0, None, Geometry(320, 240), 30.0)
    start = PipelineState().video_pts_90k
    for i in range(30 * 9):
        pts = start + i * 3000
        late[0] = 1.5 if 60 <= i < 120 else 0.0  # behind from 2 s to 4 s
        pipeline.plan_frame(pts)
        frames = [av.VideoFrame(r.width, r.height, "yuv420p") for r in pipeline.active_rungs]
        pipeline.push_video(frames, pts)
        pipeline.push_audio(np.zeros((2, 1600), np.float32), None)
    pipeline.end_upload()
    pipeline.finish()
    assert [s.skip_rungs for s in segments] == [0, 0, 1, 1, 1, 1, 0, 0, 0]
    for s in segments:
        assert [bool(v) for v in s.video] == [s.skip_rungs == 0, True]
        assert s.video[-1][0].is_keyframe
    restored = segments[6].video[0]
    assert restored[0].is_keyframe  # a fresh encoder, from an IDR at the cut
