"""Survive a restart: SIGKILL mid-transcode, start again, nothing published or accepted lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import m3u8
import pytest

from tests.conftest import AUTH, MediaFactory, ServerProcess, server_process

pytestmark = pytest.mark.slow


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    async with server_process(tmp_path / "data") as srv:
        yield srv


async def _video(s: aiohttp.ClientSession, srv: ServerProcess, vid: str) -> dict[str, Any]:
    async with s.get(f"{srv.url}/api/videos/{vid}") as r:
        return await r.json()  # type: ignore[no-any-return]


async def _until(
    s: aiohttp.ClientSession,
    srv: ServerProcess,
    vid: str,
    done: Callable[[dict[str, Any]], bool],
    timeout_s: float = 60,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = await _video(s, srv, vid)
        if done(v):
            return v
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out: {v}")


async def test_kill_9_mid_transcode_loses_nothing(
    server: ServerProcess, media: MediaFactory
) -> None:
    first = media("mp4", duration_s=2, gop=30)
    long = media("mp4", size="640x480", duration_s=40, gop=30, tone_hz=500)
    last = media("mp4", duration_s=2, gop=30, tone_hz=700)
    async with aiohttp.ClientSession(headers=AUTH) as s:
        async with s.post(f"{server.url}/upload/event", data=first.open("rb")) as r:
            assert r.status == 202
        await _until(s, server, "event", lambda v: v["segments"] == 1)
        async with s.post(f"{server.url}/upload/event", data=long.open("rb")) as r:
            assert (await r.json())["segment"] == 1
        async with s.post(f"{server.url}/upload/event", data=last.open("rb")) as r:
            assert (await r.json())["segment"] == 2
        # Kill while upload 1 is transcoding, after some of its segments were published.
        v = await _until(
            s, server, "event", lambda v: v["segments"] >= 3 and v["uploads"]["transcoding"] == 1
        )
        async with s.get(f"{server.url}/hls/event/ts/240p/index.m3u8") as r:
            before = m3u8.loads(await r.text())
        seen = {}
        for seg in before.segments:
            async with s.get(f"{server.url}/hls/event/ts/240p/{seg.uri}") as r:
                seen[seg.uri] = await r.read()
    await server.kill()

    await server.start()
    async with aiohttp.ClientSession(headers=AUTH) as s:
        v = await _video(s, server, "event")
        assert v["segments"] >= len(before.segments), "published segments survive"
        v = await _until(s, server, "event", lambda v: v["uploads"]["published"] == 3)
        assert v["uploads"]["failed"] == 0
        assert v["durationS"] == pytest.approx(44.0, abs=0.05)
        async with s.get(f"{server.url}/hls/event/ts/240p/index.m3u8") as r:
            after = m3u8.loads(await r.text())
        uris = [seg.uri for seg in after.segments]
        assert uris[: len(before.segments)] == [seg.uri for seg in before.segments]
        assert len(set(uris)) == len(uris)
        assert sum(seg.duration for seg in after.segments) == pytest.approx(44.0, abs=0.05)
        for uri, data in seen.items():
            async with s.get(f"{server.url}/hls/event/ts/240p/{uri}") as r:
                assert await r.read() == data, f"{uri} changed across the restart"
        # The stream goes on with the next number.
        async with s.post(f"{server.url}/upload/event", data=first.open("rb")) as r:
            assert (await r.json())["segment"] == 3
        await _until(s, server, "event", lambda v: v["uploads"]["published"] == 4)


async def test_kill_9_mid_recording_goes_on_from_its_pieces(
    server: ServerProcess, media: MediaFactory
) -> None:
    """A recording uploaded whole, killed part way: after the restart, the pieces not yet
    published are transcoded again, what was published stays as it was, and the playlists
    end as VOD with every second of it."""
    recording = media("mp4", size="640x480", duration_s=40, gop=30, tone_hz=600)
    async with aiohttp.ClientSession(headers=AUTH) as s:
        async with s.post(f"{server.url}/upload/rec?mode=vod", data=recording.open("rb")) as r:
            assert r.status == 202, await r.text()
        await _until(s, server, "rec", lambda v: 2 <= v["segments"] and not v["recording"]["done"])
        async with s.get(f"{server.url}/hls/rec/ts/240p/index.m3u8") as r:
            before = m3u8.loads(await r.text())
        seen = {}
        for seg in before.segments:
            async with s.get(f"{server.url}/hls/rec/ts/240p/{seg.uri}") as r:
                seen[seg.uri] = await r.read()
    await server.kill()

    await server.start()
    async with aiohttp.ClientSession(headers=AUTH) as s:
        v = await _until(s, server, "rec", lambda v: v["state"] == "ended", timeout_s=120)
        assert v["uploads"]["failed"] == 0
        assert v["durationS"] == pytest.approx(40.0, abs=0.05)
        async with s.get(f"{server.url}/hls/rec/ts/240p/index.m3u8") as r:
            after = m3u8.loads(await r.text())
        assert after.playlist_type == "vod"
        uris = [seg.uri for seg in after.segments]
        assert uris[: len(before.segments)] == [seg.uri for seg in before.segments]
        assert len(set(uris)) == len(uris)
        assert sum(seg.duration for seg in after.segments) == pytest.approx(40.0, abs=0.05)
        for uri, data in seen.items():
            async with s.get(f"{server.url}/hls/rec/ts/240p/{uri}") as r:
                assert await r.read() == data, f"{uri} changed across the restart"
