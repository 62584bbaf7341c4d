"""Fixtures: test media made at test time with the ffmpeg CLI, and a running streamd app."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from streamd.app import create_app
from streamd.config import (
    AuthConfig,
    CacheConfig,
    Config,
    IngestConfig,
    TranscodeConfig,
    UploadConfig,
)

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"
FFPROBE = shutil.which("ffprobe") or "ffprobe"
TEST_LADDER = ["240p:300k", "144p:150k"]
ROOT = Path(__file__).resolve().parent.parent
TEST_KEY = "test-publish-key"
AUTH = {"Authorization": f"Bearer {TEST_KEY}"}  # what a publisher sends


def run(cmd: list[str]) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode:
        raise AssertionError(f"{cmd[0]} failed: {out.stderr[-2000:]}")
    return out.stdout


def ffprobe(path: Path | str, *args: str) -> dict[str, Any]:
    """ffprobe's JSON about a file or URL."""
    return json.loads(run([FFPROBE, "-v", "error", "-of", "json", *args, str(path)]))


class MediaFactory:
    """Makes small test clips with the ffmpeg CLI, cached for the whole session."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(
        self,
        ext: str = "mp4",
        *,
        size: str = "320x240",
        rate: int = 30,
        duration_s: float = 2.0,
        vcodec: str = "libx264",
        acodec: str | None = "aac",
        sample_rate: int = 48000,
        gop: int | None = None,
        extra: tuple[str, ...] = (),
        start_s: float = 0.0,
        tone_hz: int = 440,
        noise: bool = False,
    ) -> Path:
        key = json.dumps(
            [
                ext,
                size,
                rate,
                duration_s,
                vcodec,
                acodec,
                sample_rate,
                gop,
                extra,
                start_s,
                tone_hz,
                noise,
            ]
        )
        path = self.root / f"{hashlib.sha1(key.encode()).hexdigest()[:12]}.{ext}"
        if path.exists():
            return path
        src = f"testsrc2=s={size}:r={rate}:d={duration_s + start_s}"
        if noise:
            src += ",noise=alls=30:allf=t"
        cmd = [FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", src]
        if acodec:
            cmd += [
                "-f",
                "lavfi",
                "-i",
                f"sine=f={tone_hz}:r={sample_rate}:d={duration_s + start_s}",
            ]
        if start_s:
            cmd += ["-ss", str(start_s)]
        cmd += ["-c:v", vcodec, "-pix_fmt", "yuv420p", "-g", str(gop or rate)]
        if vcodec == "libx264":
            cmd += ["-preset", "ultrafast"]
        if vcodec == "libsvtav1":
            cmd += ["-preset", "12"]
        if vcodec.startswith("libvpx"):
            cmd += ["-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k"]
        cmd += ["-c:a", acodec] if acodec else ["-an"]
        cmd += [*extra, str(path)]
        run(cmd)
        return path

    def split(self, source: Path, segment_s: float, ext: str = "ts") -> list[Path]:
        """Cut a clip into segments at keyframes without re-encoding, like a live encoder."""
        out = self.root / f"{source.stem}-seg{segment_s:g}"
        if not out.exists():
            tmp = out.with_suffix(".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            run(
                [
                    FFMPEG,
                    "-v",
                    "error",
                    "-i",
                    str(source),
                    "-c",
                    "copy",
                    "-f",
                    "segment",
                    "-segment_time",
                    str(segment_s),
                    "-reset_timestamps",
                    "0",
                    str(tmp / f"part%03d.{ext}"),
                ]
            )
            tmp.rename(out)
        return sorted(out.glob(f"part*.{ext}"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cue_seconds(timestamp: str) -> float:
    """A WebVTT or SRT timestamp (HH:MM:SS.mmm, or ,mmm) in seconds."""
    hours, minutes, rest = timestamp.replace(",", ".").split(":")
    return 3600 * int(hours) + 60 * int(minutes) + float(rest)


def descendants(pid: int) -> dict[int, str]:
    """A process's children, theirs, and so on, with their names (/proc/PID/comm): workers
    are children of the forkserver the server started."""
    try:
        found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        out = {int(c): Path(f"/proc/{c}/comm").read_text().strip() for c in found}
    except FileNotFoundError:  # gone meanwhile
        return {}
    for child in list(out):
        out.update(descendants(child))
    return out


class ServerProcess:
    """`streamd serve` as its own process, as an operator runs it."""

    def __init__(self, data_dir: Path, **env: str) -> None:
        self.data_dir = data_dir
        self.env = env
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.rtmp_port = _free_port()
        self.proc: asyncio.subprocess.Process | None = None

    def command(self) -> tuple[list[str], dict[str, str]]:
        """What `start` runs, and its environment (for a caller that runs it itself)."""
        env = {
            **os.environ,
            "STREAMD_TRANSCODE_LADDER": ",".join(TEST_LADDER),
            "STREAMD_TRANSCODE_WORKERS": "1",
            "STREAMD_AUTH_PUBLISH_KEYS": TEST_KEY,
            "STREAMD_MIN_FREE_BYTES": str(1 << 20),
            "STREAMD_INGEST_RTMP_PORT": str(self.rtmp_port),
            "STREAMD_INGEST_SRT_PORT": "0",
            **self.env,
        }
        command = [sys.executable, "-m", "streamd", "serve", "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--data-dir", str(self.data_dir)]
        return command, env

    async def start(self) -> None:
        command, env = self.command()
        log = self.data_dir.parent / "server.log"
        self.proc = await asyncio.create_subprocess_exec(
            *command,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND),
        )
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as s:
            while time.monotonic() < deadline:
                try:
                    async with s.get(self.url + "/api/videos") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError("server did not start")

    async def kill(self) -> None:
        """kill -9, and every process it started (workers, edges) goes with it."""
        assert self.proc is not None
        started = descendants(self.proc.pid)
        assert started, "the server runs its workers and edges as processes"
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()
        for _ in range(100):  # the kernel's PDEATHSIG: up to 5 s
            left = [p for p in started if os.path.exists(f"/proc/{p}")]  # noqa: ASYNC240
            if not left:
                return
            await asyncio.sleep(0.05)
        raise AssertionError({p: started[p] for p in left})

    async def stop(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()


@contextlib.asynccontextmanager
async def server_process(data_dir: Path, **env: str) -> AsyncIterator[ServerProcess]:
    """A started `streamd serve` on a fresh data dir, stopped afterwards."""
    srv = ServerProcess(data_dir, **env)
    srv.data_dir.mkdir()
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


def ffmpeg_hls_put(url: str, seconds: int, *extra: str, realtime: bool = True) -> list[str]:
    """`ffmpeg -f hls -method PUT` of a 320x240 test source with a tone, 1 s segments."""
    return [
        FFMPEG,
        "-v",
        "error",
        *(["-re"] if realtime else []),
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=s=320x240:r=30:d={seconds}",
        "-f",
        "lavfi",
        "-i",
        f"sine=f=440:r=48000:d={seconds}",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "30",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-f",
        "hls",
        "-hls_time",
        "1",
        *extra,
        "-headers",
        f"Authorization: Bearer {TEST_KEY}\r\n",
        "-method",
        "PUT",
        url,
    ]


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> MediaFactory:
    return MediaFactory(tmp_path_factory.mktemp("media"))


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config(
        host="127.0.0.1",
        port=0,
        data_dir=tmp_path / "data",
        transcode=TranscodeConfig(ladder=list(TEST_LADDER), workers=2),
        upload=UploadConfig(max_bytes=20 << 20, gap_timeout_s=30),
        cache=CacheConfig(max_bytes=32 << 20),
        auth=AuthConfig(publish_keys=[TEST_KEY]),
        ingest=IngestConfig(rtmp_port=0, srt_port=0),  # tests of live ingest pick free ports
        min_free_bytes=1 << 20,  # CI machines may have less than the 1 GiB default free
    )


AppClient = Callable[..., Awaitable[TestClient]]


@pytest.fixture
def make_client(aiohttp_client: Any, config: Config) -> AppClient:
    async def make(
        cfg: Config | None = None, *, headers: dict[str, str] | None = None, **changes: Any
    ) -> TestClient:
        """A client of the app; it sends the publish key unless `headers` says otherwise."""
        app = create_app(replace(cfg or config, **changes))
        return await aiohttp_client(app, headers=AUTH if headers is None else headers)  # type: ignore[no-any-return]

    return make


@pytest.fixture
async def client(make_client: AppClient) -> TestClient:
    return await make_client()


async def upload(
    client: TestClient, video_id: str, path: Path, number: int | None = None, expect: int = 202
) -> dict[str, Any]:
    headers = {"X-Segment-Number": str(number)} if number is not None else {}
    with path.open("rb") as f:
        resp = await client.post(f"/upload/{video_id}", data=f, headers=headers)
        body = await resp.json()
    assert resp.status == expect, body
    return body  # type: ignore[no-any-return]


async def wait_for(
    client: TestClient, video_id: str, done: Callable[[dict[str, Any]], bool], timeout_s: float = 60
) -> dict[str, Any]:
    """Poll the stream's API until `done` holds (no sleeps standing in for waiting)."""
    deadline = time.monotonic() + timeout_s
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        resp = await client.get(f"/api/videos/{video_id}")
        if resp.status == 200:
            last = await resp.json()
            if done(last):
                return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting on {video_id}: {last}")


