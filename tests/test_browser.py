"""A real browser: headless Chromium plays /player.html with hls.js and switches rung."""

from __future__ import annotations

import math
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import m3u8
import pytest
from aiohttp.test_utils import TestClient

from streamd.access import tokens
from streamd.config import AuthConfig, Config, ProtectionConfig, RetentionConfig, UploadConfig
from tests.conftest import (
    TEST_KEY,
    AppClient,
    MediaFactory,
    browser,
    fetch,
    ffprobe,
    published,
    upload,
    wait_for,
)

pytestmark = pytest.mark.slow


async def _play(url: str, *args: str) -> dict[str, Any]:
    return await browser("play.mjs", "--url", url, *args)


async def test_player_plays_and_switches_rung(client: TestClient, media: MediaFactory) -> None:
    parts = media.split(media("mp4", duration_s=10, gop=30), 2.0)
    for i, part in enumerate(parts):
        await upload(client, "browser", part, number=i)
    await wait_for(client, "browser", published(len(parts)))
    url = str(client.make_url("/player.html?v=browser"))
    result = await _play(url, "--min-time", "3", "--switch", "--timeout", "90")
    assert result["ok"], result
    assert result["fatalErrors"] == []
    assert float(result["currentTime"]) >= 3  # type: ignore[arg-type]
    assert sorted(result["levels"]) == [144, 240]  # type: ignore[type-var]
    assert result["switchedTo"] is not None
    assert result["levelAfter"] == result["switchedTo"]
    assert result["live"] is True  # EVENT playlist, not ended: played as live with DVR


async def test_the_streams_page_lists_a_stream_and_draws_the_servers_memory(
    client: TestClient, media: MediaFactory, tmp_path: Path
) -> None:
    """The / page an operator keeps open: a card per stream, and a line of the server's
    resident memory over the last minutes (its processes by kind in the tooltip)."""
    await upload(client, "front", media("mp4"), number=0)
    await wait_for(client, "front", published(1))
    body = await (await client.get("/api/videos")).json()
    resident = body["server"]["residentBytes"]
    assert resident["primary"] > 20e6
    assert resident["worker"] > 30e6
    shot = tmp_path / "index.png"
    result = await browser(
        "page.mjs", "--url", str(client.make_url("/")), "--stream", "front", "--samples", "3",
        "--screenshot", str(shot),
    )  # fmt: skip
    assert result["ok"], result
    assert result["points"] >= 3  # a refresh every 2 s, a point each
    assert re.fullmatch(r"RAM \d+ MB", result["memoryText"]), result
    assert "primary" in result["memoryTitle"]
    assert "worker" in result["memoryTitle"]
    assert shot.stat().st_size > 10_000


async def test_player_plays_an_ended_stream_from_the_start(
    client: TestClient, media: MediaFactory
) -> None:
    parts = media.split(media("mp4", duration_s=6, gop=30), 2.0)
    for i, part in enumerate(parts):
        await upload(client, "vod", part, number=i)
    await client.post("/upload/vod/end")
    await wait_for(client, "vod", lambda v: v["state"] == "ended")
    url = str(client.make_url("/player.html?v=vod"))
    result = await _play(url, "--min-time", "3", "--timeout", "60", "--hover", "0.6")
    assert result["ok"], result
    assert result["live"] is False
    # Hovering 60% along the seek bar (3.6 s) previews segment 1's picture (2-4 s), cut
    # from the first sprite sheet, which the browser loaded.
    preview = result["preview"]
    assert preview is not None, result
    assert preview["start"] == 2.0
    assert preview["image"].endswith("/hls/vod/thumbs/sheet00000.jpg")
    assert preview["position"] == "-160px 0px"
    assert preview["sheet"] == [800, 600]


