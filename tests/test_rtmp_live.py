"""Live over RTMP, with the real encoder: ffmpeg publishes to streamd's listener, one worker
transcodes the session as it arrives, and the playlists grow at real time."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import av
import m3u8
import numpy as np
import pytest
from aiohttp.test_utils import TestClient

from streamd.appkeys import JOBS
from streamd.config import AuthConfig, Config, IngestConfig
from tests.conftest import FFMPEG, TEST_KEY, AppClient, _free_port, fetch, ffprobe, wait_for
from tests.test_rtmp_ffmpeg import HEVC_PUBLISHER
from tests.test_transcode import _check_audio_joins, _frames, _segments

pytestmark = pytest.mark.slow


def ffmpeg_rtmp(url: str, seconds: float, *extra: str) -> list[str]:
    """ffmpeg publishing a 320x240 30 fps test picture (x264, 1 s GOP) and a tone, at -re."""
    return [
        FFMPEG, "-hide_banner", "-loglevel", "error", "-re",
        "-f", "lavfi", "-i", f"testsrc2=s=320x240:r=30:d={seconds}",
        "-f", "lavfi", "-i", f"sine=f=440:d={seconds}",
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "30",
        "-c:a", "aac", *extra, "-f", "flv", url,
    ]  # fmt: skip


async def start_ffmpeg(command: list[str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )


async def live_client(make_client: AppClient, config: Config, **ingest: Any) -> TestClient:
    port = _free_port()
    cfg = replace(config, ingest=IngestConfig(rtmp_port=port, srt_port=0, **ingest))
    client = await make_client(cfg)
    client.rtmp_url = f"rtmp://127.0.0.1:{port}/live"  # type: ignore[attr-defined]
    return client


until = partial(wait_for, timeout_s=30)  # the stream API polled, with the live tests' deadline


async def test_ffmpeg_publishes_live(make_client: AppClient, config: Config) -> None:
    client = await live_client(make_client, config, reconnect_window_s=1.0)
    url = f"{client.rtmp_url}/cam?key={TEST_KEY}"  # type: ignore[attr-defined]
    started = time.monotonic()
    ffmpeg = await start_ffmpeg(ffmpeg_rtmp(url, 8))
    # Live: segments are published while the encoder is still sending, at real time.
    seen = await until(client, "cam", lambda v: v["segments"] >= 2)
    assert ffmpeg.returncode is None, "published only after the publisher finished"
    # A highlight saved while the event is still live.
    early = await fetch(client, "/viewstream/cam/clip?from=0&to=1&format=mov&resolution=240p")
    assert ffmpeg.returncode is None
    (Path(config.data_dir).parent / "early.mov").write_bytes(early)
    (video,) = ffprobe(
        Path(config.data_dir).parent / "early.mov", "-show_streams", "-select_streams", "v"
    )["streams"]
    assert float(video["start_time"]) == 0
    assert time.monotonic() - started < 6
    live = seen["ingest"]
    assert (live["protocol"], live["connected"]) == ("rtmp", True)
    assert live["frames"] > 30
    assert (live["source"]["width"], live["source"]["height"]) == (320, 240)
    metrics = (await fetch(client, "/metrics")).decode()
    assert 'streamd_ingest_frames{protocol="rtmp",stream="cam"}' in metrics
    _, err = await ffmpeg.communicate()
    assert ffmpeg.returncode == 0, err.decode()
    # The publisher left; after the reconnect window the stream ends.
    v = await until(client, "cam", lambda v: v["state"] == "ended")
    assert v["uploads"]["published"] == 1
    assert not v["ingest"]["connected"]
    assert abs(v["durationS"] - 8) < 0.3, v
    assert seen["segments"] >= 2
    playlist = m3u8.loads((await fetch(client, "/hls/cam/fmp4/240p/index.m3u8")).decode())
    assert playlist.is_endlist
    assert all(s.duration <= playlist.target_duration for s in playlist.segments)
    assert not any(s.discontinuity for s in playlist.segments)
    # Every segment plays: video and audio all the way.
    body = await fetch(client, "/viewstream/cam?timestamp=4&format=ts&resolution=240p")
    out = Path(config.data_dir).parent / "seg.ts"
    out.write_bytes(body)
    streams = ffprobe(out, "-show_streams")["streams"]
    assert {s["codec_type"] for s in streams} == {"video", "audio"}
    # The whole event as one file: four segments remuxed, as long as they are together.
    whole = await fetch(client, "/viewstream/cam/clip?from=0&to=8&format=mp4&resolution=240p")
    out = Path(config.data_dir).parent / "whole.mp4"
    out.write_bytes(whole)
    (video,) = ffprobe(out, "-show_streams", "-select_streams", "v")["streams"]
    assert len(playlist.segments) == 4
    total = sum(s.duration for s in playlist.segments)
    assert float(video["start_time"]) == 0
    assert float(video["duration"]) == pytest.approx(total, abs=1 / 30)
    # Encoded at the live preset (x264 names its settings in its first picture's SEI):
    # superfast looks no frames ahead.
    small = m3u8.loads((await fetch(client, "/hls/cam/fmp4/144p/index.m3u8")).decode())
    first = await fetch(client, f"/hls/cam/fmp4/144p/{small.segments[0].uri}")
    sei = first[first.index(b"x264 - core") :].split(b"\0", 1)[0].decode()
    assert {"subme=1", "rc_lookahead=0", "mbtree=0"} <= set(sei.split()), sei


async def test_wrong_key_and_app_refused_before_media(
    make_client: AppClient, config: Config
) -> None:
    client = await live_client(make_client, config)
    base = client.rtmp_url  # type: ignore[attr-defined]
    for url in (f"{base}/cam?key=wrong", f"{base}/cam", f"{base[:-4]}other/cam?key={TEST_KEY}"):
        ffmpeg = await start_ffmpeg(ffmpeg_rtmp(url, 2))
        await asyncio.wait_for(ffmpeg.communicate(), 30)
        assert ffmpeg.returncode != 0, url
    assert (await client.get("/api/videos/cam")).status == 404
    stored = [p for p in Path(config.data_dir).rglob("*") if p.is_file()]  # noqa: ASYNC240
    assert all(p.name.startswith("streamd.sqlite3") for p in stored), stored
    metrics = (await fetch(client, "/metrics")).decode()
    assert 'streamd_publishes_total{protocol="rtmp",result="unauthorized"} 2.0' in metrics
    assert 'streamd_publishes_total{protocol="rtmp",result="unknown_app"} 1.0' in metrics


async def test_two_publishers_and_a_second_on_a_live_stream(
    make_client: AppClient, config: Config
) -> None:
    client = await live_client(make_client, config)
    base = client.rtmp_url  # type: ignore[attr-defined]
    one = await start_ffmpeg(ffmpeg_rtmp(f"{base}/one?key={TEST_KEY}", 6))
    two = await start_ffmpeg(ffmpeg_rtmp(f"{base}/two?key={TEST_KEY}", 6))
    await until(client, "one", lambda v: v["segments"] >= 1)
    await until(client, "two", lambda v: v["segments"] >= 1)
    # A second publisher on a stream whose publisher is sending: refused, the first goes on.
    intruder = await start_ffmpeg(ffmpeg_rtmp(f"{base}/one?key={TEST_KEY}", 2))
    await asyncio.wait_for(intruder.communicate(), 30)
    assert intruder.returncode != 0
    for ffmpeg in (one, two):
        _, err = await asyncio.wait_for(ffmpeg.communicate(), 30)
        assert ffmpeg.returncode == 0, err.decode()
    for vid in ("one", "two"):
        v = await until(client, vid, lambda v: v["uploads"]["published"] == 1)
        assert abs(v["durationS"] - 6) < 0.3, v


async def test_publisher_returns_after_a_drop(make_client: AppClient, config: Config) -> None:
    """An encoder that reconnects within the window continues the stream after a
    discontinuity; media sequence and times go on."""
    client = await live_client(make_client, config, reconnect_window_s=30.0)
    url = f"{client.rtmp_url}/cam?key={TEST_KEY}"  # type: ignore[attr-defined]
    first = await start_ffmpeg(ffmpeg_rtmp(url, 30))
    await until(client, "cam", lambda v: v["segments"] >= 1)
    first.kill()  # the encoder dies mid-stream: no FCUnpublish, no deleteStream
    await first.communicate()
    await until(client, "cam", lambda v: v["uploads"]["published"] == 1)
    second = await start_ffmpeg(ffmpeg_rtmp(url, 3))
    await second.communicate()
    v = await until(client, "cam", lambda v: v["uploads"]["published"] == 2)
    assert v["state"] != "ended"
    playlist = m3u8.loads((await fetch(client, "/hls/cam/ts/240p/index.m3u8")).decode())
    discontinuities = [i for i, s in enumerate(playlist.segments) if s.discontinuity]
    assert len(discontinuities) == 1
    assert discontinuities[0] > 0
    assert v["durationS"] >= 4.5


def ffmpeg_http_put(url: str, seconds: float) -> list[str]:
    """ffmpeg sending one chunked PUT of MPEG-TS, at real time."""
    return [
        FFMPEG, "-hide_banner", "-loglevel", "error", "-re",
        "-f", "lavfi", "-i", f"testsrc2=s=320x240:r=30:d={seconds}",
        "-f", "lavfi", "-i", f"sine=f=440:d={seconds}",
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "30",
        "-c:a", "aac", "-f", "mpegts", "-method", "PUT",
        "-headers", f"Authorization: Bearer {TEST_KEY}\r\n", url,
    ]  # fmt: skip


async def test_chunked_http_put_is_a_live_session(make_client: AppClient, config: Config) -> None:
    client = await make_client(replace(config, ingest=IngestConfig(rtmp_port=0, srt_port=0)))
    url = str(client.make_url("/ingest/web.ts"))
    started = time.monotonic()
    ffmpeg = await start_ffmpeg(ffmpeg_http_put(url, 6))
    await until(client, "web", lambda v: v["segments"] >= 2)
    assert ffmpeg.returncode is None, "published only after the request ended"
    assert time.monotonic() - started < 5.5
    _, err = await asyncio.wait_for(ffmpeg.communicate(), 30)
    assert ffmpeg.returncode == 0, err.decode()
    v = await until(client, "web", lambda v: v["uploads"]["published"] == 1)
    assert abs(v["durationS"] - 6) < 0.3, v


async def test_chunked_http_refused_at_once(make_client: AppClient, config: Config) -> None:
    """A wrong key is answered at once and the connection closed, so ffmpeg fails instead
    of streaming into nothing (it ignores the status of a streaming request)."""
    client = await make_client(replace(config, ingest=IngestConfig(rtmp_port=0, srt_port=0)))
    command = ffmpeg_http_put(str(client.make_url("/ingest/web.ts")), 20)
    command[command.index(f"Authorization: Bearer {TEST_KEY}\r\n")] = "Authorization: Bearer x\r\n"
    started = time.monotonic()
    ffmpeg = await start_ffmpeg(command)
    await asyncio.wait_for(ffmpeg.communicate(), 30)
    assert ffmpeg.returncode != 0
    assert time.monotonic() - started < 10
    assert (await client.get("/api/videos/web")).status == 404


async def test_worker_killed_mid_stream_and_the_stream_goes_on(
    make_client: AppClient, config: Config
) -> None:
    """The live session's worker dies: a new one takes the publisher's bytes from where they
    stand, the time lost is EXT-X-GAP, and the publisher never notices."""
    client = await live_client(make_client, config, reconnect_window_s=1.0)
    url = f"{client.rtmp_url}/cam?key={TEST_KEY}"  # type: ignore[attr-defined]
    ffmpeg = await start_ffmpeg(ffmpeg_rtmp(url, 10))
    before = await until(client, "cam", lambda v: v["segments"] >= 2)
    jobs = client.app[JOBS]
    (pid,) = [
        p.pid
        for w in jobs._workers  # type: ignore[attr-defined]
        if w.busy
        for p in w.pool._processes.values()
    ]
    os.kill(pid, signal.SIGKILL)
    _, err = await asyncio.wait_for(ffmpeg.communicate(), 30)
    assert ffmpeg.returncode == 0, err.decode()  # the publisher was never dropped
    v = await until(client, "cam", lambda v: v["state"] == "ended")
    assert v["uploads"]["published"] == 1
    assert v["segments"] > before["segments"] + 2
    assert abs(v["durationS"] - 10) < 1.5, v
    playlist = m3u8.loads((await fetch(client, "/hls/cam/ts/240p/index.m3u8")).decode())
    segs = playlist.segments
    (restart,) = [i for i, s in enumerate(segs) if s.discontinuity]
    assert segs[restart - 1].gap_tag  # the time lost with the worker
    assert not any(s.gap_tag for s in segs[restart:])
    assert all(s.duration <= playlist.target_duration for s in segs)
    assert jobs.healthy()


async def test_extended_timestamps_and_enhanced_rtmp_hevc(
    make_client: AppClient, config: Config
) -> None:
    """A publisher past 4 h 40 min (timestamps beyond 24 bits) and an HEVC one sent by
    Enhanced RTMP's FourCC (PyAV's FFmpeg 8, as OBS 29.1+ sends it) both go live."""
    client = await live_client(make_client, config, reconnect_window_s=0.5)
    base = client.rtmp_url  # type: ignore[attr-defined]
    late = ffmpeg_rtmp(f"{base}/late?key={TEST_KEY}", 3, "-output_ts_offset", "17000")
    hevc = [sys.executable, "-c", HEVC_PUBLISHER, f"{base}/hevc?key={TEST_KEY}"]
    for command in (late, hevc):
        proc = await start_ffmpeg(command)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
    v = await until(client, "late", lambda v: v["state"] == "ended")
    assert abs(v["durationS"] - 3) < 0.3, v
    v = await until(client, "hevc", lambda v: v["state"] == "ended")
    assert v["ingest"]["source"]["videoCodec"] == "hevc"
    assert abs(v["durationS"] - 1) < 0.1, v
    body = await fetch(client, "/viewstream/hevc?timestamp=0&format=mp4&resolution=240p")
    out = Path(config.data_dir).parent / "hevc.mp4"
    out.write_bytes(body)
    (video,) = [s for s in ffprobe(out, "-show_streams")["streams"] if s["codec_type"] == "video"]
    assert video["codec_name"] == "h264"


async def test_av_sync_over_a_60_s_publish(
    make_client: AppClient, config: Config, tmp_path: Path
) -> None:
    """60 s over RTMP (sent as fast as ffmpeg can): audio and video end together and every
    segment join is seamless, in every rung."""
    client = await live_client(make_client, config, reconnect_window_s=0.5)
    command = ffmpeg_rtmp(f"{client.rtmp_url}/sync?key={TEST_KEY}", 60)  # type: ignore[attr-defined]
    command.remove("-re")
    proc = await start_ffmpeg(command)
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    v = await until(client, "sync", lambda v: v["state"] == "ended", timeout_s=120)
    assert abs(v["durationS"] - 60) < 0.1, v
    for rung in ("240p", "144p"):
        segs = await _segments(client, "sync", "ts", rung, tmp_path)
        joined = tmp_path / f"joined-{rung}.ts"
        joined.write_bytes(b"".join(s.read_bytes() for s in segs))
        _check_audio_joins(joined)
        pts = sorted(t for seg in segs for t, _ in _frames(seg))
        steps = np.diff(pts)
        assert steps.max() == pytest.approx(1 / 30, abs=2e-3), "no gap between segments"
        assert steps.min() == pytest.approx(1 / 30, abs=2e-3), "no overlap either"
        with av.open(str(joined)) as c:
            audio = [p for p in c.demux(audio=0) if p.pts is not None]
            a_start = float(audio[0].pts * audio[0].time_base)
            a_end = float(audio[-1].pts * audio[-1].time_base) + 1024 / 48000
        v_start, v_end = pts[0], pts[-1] + 1 / 30
        assert abs((a_end - a_start) - (v_end - v_start)) < 0.06, (a_start, a_end, pts[0], pts[-1])
        assert abs(a_start - v_start) < 0.06


async def test_a_new_publisher_takes_over_a_silent_one(
    make_client: AppClient, config: Config
) -> None:
    """An encoder reconnecting after a network drop finds its old connection still open but
    silent: it takes the stream over, and the old connection is closed."""
    client = await live_client(
        make_client,
        replace(config, auth=AuthConfig(publish_keys=[TEST_KEY, "abc"])),
        takeover_after_s=1.0,
    )
    port = int(client.rtmp_url.rsplit(":", 1)[1].split("/")[0])  # type: ignore[attr-defined]
    # A real ffmpeg session (live/cam?key=abc) that stops sending half way, socket left open.
    recorded = (Path(__file__).parent / "fixtures" / "rtmp-ffmpeg-publish.bin").read_bytes()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(recorded[: len(recorded) // 2])
    await writer.drain()
    v = await until(client, "cam", lambda v: (v["ingest"] or {}).get("frames", 0) > 10)
    assert v["ingest"]["connected"]
    await asyncio.sleep(1.5)  # the silence is what this test is about
    ffmpeg = await start_ffmpeg(ffmpeg_rtmp(f"{client.rtmp_url}/cam?key={TEST_KEY}", 3))  # type: ignore[attr-defined]
    _, err = await asyncio.wait_for(ffmpeg.communicate(), 30)
    assert ffmpeg.returncode == 0, err.decode()
    while await asyncio.wait_for(reader.read(1 << 16), 5):  # the old connection was closed
        pass
    writer.close()
    v = await until(client, "cam", lambda v: v["uploads"]["published"] == 2)
    playlist = m3u8.loads((await fetch(client, "/hls/cam/ts/240p/index.m3u8")).decode())
    assert sum(s.discontinuity for s in playlist.segments) == 1


async def test_source_passthrough_follows_its_keyframes(
    make_client: AppClient, config: Config
) -> None:
    """An H.264 source at the top rung's size and within its bitrate is published as that
    rung without re-encoding (x264 ultrafast's Constrained Baseline stays, where streamd's
    own rungs are High), segments follow its 3 s keyframe interval in every rung, and the
    target duration says so. Above the rung's bitrate, the rung is encoded."""
    client = await live_client(make_client, config, reconnect_window_s=0.5)
    base = client.rtmp_url  # type: ignore[attr-defined]
    for vid, rate, pix_fmt in (
        ("pass", "250k", "yuv420p"),
        ("fat", "1M", "yuv420p"),
        ("chroma", "250k", "yuv444p"),  # High 4:4:4: few players decode it
        ("bframes", "250k", "yuv420p"),  # Main with B-frames: OBS's x264 defaults
    ):
        command = ffmpeg_rtmp(f"{base}/{vid}?key={TEST_KEY}", 9, "-b:v", rate, "-pix_fmt", pix_fmt)
        command[command.index("-g") + 1] = "90"
        command.remove("-re")
        if vid == "bframes":
            at = command.index("-tune")
            command[at : at + 2] = ["-profile:v", "main"]
            command[command.index("ultrafast")] = "veryfast"
        proc = await start_ffmpeg(command)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
    v = await until(client, "pass", lambda v: v["state"] == "ended")
    codecs = {r["name"]: r["codecs"] for r in v["rungs"]}
    assert codecs["240p"].startswith("avc1.42"), codecs  # the source's own
    assert codecs["144p"].startswith("avc1.64"), codecs
    for packaging in ("ts", "fmp4"):
        for rung in ("240p", "144p"):
            text = (await fetch(client, f"/hls/pass/{packaging}/{rung}/index.m3u8")).decode()
            playlist = m3u8.loads(text)
            assert playlist.target_duration == 3
            assert [round(s.duration, 3) for s in playlist.segments] == [3.0, 3.0, 3.0]
    body = await fetch(client, "/viewstream/pass?timestamp=4&format=ts&resolution=240p")
    out = Path(config.data_dir).parent / "pass.ts"
    out.write_bytes(body)
    (video,) = [s for s in ffprobe(out, "-show_streams")["streams"] if s["codec_type"] == "video"]
    assert (video["profile"], video["width"]) == ("Constrained Baseline", 320)
    frames = _frames(out)
    assert len(frames) == 90
    assert [key for _, key in frames].count(True) == 1
    for vid in ("fat", "chroma"):
        v = await until(client, vid, lambda v: v["state"] == "ended")
        codecs = {r["name"]: r["codecs"] for r in v["rungs"]}
        assert codecs["240p"].startswith("avc1.64"), (vid, codecs)
    # A source with B-frames passes in decode order: every frame decodes, without an error.
    v = await until(client, "bframes", lambda v: v["state"] == "ended")
    assert {r["name"]: r["codecs"] for r in v["rungs"]}["240p"].startswith("avc1.4d")
    for packaging in ("ts", "fmp4"):
        segs = await _segments(client, "bframes", packaging, "240p", out.parent)
        joined = out.parent / f"bframes.{packaging}"
        if packaging == "fmp4":  # init + media: _segments gives each segment whole
            joined.write_bytes(segs[0].read_bytes())
            for seg in segs[1:]:
                data = seg.read_bytes()
                joined.write_bytes(joined.read_bytes() + data[data.index(b"moof") - 4 :])
        else:
            joined.write_bytes(b"".join(seg.read_bytes() for seg in segs))
        decoder = await asyncio.create_subprocess_exec(
            *[FFMPEG, "-v", "error", "-i", str(joined), "-f", "null", "-"],
            stderr=asyncio.subprocess.PIPE,
        )
        _, errors = await decoder.communicate()
        assert (decoder.returncode, errors.decode()[:2000]) == (0, "")
        assert len(_frames(joined)) == 270


async def test_a_live_source_past_the_limits_is_refused_by_its_worker(
    make_client: AppClient, config: Config
) -> None:
    """Live sources meet the same limits as uploads: a picture larger than
    `upload.max_pixels` fails the session (the reason in the API), the publisher is cut
    off, nothing is published, and the server goes on."""
    small = replace(config, upload=replace(config.upload, max_pixels=160 * 120))
    client = await live_client(make_client, small, reconnect_window_s=0.5)
    url = f"{client.rtmp_url}/big?key={TEST_KEY}"  # type: ignore[attr-defined]
    ffmpeg = await start_ffmpeg(ffmpeg_rtmp(url, 20))
    started = time.monotonic()
    await asyncio.wait_for(ffmpeg.communicate(), 30)
    assert ffmpeg.returncode != 0, "the publisher should have been cut off"
    assert time.monotonic() - started < 10
    v = await until(client, "big", lambda v: v["uploads"]["failed"] == 1)
    assert "upload.max_pixels" in v["uploadList"][0]["error"]
    assert v["segments"] == 0
    assert (await client.get("/healthz")).status == 200
