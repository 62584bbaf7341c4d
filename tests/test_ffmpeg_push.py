"""The encoder people already have: `ffmpeg -f hls -method PUT` streams through streamd."""

from __future__ import annotations

import asyncio

import m3u8
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import fetch, ffmpeg_hls_put, wait_for

pytestmark = pytest.mark.slow


async def test_live_ffmpeg_push_over_put(client: TestClient) -> None:
    url = str(client.make_url("/upload/camera/index.m3u8"))
    proc = await asyncio.create_subprocess_exec(
        *ffmpeg_hls_put(url, 6), stderr=asyncio.subprocess.PIPE
    )
    seen: list[int] = []
    while proc.returncode is None:
        resp = await client.get("/hls/camera/ts/240p/index.m3u8")
        if resp.status == 200:
            count = len(m3u8.loads(await resp.text()).segments)
            if not seen or count > seen[-1]:
                seen.append(count)
        try:
            await asyncio.wait_for(proc.wait(), 0.2)
        except TimeoutError:
            pass
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    state = await (await client.get("/api/videos/camera")).json()
    assert len(seen) >= 3, f"the playlist should grow while ffmpeg streams: {seen} {state}"
    # ffmpeg's last playlist carries EXT-X-ENDLIST: the stream ends by itself.
    info = await wait_for(client, "camera", lambda v: v["state"] == "ended")
    assert info["durationS"] == pytest.approx(6.0, abs=0.1)
    assert info["uploads"]["failed"] == 0
    playlist = m3u8.loads((await fetch(client, "/hls/camera/fmp4/240p/index.m3u8")).decode())
    assert playlist.is_endlist
    assert sum(s.duration for s in playlist.segments) == pytest.approx(6.0, abs=0.1)


async def test_ffmpeg_fmp4_push(client: TestClient) -> None:
    url = str(client.make_url("/upload/cmafcam/index.m3u8"))
    proc = await asyncio.create_subprocess_exec(
        *ffmpeg_hls_put(url, 4, "-hls_segment_type", "fmp4", realtime=False),
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    info = await wait_for(client, "cmafcam", lambda v: v["state"] == "ended")
    assert info["durationS"] == pytest.approx(4.0, abs=0.1)
    assert info["uploads"]["published"] == 4