async def test_player_saves_a_clip_and_jumps(
    client: TestClient, media: MediaFactory, tmp_path: Path
) -> None:
    """ "Save last 30 s" downloads the segments up to the position as one MP4 (here all of
    a 6 s stream, from 0); the -10 s button and the arrow keys move by 10 s."""
    parts = media.split(media("mp4", duration_s=6, gop=30), 2.0)
    for i, part in enumerate(parts):
        await upload(client, "clips", part, number=i)
    await client.post("/upload/clips/end")
    await wait_for(client, "clips", lambda v: v["state"] == "ended")
    saved = tmp_path / "clip.mp4"
    url = str(client.make_url("/player.html?v=clips"))
    result = await _play(url, "--min-time", "3", "--timeout", "60", "--clip", str(saved))
    assert result["ok"], result
    clip = result["clip"]
    assert "/viewstream/clips/clip?from=0.000&to=" in clip["url"], clip
    assert clip["filename"].endswith(".mp4")
    probe = ffprobe(saved, "-show_streams", "-show_format")
    video = next(s for s in probe["streams"] if s["codec_type"] == "video")
    assert float(video["start_time"]) == 0
    # Whole segments up to the position (3 s or more in: segments 0 and 1, or all three).
    assert float(video["duration"]) == pytest.approx(
        2.0 * math.ceil(clip["currentTime"] / 2.0), abs=1 / 30
    )
    at, after_back, after_forward, duration = result["jumps"]
    assert at >= 3
    assert after_back == pytest.approx(max(0.0, at - 10), abs=0.05)
    assert after_forward == pytest.approx(min(duration, after_back + 10), abs=0.05)

    # A marked span: "Mark in" at 2.5 s, saved at 5.5 s: segments 1 and 2 (2 to 6 s).
    marked = tmp_path / "marked.mp4"
    result = await _play(
        url, "--min-time", "1", "--timeout", "60", "--clip", str(marked), "--mark", "2.5,5.5"
    )
    assert result["ok"], result
    assert result["markLabel"] == "Save from mark"
    assert "from=2.500&to=5.500" in result["clip"]["url"], result["clip"]
    (video,) = ffprobe(marked, "-show_streams", "-select_streams", "v")["streams"]
    assert float(video["duration"]) == pytest.approx(4.0, abs=1 / 30)


async def test_player_plays_a_signed_link(
    make_client: AppClient, config: Config, media: MediaFactory
) -> None:
    auth = AuthConfig(publish_keys=[TEST_KEY], viewer_secret="browser-secret")
    client = await make_client(replace(config, auth=auth))
    parts = media.split(media("mp4", duration_s=6, gop=30), 2.0)
    for i, part in enumerate(parts):
        await upload(client, "signed", part, number=i)
    await wait_for(client, "signed", published(len(parts)))
    token = tokens.sign("browser-secret", "signed", int(time.time()) + 600)
    url = str(client.make_url(f"/player.html?v=signed&token={token}"))
    result = await _play(url, "--min-time", "2", "--timeout", "60")
    assert result["ok"], result
    assert result["fatalErrors"] == []
    # The same media without the token is refused.
    assert (await client.get("/hls/signed/fmp4/240p/index.m3u8")).status == 401


async def test_player_plays_an_aes_128_stream(
    make_client: AppClient, config: Config, media: MediaFactory
) -> None:
    auth = AuthConfig(publish_keys=[TEST_KEY], viewer_secret="aes-secret")
    protection = ProtectionConfig(key_rotation_segments=2)  # a key change while it plays
    client = await make_client(replace(config, auth=auth, protection=protection))
    parts = media.split(media("mp4", duration_s=8, gop=30), 2.0)
    for i, part in enumerate(parts):
        query = "?encryption=aes-128" if i == 0 else ""
        resp = await client.post(
            f"/upload/aes{query}", data=part.read_bytes(), headers={"X-Segment-Number": str(i)}
        )
        assert resp.status == 202, await resp.text()
    await client.post("/upload/aes/end")
    await wait_for(client, "aes", lambda v: v["state"] == "ended")
    token = tokens.sign("aes-secret", "aes", int(time.time()) + 600)
    playlist = await (await client.get(f"/hls/aes/fmp4/240p/index.m3u8?token={token}")).text()
    assert playlist.count("METHOD=AES-128") >= 2
    url = str(client.make_url(f"/player.html?v=aes&token={token}"))
    result = await _play(url, "--min-time", "5", "--timeout", "60")
    assert result["ok"], result
    assert result["fatalErrors"] == []
    assert float(result["currentTime"]) >= 5  # type: ignore[arg-type]


