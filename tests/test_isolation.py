"""A worker that dies on an upload takes down that upload only, never the server."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
from dataclasses import replace
from pathlib import Path

import m3u8
import pytest
from aiohttp.test_utils import TestClient

from streamd.appkeys import JOBS
from streamd.config import Config
from tests.conftest import AppClient, MediaFactory, fetch, published, upload, wait_for


async def test_worker_crash_fails_one_upload_and_the_stream_goes_on(
    client: TestClient, media: MediaFactory
) -> None:
    """The upload a worker died on is failed; its time (what it did not publish) becomes
    EXT-X-GAP, so the uploads after it keep their place on the timeline."""
    await upload(client, "crash", media("mp4", duration_s=2, gop=30), number=0)
    await wait_for(client, "crash", published(1))
    await upload(client, "crash", media("mp4", size="640x480", duration_s=30, gop=30), number=1)
    await wait_for(client, "crash", lambda v: v["uploads"]["transcoding"] == 1)
    jobs = client.app[JOBS]
    pids = [
        p.pid
        for w in jobs._workers
        if w.busy  # type: ignore[attr-defined]
        for p in w.pool._processes.values()
    ]
    assert len(pids) == 1
    for pid in pids:  # as if FFmpeg segfaulted on this upload
        os.kill(pid, signal.SIGKILL)
    info = await wait_for(client, "crash", published(2))
    up = info["uploadList"][1]
    assert up["state"] == "failed"
    assert "crashed" in up["error"]
    await upload(client, "crash", media("mp4", duration_s=2, gop=30), number=2)
    info = await wait_for(client, "crash", published(3))
    assert info["uploadList"][2]["state"] == "published"
    assert jobs.healthy()
    playlist = m3u8.loads((await fetch(client, "/hls/crash/ts/240p/index.m3u8")).decode())
    gaps = [seg for seg in playlist.segments if seg.gap_tag]
    assert gaps, "the failed upload's time is a gap"
    assert all(seg.duration <= playlist.target_duration for seg in playlist.segments)
    # Upload 2 begins where upload 1 would have ended: 2 s + 30 s.
    starts = list(itertools.accumulate(seg.duration for seg in playlist.segments))
    assert starts[-2] == pytest.approx(32.0, abs=0.05)
    assert starts[-1] == pytest.approx(34.0, abs=0.05)


def _proc(pid: int, name: str) -> str | None:
    """/proc/PID/NAME, or None once the process is gone."""
    try:
        return Path(f"/proc/{pid}/{name}").read_text()
    except FileNotFoundError:
        return None


async def test_a_hung_worker_is_killed_and_the_stream_goes_on(
    make_client: AppClient, config: Config, media: MediaFactory
) -> None:
    transcode = replace(config.transcode, upload_timeout_s=3.0, worker_memory_bytes=3 << 30)
    client = await make_client(replace(config, transcode=transcode))
    await upload(client, "hang", media("mp4", size="640x480", duration_s=30, gop=30), number=0)
    await wait_for(client, "hang", lambda v: v["uploads"]["transcoding"] == 1)
    jobs = client.app[JOBS]
    (pid,) = [
        p.pid
        for w in jobs._workers
        if w.busy  # type: ignore[attr-defined]
        for p in w.pool._processes.values()
    ]
    # Workers run under the configured address-space limit.
    limits = _proc(pid, "limits") or ""
    line = next(x for x in limits.splitlines() if x.startswith("Max address space"))
    assert line.split()[3:5] == [str(3 << 30)] * 2
    os.kill(pid, signal.SIGSTOP)  # as if FFmpeg looped forever on this upload
    info = await wait_for(client, "hang", published(1), timeout_s=30)
    (up,) = info["uploadList"]
    assert up["state"] == "failed"
    assert "took too long" in up["error"]
    assert "upload_timeout_s" in up["error"]
    # SIGKILL was sent; the kernel takes a moment to tear a large process down.
    for _ in range(100):
        stat = _proc(pid, "stat")
        if stat is None or ") Z " in stat:
            break
        await asyncio.sleep(0.05)
    assert stat is None or ") Z " in stat, "the hung worker is gone (or a zombie)"
    await upload(client, "hang", media("mp4", duration_s=2, gop=30), number=1)
    info = await wait_for(client, "hang", published(2))
    assert info["uploadList"][1]["state"] == "published"
    assert jobs.healthy()
