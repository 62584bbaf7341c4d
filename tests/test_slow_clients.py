"""Slow and idle clients are cut off by deadlines and hold nothing: headers sent a line at a
time (slowloris), connections that send nothing, idle keep-alives, viewers that stop
reading, and 300 half-sent requests at once, while everyone else is answered at once.

Driven over raw sockets against a real server: `streamd serve` (uvloop) alone and with
edge processes (marked slow), and the app in this process on asyncio's loop."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp
import pytest

from streamd.config import Config, HttpConfig, TranscodeConfig
from streamd.web.connection import LINGER_S
from tests.conftest import TEST_KEY, AppClient, ServerProcess, server_process

HEADER_S = 1.0
KEEPALIVE_S = 3.0  # apart from the header deadline by more than the slack
WRITE_S = 1.0
SLACK_S = 1.0  # timers, scheduling and polling on a busy 2-core machine
# The 300 connections take a while to open: a longer header deadline keeps them all hanging
# while a normal client is timed; a stalled upload body is cut by upload.idle_timeout_s.
HALF_SENT_HEADER_S = 4.0
IDLE_S = 4.0
BIG_FILE = "/vendor/hls.min.js"  # ~600 KB, the largest file any page loads


def _deadlines(header_s: float, keepalive_s: float = KEEPALIVE_S) -> dict[str, str]:
    return {
        "STREAMD_HTTP_HEADER_TIMEOUT_S": str(header_s),
        "STREAMD_HTTP_KEEPALIVE_TIMEOUT_S": str(keepalive_s),
        "STREAMD_HTTP_WRITE_TIMEOUT_S": str(WRITE_S),
        "STREAMD_UPLOAD_IDLE_TIMEOUT_S": str(IDLE_S),
    }


@dataclass(frozen=True)
class Target:
    """A running server: where it listens, and its process when it is its own."""

    port: int
    pid: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
async def primary(tmp_path: Path) -> AsyncIterator[Target]:
    # aiohttp's keep-alive timer also closes a connection that never sends a whole request:
    # far off here, so that the header deadline is what is tested.
    deadlines = _deadlines(HALF_SENT_HEADER_S, keepalive_s=60)
    async with server_process(tmp_path / "data", STREAMD_HTTP_PROCESSES="1", **deadlines) as srv:
        assert srv.proc is not None
        yield Target(srv.port, srv.proc.pid)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Target]]:
    """`streamd serve` alone and with two edges in front, started once for the module: the
    tests only open connections to them."""
    started: dict[str, tuple[ServerProcess, subprocess.Popen[bytes]]] = {}
    try:
        for name, processes in (("primary", "1"), ("edges", "2")):
            root = tmp_path_factory.mktemp(name)
            srv = ServerProcess(root / "data", STREAMD_HTTP_PROCESSES=processes)
            srv.env.update(_deadlines(HEADER_S))
            srv.data_dir.mkdir()
            command, env = srv.command()
            with (root / "server.log").open("ab") as log:
                proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)
            started[name] = srv, proc
        for name, (srv, proc) in started.items():
            _wait_until_up(srv.url, proc, listeners=2 if name == "edges" else 1)
        yield {name: Target(srv.port, proc.pid) for name, (srv, proc) in started.items()}
    finally:
        for _, proc in started.values():
            proc.terminate()
        for _, proc in started.values():
            proc.wait(30)


def _wait_until_up(url: str, proc: subprocess.Popen[bytes], listeners: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the server exited with {proc.returncode}"
        try:
            with urllib.request.urlopen(url + "/api/videos", timeout=1) as r:
                if r.status == 200 and _listeners(int(url.rsplit(":", 1)[1])) == listeners:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not start")


@pytest.fixture(
    params=[
        pytest.param("primary", marks=pytest.mark.slow),
        pytest.param("edges", marks=pytest.mark.slow),
        "in-process",
    ]
)
async def server(
    request: pytest.FixtureRequest, make_client: AppClient, config: Config
) -> AsyncIterator[Target]:
    """Each way streamd answers HTTP: `streamd serve` alone, with two edge processes in
    front (uvloop both), and `create_app` under the test client (asyncio's loop)."""
    if request.param != "in-process":
        yield request.getfixturevalue("served")[request.param]
        return
    http = HttpConfig(
        header_timeout_s=HEADER_S, keepalive_timeout_s=KEEPALIVE_S, write_timeout_s=WRITE_S
    )
    transcode = TranscodeConfig(ladder=config.transcode.ladder, workers=1)
    client = await make_client(http=http, transcode=transcode)
    assert client.server.port is not None
    yield Target(client.server.port)


def _tcp_rows() -> list[list[str]]:
    return [row.split() for row in Path("/proc/net/tcp").read_text().splitlines()[1:]]


def _port(address: str) -> int:
    return int(address.split(":")[1], 16)


def _listeners(port: int) -> int:
    return sum(1 for r in _tcp_rows() if r[3] == "0A" and _port(r[1]) == port)


def _held(port: int) -> set[int]:
    """The client ports of connections to `port` some process still has open (the kernel
    shows inode 0 for sockets no process holds: orphaned or in TIME_WAIT)."""
    return {_port(r[2]) for r in _tcp_rows() if _port(r[1]) == port and _port(r[2]) and r[9] != "0"}


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def _poll(check: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Wait until `check()` holds; how long it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if check():
            return time.monotonic() - start
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {timeout_s} s: {what}")


async def _until_closed(reader: asyncio.StreamReader, timeout_s: float) -> bytes:
    """Everything the server sends until it closes (or resets) the connection."""
    got = b""
    async with asyncio.timeout(timeout_s):
        try:
            while chunk := await reader.read(65536):
                got += chunk
        except ConnectionResetError:
            pass
    return got


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status = int(head.split(b" ", 2)[1])
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return status, await asyncio.wait_for(reader.readexactly(length), 5)


async def _timed_get(url: str) -> tuple[int, float]:
    """A normal client's GET on a new connection, and how long its answer took."""
    start = time.monotonic()
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        await r.read()
        return r.status, time.monotonic() - start


async def test_slowloris_headers_are_cut_at_the_deadline(server: Target) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    start = time.monotonic()
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")

    async def trickle() -> None:
        """A header line every fifth of the deadline: bytes keep coming, the end never."""
        for i in range(1000):
            writer.write(f"X-Slow-{i}: {i}\r\n".encode())
            await asyncio.sleep(HEADER_S / 5)

    sending = asyncio.create_task(trickle())
    try:
        got = await _until_closed(reader, HEADER_S + 5)
    finally:
        sending.cancel()
        writer.close()
    took = time.monotonic() - start
    assert got == b"", "cut, not answered"
    assert HEADER_S - 0.1 <= took <= HEADER_S + SLACK_S, took
    status, answer_s = await _timed_get(server.url + "/healthz")
    assert status == 200
    assert answer_s < 1


async def test_a_connection_that_sends_nothing_is_cut(server: Target) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    start = time.monotonic()
    assert await _until_closed(reader, HEADER_S + 5) == b""
    writer.close()
    took = time.monotonic() - start
    assert HEADER_S - 0.1 <= took <= HEADER_S + SLACK_S, took


async def test_idle_keepalive_is_closed_but_not_by_the_header_deadline(server: Target) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    writer.write(request)
    assert (await _response(reader))[0] == 200
    # Idle for longer than the header deadline: still open, as keep-alive allows.
    await asyncio.sleep(HEADER_S + 0.5)
    writer.write(request)
    assert (await _response(reader))[0] == 200
    idle_from = time.monotonic()
    assert await _until_closed(reader, KEEPALIVE_S + 5) == b""
    writer.close()
    took = time.monotonic() - idle_from
    assert KEEPALIVE_S - 0.1 <= took <= KEEPALIVE_S + SLACK_S, took


async def test_a_viewer_that_stops_reading_is_cut(server: Target) -> None:
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as s, s.get(server.url + BIG_FILE) as r:
        size = len(await r.read())
    count = 20  # pipelined: far more than every socket buffer on the way holds
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", server.port))
        client_port = sock.getsockname()[1]
        request = f"GET {BIG_FILE} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        await loop.sock_sendall(sock, request * count)
        start = time.monotonic()
        await _poll(lambda: client_port in _held(server.port), 1, "the server took it")
        # It reads nothing; everyone else is answered at once meanwhile.
        for path in ("/healthz", BIG_FILE):
            status, answer_s = await _timed_get(server.url + path)
            assert status == 200
            assert answer_s < 1, (path, answer_s)
        await _poll(
            lambda: client_port not in _held(server.port),
            WRITE_S * 1.25 + SLACK_S,
            "the server let go of the stalled viewer",
        )
        took = time.monotonic() - start
        assert took >= WRITE_S, took
        received = 0
        try:
            while chunk := await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), 5):
                received += len(chunk)
        except ConnectionResetError:
            pass
        assert 0 < received < count * size
    status, answer_s = await _timed_get(server.url + "/healthz")
    assert status == 200
    assert answer_s < 1


