"""Several processes on one port: an edge answers playlists and segments, passes the rest on."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import m3u8
import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from streamd.access import tokens
from tests.conftest import (
    AUTH,
    MediaFactory,
    ServerProcess,
    descendants,
    ffmpeg_hls_put,
    ffprobe,
    server_process,
)

pytestmark = pytest.mark.slow


def _listening_inodes(port: int) -> set[str]:
    """Sockets listening on `port` (from /proc/net/tcp: state 0A is LISTEN)."""
    rows = [row.split() for row in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    return {r[9] for r in rows if r[3] == "0A" and int(r[1].split(":")[1], 16) == port}


def _listeners(port: int) -> int:
    return len(_listening_inodes(port))


def _listener_pids(port: int) -> set[int]:
    """The processes holding those sockets."""
    wanted = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    pids = set()
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        with contextlib.suppress(OSError):
            if os.readlink(fd) in wanted:
                pids.add(int(fd.parts[2]))
    return pids


def _loaded(pid: int) -> set[str]:
    """Which of PyAV's FFmpeg and numpy a process has mapped into memory."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {lib for lib in ("libavcodec", "numpy") if lib in maps}


@pytest.fixture
async def two_processes(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    async with server_process(tmp_path / "data", STREAMD_HTTP_PROCESSES="2") as srv:
        yield srv


async def _get(url: str) -> tuple[int, bytes]:
    """On a new connection each time, so the kernel spreads them over both processes."""
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return r.status, await r.read()


async def test_edge_serves_and_passes_on(two_processes: ServerProcess, tmp_path: Path) -> None:
    srv = two_processes
    for _ in range(100):
        if _listeners(srv.port) == 2:
            break
        await asyncio.sleep(0.1)
    assert _listeners(srv.port) == 2, "two edges listen on the port (the primary on a socket)"

    # ffmpeg's PUT uploads (chunked, one connection each) go through whichever process.
    ffmpeg = await asyncio.create_subprocess_exec(
        *ffmpeg_hls_put(f"{srv.url}/upload/edgecam/index.m3u8", 4, realtime=False)
    )
    assert await ffmpeg.wait() == 0
    for _ in range(600):
        status, body = await _get(f"{srv.url}/hls/edgecam/ts/240p/index.m3u8")
        if status == 200 and b"#EXT-X-ENDLIST" in body:
            break
        await asyncio.sleep(0.1)
    assert b"#EXT-X-ENDLIST" in body

    # Both processes answer the same playlist, the one on disk, byte for byte.
    on_disk = (srv.data_dir / "hls/edgecam/ts/240p/index.m3u8").read_bytes()
    answers = [await _get(f"{srv.url}/hls/edgecam/ts/240p/index.m3u8") for _ in range(30)]
    assert {a for a in answers} == {(200, on_disk)}
    playlist = m3u8.loads(on_disk.decode())
    assert playlist.is_endlist
    assert len(playlist.segments) == 4
    for seg in playlist.segments:
        status, data = await _get(f"{srv.url}/hls/edgecam/ts/240p/{seg.uri}")
        assert status == 200
        assert data == (srv.data_dir / f"hls/edgecam/ts/240p/{seg.uri}").read_bytes()
    status, data = await _get(f"{srv.url}/hls/edgecam/ts/240p/{playlist.segments[-1].uri}")
    clip = tmp_path / "last.ts"
    clip.write_bytes(data)
    assert ffprobe(clip, "-show_streams")["streams"][0]["height"] == 240

    # Serving never loads the media stack: not in the edges, not in the primary; only the
    # workers, which have transcoded by now (so the check can see it).
    assert srv.proc is not None
    children = descendants(srv.proc.pid)
    edges = _listener_pids(srv.port)
    assert {children[pid] for pid in edges} == {"streamd-edge"}
    for pid in [*edges, srv.proc.pid]:
        assert _loaded(pid) == set(), f"process {pid} ({children.get(pid, 'primary')})"
    workers = [pid for pid, name in children.items() if name == "streamd-worker"]
    assert workers
    assert {"libavcodec", "numpy"} <= _loaded(workers[0])
    # Passed-on routes, and errors from either process, are the same JSON.
    for _ in range(6):
        status, body = await _get(f"{srv.url}/hls/nosuch/ts/240p/index.m3u8")
        assert status == 404
        assert b'"error": "not_found"' in body
        status, body = await _get(f"{srv.url}/internal/playlists")
        assert status == 404, "the primary's feed is not reachable from TCP"
    # The edge's requests reach /metrics within its report interval.
    await asyncio.sleep(1.5)
    status, text = await _get(f"{srv.url}/metrics")
    counted = {
        (s.labels["route"], s.labels["status"]): s.value
        for f in text_string_to_metric_families(text.decode())
        if f.name == "streamd_http_requests"
        for s in f.samples
        if s.name.endswith("_total")
    }
    assert counted[("/hls/{video_id}/{path}", "200")] >= 30 + 4 + 1
    # Each process's memory by kind: the edges say theirs, the rest is read from /proc.
    resident = {
        s.labels["kind"]: s.value
        for f in text_string_to_metric_families(text.decode())
        if f.name == "streamd_process_resident_bytes"
        for s in f.samples
    }
    processes = {
        s.labels["kind"]: s.value
        for f in text_string_to_metric_families(text.decode())
        if f.name == "streamd_processes"
        for s in f.samples
    }
    assert processes["edge"] == 2
    assert processes["primary"] == 1
    assert processes["worker"] >= 1
    for kind in ("edge", "primary", "worker"):  # 30 MB at least: an interpreter, aiohttp
        assert 30e6 < resident[kind] / processes[kind] < 2e9, (kind, resident)

    # An edge that dies is started again, and the port keeps answering meanwhile.
    before = _listener_pids(srv.port)
    assert len(before) == 2
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    for _ in range(100):
        status, _body = await _get(f"{srv.url}/hls/edgecam/ts/240p/index.m3u8")
        assert status == 200
        pids = _listener_pids(srv.port)
        if len(pids) == 2 and victim not in pids:
            break
        await asyncio.sleep(0.1)
    assert len(pids) == 2
    assert victim not in pids
    for _ in range(50):  # the new edge gets the playlists from the primary
        status, body = await _get(f"{srv.url}/hls/edgecam/ts/240p/index.m3u8")
        assert (status, body) == (200, on_disk)

    # A stop ends the edges' feeds instead of waiting on them, and takes the edges along.
    assert srv.proc is not None
    started = time.monotonic()
    srv.proc.terminate()
    await srv.proc.wait()
    assert time.monotonic() - started < 10
    await asyncio.sleep(0.5)
    assert _listeners(srv.port) == 0


async def test_feed_is_not_served_over_tcp(client: TestClient) -> None:
    resp = await client.get("/internal/playlists")
    assert resp.status == 404
    resp = await client.post("/internal/report", json={})
    assert resp.status == 404


async def test_edges_check_viewer_tokens_and_drop_deleted_streams(
    tmp_path: Path, media: MediaFactory
) -> None:
    secret = "edge-secret"
    async with server_process(
        tmp_path / "data",
        STREAMD_HTTP_PROCESSES="2",
        STREAMD_AUTH_VIEWER_SECRET=secret,
        STREAMD_AUTH_ADMIN_TOKEN="edge-admin",
    ) as srv:
        clip = media("ts", duration_s=1.0)
        async with aiohttp.ClientSession(headers=AUTH) as s:
            async with s.post(f"{srv.url}/upload/tok", data=clip.read_bytes()) as r:
                assert r.status == 202
        token = tokens.sign(secret, "tok", int(time.time()) + 600)
        url = f"{srv.url}/hls/tok/ts/240p/index.m3u8"
        for _ in range(300):
            status, body = await _get(f"{url}?token={token}")
            if status == 200:
                break
            await asyncio.sleep(0.1)
        assert status == 200
        assert b"seg000000.ts?token=" + token.encode() in body
        # New connections land on both edges: each refuses a missing or wrong token.
        for _ in range(20):
            assert (await _get(url))[0] == 401
            assert (await _get(f"{url}?token={token}x"))[0] == 403
            assert (await _get(f"{srv.url}/hls/tok/ts/240p/seg000000.ts"))[0] == 401
        # A deleted stream is gone from every edge too (the feed says so).
        async with (
            aiohttp.ClientSession(headers={"Authorization": "Bearer edge-admin"}) as s,
            s.delete(f"{srv.url}/admin/streams/tok") as r,
        ):
            assert r.status == 204
        for _ in range(50):
            statuses = {(await _get(f"{url}?token={token}"))[0] for _ in range(6)}
            if statuses == {404}:
                break
            await asyncio.sleep(0.1)
        assert statuses == {404}


async def test_edges_answer_low_latency_requests(two_processes: ServerProcess) -> None:
    """Blocking playlist reloads and parts on the port, where only edges answer: held in
    each edge until the primary's feed brings the part, then answered together."""
    from tests.conftest import TEST_KEY
    from tests.test_rtmp_live import ffmpeg_rtmp, start_ffmpeg

    srv = two_processes
    url = f"rtmp://127.0.0.1:{srv.rtmp_port}/live/lle?key={TEST_KEY}"
    ffmpeg = await start_ffmpeg(ffmpeg_rtmp(url, 12))
    playlist_url = f"{srv.url}/hls/lle/fmp4/240p/index.m3u8"
    try:
        deadline = time.monotonic() + 30
        while True:
            status, body = await _get(playlist_url)
            p = m3u8.loads(body.decode()) if status == 200 else None
            if p is not None and any(s.parts for s in p.segments):
                break
            assert time.monotonic() < deadline, (status, body[:300])
            await asyncio.sleep(0.2)
        i, seg = next((i, s) for i, s in reversed(list(enumerate(p.segments))) if s.parts)
        msn, index = p.media_sequence + i, len(seg.parts) - 1
        query = f"?_HLS_msn={msn}&_HLS_part={index + 1}"

        async def blocked() -> tuple[float, m3u8.M3U8]:
            status, body = await _get(playlist_url + query)
            assert status == 200, body[:300]
            return time.monotonic(), m3u8.loads(body.decode())

        answers = await asyncio.gather(*(blocked() for _ in range(8)))
        times = [t for t, _ in answers]
        assert max(times) - min(times) < 0.1, times  # every edge woke with the same part
        newest = {a.segments[-1].parts[-1].uri for _, a in answers}
        assert len(newest) <= 2, newest  # the part asked for (or the one after, if late)
        status, part = await _get(f"{srv.url}/hls/lle/fmp4/240p/{newest.pop()}")
        assert status == 200
        assert part[4:8] == b"moof"
        status, body = await _get(playlist_url + "?_HLS_msn=999")
        assert status == 400
    finally:
        if ffmpeg.returncode is None:
            ffmpeg.kill()
        await ffmpeg.wait()
