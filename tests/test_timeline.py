"""The timeline survives what live senders do: a segment that never comes becomes an
EXT-X-GAP of its length, and a restarted encoder goes on after EXT-X-DISCONTINUITY."""

from __future__ import annotations

import asyncio
import subprocess
from datetime import datetime, timedelta

import m3u8
import pytest
from aiohttp.test_utils import TestClient

from streamd.config import UploadConfig
from tests.conftest import (
    AppClient,
    MediaFactory,
    fetch,
    ffmpeg_hls_put,
    published,
    upload,
    wait_for,
)

PLAYLISTS = ("/hls/{v}/ts/240p/index.m3u8", "/hls/{v}/fmp4/144p/index.m3u8")


async def playlists(client: TestClient, video_id: str) -> list[m3u8.M3U8]:
    return [m3u8.loads((await fetch(client, p.format(v=video_id))).decode()) for p in PLAYLISTS]


async def test_a_missing_segment_becomes_a_gap_and_the_clock_stays_true(
    make_client: AppClient, media: MediaFactory
) -> None:
    client = await make_client(upload=UploadConfig(max_bytes=20 << 20, gap_timeout_s=0.5))
    parts = media.split(media("mp4", duration_s=8, gop=30), 2.0)
    await upload(client, "g", parts[0], number=0)
    first = await wait_for(client, "g", published(1))
    # An upload's wall-clock time and publish delay count from its arrival (when its last
    # frame was at the sender), not from when the worker got to it.
    received = datetime.fromisoformat(first["uploadList"][0]["receivedAt"].replace("Z", "+00:00"))
    (seg0,) = (await playlists(client, "g"))[0].segments
    ends = seg0.current_program_date_time + timedelta(seconds=seg0.duration)
    assert abs((ends - received).total_seconds()) < 0.1  # EXTINF against the source's length
    assert first["publishDelayS"] > 0
    await upload(client, "g", parts[2], number=2)
    await upload(client, "g", parts[3], number=3)
    await wait_for(client, "g", published(3))
    # Upload 1 came too late: the stream has moved past it.
    late = await client.post(
        "/upload/g", data=parts[1].read_bytes(), headers={"X-Segment-Number": "1"}
    )
    assert late.status == 409, await late.text()
    assert (await late.json())["error"] == "segment_conflict"
    for playlist in await playlists(client, "g"):
        segs = playlist.segments
        assert [bool(s.gap_tag) for s in segs] == [False, True, False, False]
        assert segs[1].duration == pytest.approx(segs[0].duration, abs=0.05)
        # Wall-clock time goes on through the gap: segment 2 starts after 0 and the gap.
        expected = segs[0].current_program_date_time + timedelta(
            seconds=segs[0].duration + segs[1].duration
        )
        assert abs((segs[2].current_program_date_time - expected).total_seconds()) < 0.01
        assert not any(s.discontinuity for s in segs)
    # The gap is not served, and /viewstream at its time says so.
    await fetch(client, "/hls/g/ts/240p/segment-1.ts", 404)
    await fetch(client, "/viewstream/g?timestamp=3", 404)
    info = await (await client.get("/api/videos/g")).json()
    assert info["segments"] == 4


async def test_a_restarted_encoder_goes_on_after_a_discontinuity(
    client: TestClient, media: MediaFactory
) -> None:
    parts = media.split(media("mp4", duration_s=4, gop=30), 2.0)
    other = media.split(media("mp4", duration_s=4, gop=30, size="352x288"), 2.0)

    async def send(path: object, number: int, session: str, expect: int = 202) -> dict[str, object]:
        resp = await client.post(
            "/upload/d",
            data=path.read_bytes(),  # type: ignore[attr-defined]
            headers={"X-Segment-Number": str(number), "X-Publish-Session": session},
        )
        assert resp.status == expect, await resp.text()
        return await resp.json()  # type: ignore[no-any-return]

    await send(parts[0], 0, "first")
    await send(parts[1], 1, "first")
    await wait_for(client, "d", published(2))
    before = await playlists(client, "d")
    # The encoder restarts and counts from 0 again.
    body = await send(other[0], 0, "second")
    assert body["segment"] == 2
    retry = await send(other[0], 0, "second", expect=200)
    assert retry["duplicate"] is True
    await send(parts[0], 0, "second", expect=409)  # other bytes under the same number
    await send(other[1], 1, "second")
    await wait_for(client, "d", published(4))
    after = await playlists(client, "d")
    for old, new in zip(before, after, strict=True):
        assert new.media_sequence == old.media_sequence == 0
        assert [s.discontinuity for s in new.segments] == [False, False, True, False]
        assert new.dumps().startswith(old.dumps().replace("#EXT-X-ENDLIST\n", ""))
        first, restart = new.segments[1], new.segments[2]
        assert restart.current_program_date_time >= first.current_program_date_time
    # A bad session header is refused, not taken as a restart.
    resp = await client.post("/upload/d", data=b"x", headers={"X-Publish-Session": "x" * 65})
    assert resp.status == 400


@pytest.mark.slow
async def test_ffmpeg_counting_from_zero_again_is_a_restart(client: TestClient) -> None:
    url = str(client.make_url("/upload/ff/index.m3u8"))
    # The first run stops without EXT-X-ENDLIST, as an encoder that crashed; the second
    # names its segments from index0.ts again, and ends the stream (in real time, as a live
    # encoder sends: its last playlist must not overtake its first segment). Its pictures
    # differ: a segment with the same bytes would be a retry.
    for extra in (("-hls_flags", "omit_endlist"), ("-vf", "negate")):
        proc = await asyncio.create_subprocess_exec(
            *ffmpeg_hls_put(url, 3, *extra, realtime=extra[0] == "-vf"), stderr=subprocess.PIPE
        )
        _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()[-2000:]
        if extra[0] != "-vf":
            await wait_for(client, "ff", published(3))
    info = await wait_for(client, "ff", lambda v: v["state"] == "ended")
    assert info["uploads"]["published"] == 6
    for playlist in await playlists(client, "ff"):
        assert [s.discontinuity for s in playlist.segments] == [False] * 3 + [True] + [False] * 2
        assert playlist.is_endlist