async def test_a_slow_reader_is_not_cut(server: Target) -> None:
    """The write deadline is on progress, not on the whole answer: a viewer that keeps
    reading, however slowly, keeps its connection."""
    loop = asyncio.get_running_loop()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", server.port))
        client_port = sock.getsockname()[1]
        request = f"GET {BIG_FILE} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        await loop.sock_sendall(sock, request * 20)
        received, start = 0, time.monotonic()
        while time.monotonic() - start < WRITE_S * 2.5:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 4096), 5)
            assert chunk, f"cut after {time.monotonic() - start:.1f} s and {received} bytes"
            received += len(chunk)
            await asyncio.sleep(0.05)  # ~80 KB/s: the client's pace, not a wait for work
        assert client_port in _held(server.port)


@pytest.mark.slow
async def test_300_half_sent_requests_cannot_stop_the_others(primary: Target) -> None:
    assert primary.pid is not None
    fds_before = _fds(primary.pid)
    upload = (
        "POST /upload/slow{} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n"
        f"Authorization: Bearer {TEST_KEY}\r\nContent-Type: video/mp2t\r\n\r\n"
    )
    writers: list[asyncio.StreamWriter] = []
    ports: set[int] = set()
    try:
        for i in range(300):
            _, writer = await asyncio.open_connection("127.0.0.1", primary.port)
            writers.append(writer)
            ports.add(writer.get_extra_info("sockname")[1])
            if i % 2:  # headers never finished
                writer.write(b"GET /api/videos HTTP/1.1\r\nHost: x\r\nX-Half: ")
            else:  # a body never finished
                writer.write(upload.format(i).encode() + b"G" * 1000)
        # Opening 300 takes a while on a busy 2-core box: well within the deadlines.
        await _poll(lambda: ports <= _held(primary.port), 3, "the server holds all 300")
        # While they hang, a normal client is answered at once.
        for path in ("/healthz", "/api/videos", "/healthz"):
            status, answer_s = await _timed_get(primary.url + path)
            assert status == 200
            assert answer_s < 1, (path, answer_s)
        assert len(ports & _held(primary.port)) > 250, "they were still hanging"
        # Then every one is cut by a deadline (headers; a stalled body, then lingering).
        await _poll(
            lambda: not ports & _held(primary.port),
            max(HALF_SENT_HEADER_S, IDLE_S) + LINGER_S + SLACK_S + 2,
            "all 300 closed",
        )
        await _poll(lambda: _fds(primary.pid) <= fds_before + 2, 5, "the server's fds freed")
    finally:
        for writer in writers:
            writer.close()
    status, _ = await _timed_get(primary.url + "/healthz")
    assert status == 200


async def test_a_trickling_upload_body_is_cut_for_its_rate(
    make_client: AppClient, config: Config
) -> None:
    """A byte every half second never trips the idle timeout, but after the first one the
    body must average `upload.min_rate_bytes_per_s`: 408, and the upload slot is free."""
    upload = replace(config.upload, idle_timeout_s=1.0, min_rate_bytes_per_s=1000.0)
    client = await make_client(upload=upload)
    assert client.server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    writer.write(
        b"POST /upload/trickle HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
        + f"Authorization: Bearer {TEST_KEY}\r\n\r\n".encode()
    )
    started = time.monotonic()
    status = 0
    while time.monotonic() - started < 10:
        writer.write(b"x")
        try:
            status, body = await asyncio.wait_for(_response(reader), 0.5)
            break
        except TimeoutError:
            continue
    assert status == 408, status
    assert b"too slow" in body
    assert time.monotonic() - started < 3
    writer.close()