def published(n: int) -> Callable[[dict[str, Any]], bool]:
    return lambda v: v["uploads"]["published"] + v["uploads"]["failed"] >= n


async def browser(driver: str, *args: str) -> dict[str, Any]:
    """Run a headless-Chromium driver in tests/browser/ (node, playwright-core, Debian's
    chromium); its last stdout line is its JSON report."""
    node = shutil.which("node")
    assert node, "node is needed for the browser tests"
    proc = await asyncio.create_subprocess_exec(
        node, str(ROOT / "tests" / "browser" / driver), *args,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "CHROMIUM_PATH": os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")},
    )  # fmt: skip
    out, err = await proc.communicate()
    lines = out.decode().strip().splitlines()
    assert lines, err.decode()[-2000:]
    result: dict[str, Any] = json.loads(lines[-1])
    return result


async def fetch(client: TestClient, url: str, status: int = 200) -> bytes:
    resp = await client.get(url)
    body = await resp.read()
    assert resp.status == status, (url, resp.status, body[:300])
    return body


async def files_encoded(client: TestClient, kind: str = "webm") -> float:
    """How many files of a kind the server has encoded (its /metrics counter)."""
    text = (await fetch(client, "/metrics")).decode()
    line = rf'^streamd_files_encoded_total\{{format="{kind}"\}} (\S+)$'
    found = re.search(line, text, re.M)
    return float(found.group(1)) if found else 0.0
