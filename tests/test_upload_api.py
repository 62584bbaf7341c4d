"""POST /upload/{videoId}: bodies, numbering, retries, conflicts, ordering, end, bad input."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

import aiohttp
import m3u8
import pytest
from aiohttp.test_utils import TestClient

from streamd.appkeys import CONFIG
from streamd.config import Config, UploadConfig
from tests.conftest import (
    FFMPEG,
    TEST_KEY,
    AppClient,
    MediaFactory,
    fetch,
    published,
    run,
    upload,
    wait_for,
)


async def test_raw_upload_is_accepted_stored_and_published(
    client: TestClient, media: MediaFactory
) -> None:
    clip = media("mp4")
    body = await upload(client, "cam1", clip)
    assert body["videoId"] == "cam1"
    assert body["segment"] == 0
    assert body["state"] in ("queued", "transcoding")
    assert body["source"]["width"] == 320
    files = list((client.app[CONFIG].data_dir / "ingest" / "cam1").iterdir())
    assert [f.read_bytes() for f in files] == [clip.read_bytes()]
    info = await wait_for(client, "cam1", published(1))
    assert info["state"] == "live"
    assert info["segments"] == 1
    assert [r["name"] for r in info["rungs"]] == ["240p", "144p"]


async def test_multipart_upload_with_segment_field(client: TestClient, media: MediaFactory) -> None:
    clip = media("mp4")
    form = aiohttp.FormData()
    form.add_field("segment", "5")
    form.add_field("file", clip.read_bytes(), filename="seg5.mp4", content_type="video/mp4")
    resp = await client.post("/upload/form", data=form)
    assert resp.status == 202, await resp.text()
    assert (await resp.json())["segment"] == 5


async def test_numbering_from_header_query_or_next(client: TestClient, media: MediaFactory) -> None:
    clip, clip2, clip3 = media("mp4"), media("mp4", tone_hz=880), media("mp4", tone_hz=660)
    assert (await upload(client, "n", clip, number=3))["segment"] == 3
    resp = await client.post("/upload/n?segment=4", data=clip2.read_bytes())
    assert (await resp.json())["segment"] == 4
    assert (await upload(client, "n", clip3))["segment"] == 5  # no number: the next one


async def test_retry_is_a_noop_and_other_bytes_conflict(
    client: TestClient, media: MediaFactory
) -> None:
    clip, other = media("mp4"), media("mp4", tone_hz=1000)
    await upload(client, "r", clip, number=0)
    again = await upload(client, "r", clip, number=0, expect=200)
    assert again["duplicate"] is True
    conflict = await upload(client, "r", other, number=0, expect=409)
    assert conflict["error"] == "segment_conflict"
    assert conflict["message"]
    await wait_for(client, "r", published(1))
    info = await (await client.get("/api/videos/r")).json()
    assert len(info["uploadList"]) == 1


async def test_out_of_order_segments_are_held_then_published_in_order(
    client: TestClient, media: MediaFactory
) -> None:
    parts = media.split(media("mp4", duration_s=6, gop=30), 2.0)
    assert len(parts) == 3
    await upload(client, "ooo", parts[0], number=0)
    held = await upload(client, "ooo", parts[2], number=2)
    assert held["state"] == "held"
    await wait_for(client, "ooo", published(1))
    info = await (await client.get("/api/videos/ooo")).json()
    assert info["uploads"]["held"] == 1
    await upload(client, "ooo", parts[1], number=1)
    info = await wait_for(client, "ooo", published(3))
    assert [u["state"] for u in info["uploadList"]] == ["published"] * 3
    playlist = m3u8.loads((await fetch(client, "/hls/ooo/ts/240p/index.m3u8")).decode())
    starts = [0.0]
    for seg in playlist.segments:
        starts.append(starts[-1] + seg.duration)
    assert starts[-1] == pytest.approx(6.0, abs=0.05)


async def test_end_closes_playlists_and_refuses_more(
    client: TestClient, media: MediaFactory
) -> None:
    clip = media("mp4")
    await upload(client, "e", clip, number=0)
    resp = await client.post("/upload/e/end")
    assert resp.status == 202
    info = await wait_for(client, "e", lambda v: v["state"] == "ended")
    assert info["segments"] == 1
    text = (await fetch(client, "/hls/e/fmp4/240p/index.m3u8")).decode()
    assert text.rstrip().endswith("#EXT-X-ENDLIST")
    assert m3u8.loads(text).is_endlist
    refused = await upload(client, "e", media("mp4", tone_hz=500), number=1, expect=409)
    assert refused["error"] == "stream_ended"


@pytest.mark.parametrize("video_id", ["bad id", "a" * 65, "x.y", "ü"])
async def test_invalid_video_id_is_400(client: TestClient, video_id: str) -> None:
    resp = await client.post("/upload/" + quote(video_id, safe=""), data=b"x")
    assert resp.status == 400
    body = await resp.json()
    assert body["error"] == "invalid_video_id"
    assert "A-Z" in body["detail"]


async def test_bad_inputs_get_json_errors_and_lose_nothing(
    client: TestClient, media: MediaFactory, tmp_path: Path
) -> None:
    clip = media("mp4")
    await upload(client, "bad", clip, number=0)
    await wait_for(client, "bad", published(1))
    before = await fetch(client, "/hls/bad/ts/240p/index.m3u8")

    whole = clip.read_bytes()
    hls = b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n"
    cases = {
        "garbage": (b"\x00\x01not a video at all" * 100, 422, "unsupported_media"),
        "playlist": (hls + b"file:///etc/passwd\n", 422, "unsupported_media"),
        "http playlist": (hls + b"http://127.0.0.1:9/x.ts\n", 422, "unsupported_media"),
        "concat": (b"ffconcat version 1.0\nfile '/etc/passwd'\n", 422, "unsupported_media"),
        "truncated": (whole[: len(whole) // 3], 422, "unsupported_media"),
        "empty": (b"", 400, "bad_request"),
    }
    for name, (data, status, code) in cases.items():
        # Named like a segment, whatever it holds: the bytes decide, not the name.
        headers = {"X-Segment-Number": "1", "X-Segment-Filename": "index1.ts"}
        resp = await client.post("/upload/bad", data=data, headers=headers)
        body = await resp.json()
        assert resp.status == status, (name, body)
        assert body["error"] == code, (name, body)
        assert body["message"], name
    resp = await client.post(
        "/upload/bad", data=clip.read_bytes(), headers={"X-Segment-Number": "one"}
    )
    assert resp.status == 400
    audio_only = tmp_path / "a.m4a"
    run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "sine=d=1", "-c:a", "aac", str(audio_only)])
    resp = await client.post("/upload/bad", data=audio_only.read_bytes())
    assert resp.status == 422
    assert "no video" in (await resp.json())["message"]
    # Nothing already published changed, no refused byte was kept, and the stream still
    # takes good uploads.
    assert await fetch(client, "/hls/bad/ts/240p/index.m3u8") == before
    data_dir = client.app[CONFIG].data_dir
    assert [p.name for p in (data_dir / "ingest" / "bad").iterdir()] == ["000000.mp4"]
    assert not list((data_dir / ".incoming").iterdir())
    await upload(client, "bad", media("mp4", tone_hz=300), number=1)
    await wait_for(client, "bad", published(2))


async def test_too_large_upload_is_413(make_client: AppClient, media: MediaFactory) -> None:
    client = await make_client(upload=UploadConfig(max_bytes=1000))
    resp = await client.post("/upload/big", data=media("mp4").read_bytes())
    assert resp.status == 413
    assert (await resp.json())["error"] == "upload_too_large"
    assert (await client.get("/api/videos/big")).status == 404


async def test_a_chunked_body_past_the_cap_is_cut_at_once(
    make_client: AppClient, config: Config
) -> None:
    client = await make_client(upload=UploadConfig(max_bytes=100_000))
    host, port = client.server.host, client.server.port
    assert host is not None
    assert port is not None
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        b"POST /upload/chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        + f"Authorization: Bearer {TEST_KEY}\r\n\r\n".encode()
    )
    for _ in range(13):  # 208 KB, past the cap, and then nothing more: no end of the body
        writer.write(b"4000\r\n" + b"\0" * 0x4000 + b"\r\n")
    await writer.drain()
    # The answer comes while the body is still open: the server stopped at the cap.
    status_line = await asyncio.wait_for(reader.readline(), 10)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    writer.close()
    assert status_line.split()[1] == b"413", status_line
    assert b"application/json" in head
    kept = [p.relative_to(config.data_dir) for p in config.data_dir.rglob("*") if p.is_file()]
    assert not [p for p in kept if "chunked" in str(p) or str(p).startswith(".incoming")]
    assert (await client.get("/api/videos/chunked")).status == 404


async def test_too_many_uploads_at_once_get_503_with_retry_after(
    make_client: AppClient, config: Config, media: MediaFactory
) -> None:
    client = await make_client(upload=replace(config.upload, max_concurrent=1))
    host, port = client.server.host, client.server.port
    assert host is not None
    assert port is not None
    clip = media("ts", duration_s=1.0).read_bytes()
    # A slow sender holds the one slot: headers and a first piece of a large body.
    _, writer = await asyncio.open_connection(host, port)
    writer.write(
        b"POST /upload/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 500000\r\n"
        + f"Authorization: Bearer {TEST_KEY}\r\n\r\n".encode()
        + b"\0" * 1000
    )
    await writer.drain()
    for _ in range(100):
        resp = await client.post("/upload/cam", data=clip)
        if resp.status == 503:
            break
        await asyncio.sleep(0.02)
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "1"
    error = await resp.json()
    assert error["error"] == "unavailable"
    assert "upload.max_concurrent" in error["detail"]
    writer.close()  # the slow sender goes: its slot is free again
    await writer.wait_closed()
    for _ in range(100):
        resp = await client.post("/upload/cam", data=clip)
        if resp.status == 202:
            break
        await asyncio.sleep(0.05)
    assert resp.status == 202
