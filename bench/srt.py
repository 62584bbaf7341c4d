"""The SRT listener: latency it adds, what a refused caller hears, CPU per megabyte.

    .venv/bin/python -m bench.srt [--seconds 5]

Latency: a libsrt caller in this process sends a 1316-byte message every 10 ms stamped
with the monotonic clock; the time from stamp to `SrtConnection.read()` is measured at
SRT latency 120 ms (libsrt's default) and 20 ms. libsrt holds each packet until its play
time (the latency), so what the listener adds is what is left over. Refusal: a caller with
a wrong key reads its reject reason. CPU: Debian's ffmpeg publishes 720p30 at 6 Mbit/s at
real time; the listener process's CPU time (all its threads, libsrt's too) per MB read.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import statistics
import struct
import time
from pathlib import Path

from streamd.ingest.srt.connection import SrtConnection
from streamd.ingest.srt.libsrt import LibSrt, SockOpt, load, sockaddr
from streamd.ingest.srt.server import SrtListener
from streamd.ingest.srt.streamid import StreamId

FFMPEG = Path("/usr/bin/ffmpeg")  # Debian's: PyAV's FFmpeg has no srt protocol
MESSAGE_BYTES = 1316
KEY = "bench-key"


def authorize(stream_id: StreamId, peer: str) -> str | None:
    return None if stream_id.key == KEY else "wrong key"


class Caller:
    """A blocking libsrt caller (what OBS is), for measuring only."""

    def __init__(self, srt: LibSrt, port: int, stream_id: str, latency_ms: int) -> None:
        self.lib = ctypes.CDLL(srt.path)
        self.lib.srt_connect.argtypes = (ctypes.c_int32, ctypes.c_char_p, ctypes.c_int)
        self.lib.srt_sendmsg.argtypes = (
            ctypes.c_int32,
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
        )
        self.srt = srt
        self.sock = srt.create_socket()
        raw = stream_id.encode()
        self.lib.srt_setsockflag(self.sock, SockOpt.STREAMID, raw, len(raw))
        srt.set_int(self.sock, SockOpt.LATENCY, latency_ms)
        address = sockaddr("127.0.0.1", port)
        self.connected = self.lib.srt_connect(self.sock, address, len(address)) != -1
        self.reject_reason = int(self.lib.srt_getrejectreason(self.sock))

    def send_stamped(self, seconds: float) -> None:
        interval_ns = 10_000_000
        start = time.monotonic_ns()
        for seq in range(int(seconds * 100)):
            time.sleep(max(0, start + seq * interval_ns - time.monotonic_ns()) / 1e9)
            stamp = struct.pack("!Qq", seq, time.monotonic_ns())
            message = stamp + bytes(MESSAGE_BYTES - len(stamp))
            if self.lib.srt_sendmsg(self.sock, message, len(message), -1, 1) == -1:
                raise RuntimeError(self.srt.last_error()[1])

    def close(self) -> None:
        self.srt.close(self.sock)


async def latency(srt: LibSrt, latency_ms: int, seconds: float) -> list[float]:
    delays_ms: list[float] = []

    async def on_publish(conn: SrtConnection) -> None:
        pending = b""
        while chunk := await conn.read():
            now = time.monotonic_ns()
            pending += chunk
            while len(pending) >= MESSAGE_BYTES:
                _, sent = struct.unpack("!Qq", pending[:16])
                delays_ms.append((now - sent) / 1e6)
                pending = pending[MESSAGE_BYTES:]

    async with SrtListener(
        "127.0.0.1", 0, authorize, on_publish, latency_ms=latency_ms, library=srt
    ) as listener:
        srt.startup()  # the caller's own reference, like a separate program's
        try:
            caller = await asyncio.to_thread(
                Caller, srt, listener.port, f"#!::r=bench,m=publish,s={KEY}", latency_ms
            )
            assert caller.connected, srt.last_error()
            await asyncio.to_thread(caller.send_stamped, seconds)
            await asyncio.sleep(0.5 + latency_ms / 1000)  # the last ones are due by then
            caller.close()
        finally:
            srt.cleanup()
    return delays_ms


async def refused(srt: LibSrt) -> tuple[bool, int]:
    async def on_publish(conn: SrtConnection) -> None:
        raise AssertionError("a refused caller was let in")

    async with SrtListener("127.0.0.1", 0, authorize, on_publish, library=srt) as listener:
        srt.startup()
        try:
            caller = await asyncio.to_thread(
                Caller, srt, listener.port, "#!::r=bench,m=publish,s=wrong", 120
            )
            caller.close()
        finally:
            srt.cleanup()
    return caller.connected, caller.reject_reason


async def cpu_per_mb(srt: LibSrt, seconds: float) -> tuple[float, int]:
    total = 0

    async def on_publish(conn: SrtConnection) -> None:
        nonlocal total
        while chunk := await conn.read():
            total += len(chunk)

    async with SrtListener("127.0.0.1", 0, authorize, on_publish, library=srt) as listener:
        # Encode first, so that the CPU measured is the listener's, not x264's.
        source = Path(f"/tmp/srt-bench-{seconds}.ts")
        if not source.exists():
            encode = await asyncio.create_subprocess_exec(
                FFMPEG, "-hide_banner", "-loglevel", "error", "-y",
                "-f", "lavfi", "-i", f"testsrc2=s=1280x720:r=30:d={seconds}",
                "-f", "lavfi", "-i", f"sine=d={seconds}",
                "-c:v", "libx264", "-preset", "veryfast", "-b:v", "6M", "-maxrate", "6M",
                "-bufsize", "2M", "-g", "60", "-c:a", "aac", str(source),
            )  # fmt: skip
            await encode.wait()
        started = time.process_time()
        proc = await asyncio.create_subprocess_exec(
            FFMPEG, "-hide_banner", "-loglevel", "error", "-re", "-i", str(source),
            "-c", "copy", "-f", "mpegts",
            f"srt://127.0.0.1:{listener.port}?streamid=#!::r=bench,m=publish,s={KEY}&linger=2",
        )  # fmt: skip
        await proc.wait()
        while listener.connections:
            await asyncio.sleep(0.05)
        used = time.process_time() - started
    return used / (total / 1e6), total


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[round(0.95 * (len(ordered) - 1))]
    return (
        f"p50 {statistics.median(ordered):.1f} ms, p95 {p95:.1f} ms, max {ordered[-1]:.1f} ms"
        f" ({len(ordered)} messages)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args()
    srt = load()
    print(f"libsrt {srt.version_text} ({srt.path})")
    for latency_ms in (120, 20):
        delays = await latency(srt, latency_ms, args.seconds)
        print(f"SRT latency {latency_ms} ms: stamp to read() {summary(delays)}")
    connected, reason = await refused(srt)
    print(f"wrong key: connected={connected}, reject reason {reason}")
    cpu, total = await cpu_per_mb(srt, max(args.seconds, 10))
    print(f"ffmpeg 720p30 6 Mbit/s: {total / 1e6:.1f} MB read, {cpu:.3f} CPU-s per MB")


if __name__ == "__main__":
    asyncio.run(main())
