"""`streamd serve` as its own process, for benchmarks: start, wait, measure, stop."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_tree(pid: int) -> list[int]:
    """The process and all its descendants (workers are started from several threads)."""
    pids, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except OSError:  # it exited
            continue
        for task in tasks:
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            pids += children
            frontier += children
    return pids


def rss_kb(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def process_kind(pid: int, root: int) -> str:
    """What a process of the server's tree is, by the name streamd gives it."""
    if pid == root:
        return "primary"
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "gone"
    return comm.removeprefix("streamd-") if comm.startswith("streamd-") else "other"


def memory_by_kind(root: int) -> dict[str, tuple[float, float]]:
    """MB resident (RSS) and proportional (PSS), by process kind. Workers forked from one
    server share its pages (PyAV, numpy): RSS counts them in each, PSS divides them, so the
    sum of PSS is what the tree takes from the machine."""
    out: dict[str, tuple[float, float]] = {}
    for pid in process_tree(root):
        kind = process_kind(pid, root)
        rss = pss = 0
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
        except OSError:
            continue
        before = out.get(kind, (0.0, 0.0))
        out[kind] = (before[0] + rss / 1024, before[1] + pss / 1024)
    return out


def cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system) the processes and their reaped children have used."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / os.sysconf("SC_CLK_TCK")


class Server:
    """A streamd server on a free port with its own data dir."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.key = secrets.token_urlsafe(16)  # the publish key of this run
        self.auth = {"Authorization": f"Bearer {self.key}"}
        self.env = {
            **os.environ,
            "STREAMD_AUTH_PUBLISH_KEYS": self.key,
            "STREAMD_MIN_FREE_BYTES": str(64 << 20),  # benches run where disks are small too
            "STREAMD_INGEST_RTMP_PORT": str(free_port()),
            "STREAMD_INGEST_SRT_PORT": "0",
            **(env or {}),
        }
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Server:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "streamd",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            env=self.env,
            stderr=asyncio.subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                try:
                    async with http.get(f"{self.url}/readyz") as r:
                        if r.status == 200:
                            return self
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError("streamd did not start")

    async def __aexit__(
        self, *exc: type[BaseException] | BaseException | TracebackType | None
    ) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            await self.proc.wait()

    def rss_kb(self) -> int:
        assert self.proc is not None
        return rss_kb(process_tree(self.proc.pid))

    def cpu_s(self) -> float:
        assert self.proc is not None
        return cpu_s(process_tree(self.proc.pid))

    async def video(self, video_id: str) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{self.url}/api/videos/{video_id}") as r,
        ):
            return await r.json() if r.status == 200 else {}  # type: ignore[no-any-return]

    async def upload_segments(self, video_id: str, segments: list[Path]) -> None:
        """Upload files as segments 0, 1, 2... of a stream, as fast as they are taken."""
        async with aiohttp.ClientSession() as http:
            for i, seg in enumerate(segments):
                async with http.post(
                    f"{self.url}/upload/{video_id}",
                    data=seg.read_bytes(),
                    headers={"X-Segment-Number": str(i), **self.auth},
                ) as r:
                    if r.status != 202:
                        raise RuntimeError(f"upload {i} refused: {await r.text()}")

    async def wait_ended(self, video_id: str, timeout_s: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            v = await self.video(video_id)
            if v.get("state") == "ended":
                return v
            await asyncio.sleep(0.2)
        raise RuntimeError(f"{video_id} did not end")
