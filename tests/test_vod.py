"""Recordings uploaded whole (`?mode=vod`): resumable (tus, with a real tus client too),
split at keyframes and transcoded on every worker at once, published in order as pieces
finish, and closed as VOD playlists whose durations add up to the source's."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import av
import m3u8
import pytest
from aiohttp.test_utils import TestClient

from streamd.client.push import StreamdClient
from streamd.client.recording import push_recording
from streamd.config import Config
from streamd.model.ladder import RungSpec
from streamd.model.pipeline import EncodeSettings
from streamd.model.recording import plan_pieces
from tests.conftest import (
    AUTH,
    TEST_KEY,
    AppClient,
    MediaFactory,
    fetch,
    published,
    upload,
    wait_for,
)
from tests.test_rtmp_live import ffmpeg_rtmp, live_client, start_ffmpeg, until
from tests.test_transcode import _check_audio_joins, _frames

pytestmark = pytest.mark.slow
FRAME_S = 1 / 30


def _source_duration_s(path: Path) -> float:
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        return float(vs.frames / vs.average_rate) if vs.frames and vs.average_rate else 0.0


def test_pieces_start_at_keyframes_and_join_exactly() -> None:
    settings = EncodeSettings((RungSpec.parse("240p:300k"),), 2.0, "veryfast", 128_000)
    keys = tuple(float(k) for k in range(0, 100, 2))  # a keyframe every 2 s, 100 s
    pieces = plan_pieces(keys, 100.0, 30.0, settings, workers=2)
    assert len(pieces) == 6  # about 100 / (2 workers x 3)
    assert all(p.piece.from_s in keys for p in pieces)
    for a, b in itertools.pairwise(pieces):
        assert a.piece.to_s == b.piece.from_s
        assert a.piece.end_90k == b.start_90k
        assert a.first_segment + a.piece.segments == b.first_segment
    assert sum(p.duration_s for p in pieces) == pytest.approx(100.0)
    assert [p.piece.last for p in pieces] == [False] * 5 + [True]
    # Sparse keyframes: a piece is as long as the stretch to the next one.
    sparse = plan_pieces((0.0, 50.0), 100.0, 30.0, settings, workers=2)
    assert [(p.piece.from_s, p.piece.to_s) for p in sparse] == [(0.0, 50.0), (50.0, 100.0)]


async def _push(client: TestClient, path: Path, video_id: str, **kw: Any) -> Any:
    async with StreamdClient(str(client.make_url("/")), headers=AUTH) as streamd:
        return await push_recording(path, video_id, streamd, progress=False, **kw)


async def test_a_recording_is_published_as_it_is_transcoded_and_ends_as_vod(
    client: TestClient, media: MediaFactory, tmp_path: Path
) -> None:
    source = media("mp4", duration_s=32, gop=60)
    seen_early: list[int] = []

    async def watch() -> None:  # segments are published before the recording is done
        while True:
            view = await (await client.get("/api/videos/rec")).json()
            recording = view.get("recording") if isinstance(view, dict) else None
            if recording and not recording["done"] and view["segments"]:
                seen_early.append(view["segments"])
            if recording and recording["done"]:
                return
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch())
    report = await _push(client, source, "rec", chunk_bytes=256 << 10)  # several PATCHes
    await asyncio.wait_for(watcher, 30)
    assert seen_early, "no segment was published before the recording was done"
    assert report.pieces >= 4  # 32 s, two workers: split for both
    view = await wait_for(client, "rec", lambda v: v["state"] == "ended")
    assert view["recording"]["percent"] == 100.0
    assert view["recording"]["speed"] > 0

    expected = _source_duration_s(source)
    for packaging in ("ts", "fmp4"):
        for rendition in ("240p", "144p", "audio"):
            if rendition == "audio" and packaging == "ts":
                continue
            url = f"/hls/rec/{packaging}/{rendition}/index.m3u8"
            playlist = m3u8.loads((await fetch(client, url)).decode())
            assert playlist.playlist_type == "vod"
            assert playlist.is_endlist
            total = sum(s.duration for s in playlist.segments)
            assert abs(total - expected) <= FRAME_S, (url, total, expected)
    # Across the pieces' joins: every frame once, and the audio continuous (no click).
    playlist = m3u8.loads((await fetch(client, "/hls/rec/ts/144p/index.m3u8")).decode())
    joined = tmp_path / "rec.ts"
    joined.write_bytes(
        b"".join([await fetch(client, f"/hls/rec/ts/144p/{s.uri}") for s in playlist.segments])
    )
    assert len(_frames(joined)) == round(expected * 30)
    _check_audio_joins(joined)


async def test_a_resumable_upload_survives_a_dropped_chunk_and_a_real_tus_client(
    client: TestClient, media: MediaFactory
) -> None:
    source = media("mp4", duration_s=6, gop=30)
    data = source.read_bytes()
    # Created, then half sent, then the client asks where it stands and goes on.
    resp = await client.post(
        "/upload/tus1?mode=vod",
        headers={"Tus-Resumable": "1.0.0", "Upload-Length": str(len(data))},
    )
    assert resp.status == 201, await resp.text()
    location = resp.headers["Location"]
    assert location == "/upload/tus1/recording"
    half = len(data) // 2
    patch = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}
    resp = await client.patch(location, data=data[:half], headers={**patch, "Upload-Offset": "0"})
    assert resp.status == 204
    assert resp.headers["Upload-Offset"] == str(half)
    # A retry of bytes already there is refused with where it is.
    resp = await client.patch(location, data=data[:10], headers={**patch, "Upload-Offset": "0"})
    assert resp.status == 409
    head = await client.head(location, headers={"Tus-Resumable": "1.0.0"})
    assert head.headers["Upload-Offset"] == str(half)
    assert head.headers["Upload-Length"] == str(len(data))
    resp = await client.patch(
        location, data=data[half:], headers={**patch, "Upload-Offset": str(half)}
    )
    assert resp.status == 204, await resp.text()
    await wait_for(client, "tus1", lambda v: v["state"] == "ended")
    # Without the publish key: nothing.
    resp = await client.head(location, headers={"Authorization": "Bearer wrong"})
    assert resp.status in (401, 403)

    # tuspy, a tus client of its own (requests, in a thread: the server is on this loop).
    from tusclient import client as tus

    url = str(client.make_url("/upload/tus2?mode=vod"))

    def upload() -> None:
        with source.open("rb") as f:  # tuspy leaves a file it opened open
            tus.TusClient(url, headers=AUTH).uploader(file_stream=f, chunk_size=100_000).upload()

    await asyncio.to_thread(upload)
    view = await wait_for(client, "tus2", lambda v: v["state"] == "ended")
    assert view["durationS"] == pytest.approx(6.0, abs=FRAME_S)


async def test_a_bad_recording_is_refused_and_leaves_nothing(client: TestClient) -> None:
    data = b"not a video at all" * 1000
    resp = await client.post("/upload/bad?mode=vod", data=data)
    assert resp.status == 422, await resp.text()
    assert set(await resp.json()) >= {"error", "message", "detail"}
    assert (await client.get("/api/videos/bad")).status == 404
    # The same through the resumable path: the last PATCH says why, nothing is kept.
    resp = await client.post(
        "/upload/bad?mode=vod", headers={"Tus-Resumable": "1.0.0", "Upload-Length": "18000"}
    )
    assert resp.status == 201
    headers = {
        "Tus-Resumable": "1.0.0",
        "Content-Type": "application/offset+octet-stream",
        "Upload-Offset": "0",
    }
    resp = await client.patch("/upload/bad/recording", data=data, headers=headers)
    assert resp.status == 422
    assert (await client.head("/upload/bad/recording")).status == 404
    assert (await client.get("/api/videos/bad")).status == 404


async def test_two_workers_transcode_a_recording_faster_than_one(
    make_client: AppClient, config: Config, media: MediaFactory
) -> None:
    source = media("mp4", duration_s=40, gop=60, size="640x360")
    elapsed: dict[int, float] = {}
    for workers in (1, 2):
        cfg = replace(config, transcode=replace(config.transcode, workers=workers))
        client = await make_client(cfg)
        started = time.monotonic()
        await _push(client, source, f"w{workers}")
        view = await wait_for(client, f"w{workers}", lambda v: v["state"] == "ended")
        elapsed[workers] = view["recording"]["elapsedS"]
        assert time.monotonic() - started >= elapsed[workers]
        await client.close()
    # One job already keeps ~1.7 of this box's 2 cores busy (decoding threads, a thread per
    # rung): two at once gain what is left, 1.15-1.2x here (bench/README.md).
    assert elapsed[2] < 0.95 * elapsed[1], elapsed


async def test_a_recording_does_not_slow_a_live_stream(
    make_client: AppClient, config: Config, media: MediaFactory
) -> None:
    """A live stream's publish delay while a recording transcodes on every worker stays
    within one segment's work of what it is alone (recordings run at the lowest priority)."""
    client = await live_client(make_client, config, reconnect_window_s=30.0)
    # One segment's work on this box: an uploaded segment's delay is its whole transcode.
    await upload(client, "probe", media("mp4", duration_s=2.0, gop=30), number=0)
    work_s = (await wait_for(client, "probe", published(1)))["publishDelayS"]

    async def delays(count: int, until_done: asyncio.Task[Any] | None = None) -> list[float]:
        """The publish delays of the live stream's next `count` segments (or of those
        published before `until_done` is)."""
        out: list[float] = []
        seen = (await wait_for(client, "fair", lambda v: True))["segments"]
        while len(out) < count and not (until_done and until_done.done()):
            view = await wait_for(client, "fair", lambda v: v["segments"] > seen)  # noqa: B023
            seen = view["segments"]
            out.append(view["publishDelayS"])
        return out

    url = f"{client.rtmp_url}/fair?key={TEST_KEY}"  # type: ignore[attr-defined]
    ffmpeg = await start_ffmpeg(ffmpeg_rtmp(url, 40))
    try:
        await until(client, "fair", lambda v: v["segments"] >= 2)
        alone = sorted(await delays(4))
        recording = asyncio.create_task(
            _push(client, media("mp4", duration_s=60, gop=60, size="640x360"), "busy")
        )
        await until(client, "busy", lambda v: (v["recording"] or {}).get("percent", 0) > 0)
        busy = sorted(await delays(5, recording))
        assert len(busy) >= 3, "the recording ran alongside"
        await recording
    finally:
        if ffmpeg.returncode is None:
            ffmpeg.kill()
        await ffmpeg.wait()
    assert busy[len(busy) // 2] <= alone[len(alone) // 2] + work_s, (alone, busy, work_s)


async def test_a_resumable_upload_survives_a_restart_and_a_stale_one_is_removed(
    make_client: AppClient, config: Config, media: MediaFactory
) -> None:
    data = media("mp4", duration_s=4, gop=30).read_bytes()
    half = len(data) // 2
    tus = {"Tus-Resumable": "1.0.0"}
    patch = {**tus, "Content-Type": "application/offset+octet-stream"}
    client = await make_client(config)
    for video_id in ("kept", "stale"):
        resp = await client.post(
            f"/upload/{video_id}?mode=vod", headers={**tus, "Upload-Length": str(len(data))}
        )
        assert resp.status == 201
        resp = await client.patch(
            f"/upload/{video_id}/recording",
            data=data[:half],
            headers={**patch, "Upload-Offset": "0"},
        )
        assert resp.status == 204
    await client.close()

    client = await make_client(config)  # a restart: what arrived is still there
    head = await client.head("/upload/kept/recording", headers=tus)
    assert head.headers["Upload-Offset"] == str(half)
    resp = await client.patch(
        "/upload/kept/recording", data=data[half:], headers={**patch, "Upload-Offset": str(half)}
    )
    assert resp.status == 204, await resp.text()
    await wait_for(client, "kept", lambda v: v["state"] == "ended")
    await client.close()

    # Left unfinished past upload.resumable_keep_s: removed at the next start.
    forgetful = replace(config, upload=replace(config.upload, resumable_keep_s=0.0))
    client = await make_client(forgetful)
    assert (await client.head("/upload/stale/recording", headers=tus)).status == 404


async def test_deleting_a_recording_while_it_transcodes_stops_it_and_leaves_nothing(
    make_client: AppClient, config: Config, media: MediaFactory
) -> None:
    admin = "admin-token-for-tests"
    cfg = replace(config, auth=replace(config.auth, admin_token=admin))
    client = await make_client(cfg)
    source = media("mp4", duration_s=40, gop=60, size="640x360")
    with source.open("rb") as body:
        resp = await client.post("/upload/gone?mode=vod", data=body)
    assert resp.status == 202, await resp.text()
    await wait_for(client, "gone", lambda v: v["segments"] >= 1 and not v["recording"]["done"])
    resp = await client.delete("/api/videos/gone", headers={"Authorization": f"Bearer {admin}"})
    assert resp.status in (200, 204), await resp.text()
    assert (await client.get("/api/videos/gone")).status == 404
    await asyncio.sleep(3)  # a piece still running would write more by now
    for prefix in ("hls", "files", "ingest"):
        left = [p for p in (cfg.data_dir / prefix / "gone").rglob("*") if p.is_file()]
        assert left == [], prefix