async def test_player_plays_through_a_gap(make_client: AppClient, media: MediaFactory) -> None:
    # Upload 1 never comes: after the gap timeout its time is an EXT-X-GAP in every rung.
    client = await make_client(upload=UploadConfig(max_bytes=20 << 20, gap_timeout_s=0.5))
    parts = media.split(media("mp4", duration_s=8, gop=30), 2.0)
    for i in (0, 2, 3):
        await upload(client, "holey", parts[i], number=i)
    await client.post("/upload/holey/end")
    info = await wait_for(client, "holey", lambda v: v["state"] == "ended")
    assert info["segments"] == 4
    url = str(client.make_url("/player.html?v=holey"))
    result = await _play(url, "--min-time", "5", "--timeout", "60")
    assert result["ok"], result
    assert result["fatalErrors"] == []
    assert float(result["currentTime"]) >= 5  # type: ignore[arg-type]


async def test_player_plays_low_latency_hls_without_stalls(
    make_client: AppClient, config: Config
) -> None:
    """An RTMP-fed live stream in hls.js's low-latency mode: parts, blocking reloads, and
    60 s of playback (issue 12) with no stall and every frame, about a second behind real
    time, caught up with the live edge, while an 18 s DVR window slides under it."""
    from tests.test_rtmp_live import ffmpeg_rtmp, live_client, start_ffmpeg, until

    window = RetentionConfig(dvr_window_min=0.3)
    client = await live_client(make_client, replace(config, retention=window))
    url = f"{client.rtmp_url}/llplay?key={TEST_KEY}"  # type: ignore[attr-defined]
    ffmpeg = await start_ffmpeg(ffmpeg_rtmp(url, 120))
    try:
        await until(client, "llplay", lambda v: v["segments"] >= 1)
        page = str(client.make_url("/player.html?v=llplay"))
        result = await _play(page, "--min-time", "2", "--watch", "60", "--timeout", "110")
        playlist = m3u8.loads((await fetch(client, "/hls/llplay/fmp4/240p/index.m3u8")).decode())
    finally:
        if ffmpeg.returncode is None:
            ffmpeg.kill()
        await ffmpeg.wait()
    assert result["ok"], result
    watch = result["watch"]
    assert isinstance(watch, dict), result
    assert watch["lowLatency"], watch
    assert watch["partTarget"] == pytest.approx(0.102), watch
    assert watch["stalls"] == 0, watch
    assert watch["advanced"] >= 59, watch
    assert playlist.media_sequence > 0
    assert playlist.playlist_type is None
    assert watch["partsLoaded"] >= 100, watch  # it plays parts, not whole segments
    # Every frame shown: a hole in a part's audio once made Chromium drop the video up to
    # the next keyframe (1 s) at every other segment, with no stall to show for it.
    assert watch["framesPresented"] >= 29 * watch["advanced"], watch
    assert all(jump < 0.15 for _, jump in watch["presentGaps"]), watch
    assert watch["realtimeP50"] < 2.0, watch  # behind the PDT (set as the first part came)
    # Caught up with PART-HOLD-BACK (hls.js alone stays ~0.5 s further back: it speeds up
    # only with over 1 s buffered), by playing faster for a while.
    assert watch["overTargetP50"] < 0.25, watch
    assert watch["maxPlaybackRate"] > 1, watch
