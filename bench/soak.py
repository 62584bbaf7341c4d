"""Soak: many viewers and a live upload for a long while, on loopback; nothing may fail.

    .venv/bin/python -m bench.soak [--viewers 200] [--seconds 600]

`streamd serve` on its defaults takes a live 360p30 stream from `ffmpeg -re ... -f hls
-method PUT` (the encoder people have, sending its key) while simulated viewers play it as
hls.js does: the master once, then the media playlist of a rung every second, and each new
segment once. Viewers are spread over the rungs and start over the first 10 s. Prints, every
minute and at the end: viewers, requests/s, p99 latency, failed requests, the longest time a
viewer saw its playlist not grow (a stall: > 3 target durations), and the server's RSS and
open files, so a leak shows as a line that keeps climbing. Not part of the unit suite.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.media import FFMPEG, h264_aac, lavfi_source
from bench.server import Server, memory_by_kind, process_tree

VIDEO = "soak"
STALL_S = 6.0  # three target durations of 2 s


def open_files(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            pass
    return total


class Stats:
    def __init__(self) -> None:
        self.latencies_s: list[float] = []
        self.failures: list[str] = []
        self.longest_stall_s = 0.0

    def p99_ms(self) -> float:
        ordered = sorted(self.latencies_s)
        return 1000 * ordered[int(0.99 * (len(ordered) - 1))] if ordered else 0.0


async def fetch(http: aiohttp.ClientSession, url: str, stats: Stats) -> bytes | None:
    started = time.monotonic()
    try:
        async with http.get(url) as r:
            body = await r.read()
            if r.status != 200:
                stats.failures.append(f"{r.status} {url}")
                return None
    except aiohttp.ClientError as exc:
        stats.failures.append(f"{exc!r} {url}")
        return None
    stats.latencies_s.append(time.monotonic() - started)
    return body


async def viewer(base: str, stats: Stats, until: float, delay_s: float) -> None:
    """A player: master once, then its rung's playlist every second and each new segment."""
    await asyncio.sleep(delay_s)
    async with aiohttp.ClientSession() as http:
        master = await fetch(http, f"{base}/viewstream/metadata/{VIDEO}", stats)
        if master is None:
            return
        variants = [line for line in master.decode().splitlines() if line.startswith("/hls/")]
        playlist_url = base + random.choice(variants)
        folder = playlist_url.rsplit("/", 1)[0]
        seen: set[str] = set()
        grew_at = time.monotonic()
        while time.monotonic() < until:
            body = await fetch(http, playlist_url, stats)
            if body is not None:
                uris = [x for x in body.decode().splitlines() if x and not x.startswith("#")]
                new = [u for u in uris if u not in seen]
                now = time.monotonic()
                if new:
                    grew_at = now
                    for uri in new[-2:] if not seen else new:  # join near the live edge
                        await fetch(http, f"{folder}/{uri}", stats)
                    seen.update(uris)
                stats.longest_stall_s = max(stats.longest_stall_s, now - grew_at)
            await asyncio.sleep(1.0)


async def main_async(viewers: int, seconds: int, cache_mb: int | None) -> int:
    env = {} if cache_mb is None else {"STREAMD_CACHE_MAX_BYTES": str(cache_mb << 20)}
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        async with Server(Path(tmp) / "data", env) as server:
            encoder = await asyncio.create_subprocess_exec(
                FFMPEG, "-v", "error", "-re", *lavfi_source(640, 360, seconds + 30),
                *h264_aac("veryfast"), "-f", "hls", "-hls_time", "2",
                "-headers", f"Authorization: Bearer {server.key}\r\n",
                "-method", "PUT", f"{server.url}/upload/{VIDEO}/index.m3u8",
            )  # fmt: skip
            while not (await server.video(VIDEO)).get("segments"):
                await asyncio.sleep(0.5)
            stats = Stats()
            started = time.monotonic()
            until = started + seconds
            tasks = [
                asyncio.create_task(viewer(server.url, stats, until, 10 * i / viewers))
                for i in range(viewers)
            ]
            pids = process_tree(server.proc.pid) if server.proc else []
            first_rss_mb, first_files = server.rss_kb() / 1024, open_files(pids)
            cache = "default" if cache_mb is None else f"{cache_mb} MB per process"
            print(
                f"{viewers} viewers for {seconds} s, cache.max_bytes {cache};"
                f" RSS {first_rss_mb:.0f} MB, {first_files} fds"
            )
            rss_mb: list[float] = []
            sent, last = 0, started
            while time.monotonic() < until:
                await asyncio.sleep(min(60.0, max(0.0, until - time.monotonic())))
                now = time.monotonic()
                done = len(stats.latencies_s) + len(stats.failures)
                rate = (done - sent) / max(now - last, 1e-3)
                pids = process_tree(server.proc.pid) if server.proc else []
                rss_mb.append(server.rss_kb() / 1024)
                by_kind = memory_by_kind(server.proc.pid) if server.proc else {}
                print(
                    f"{now - started:5.0f} s: {rate:6.0f} req/s, p99 {stats.p99_ms():6.1f} ms,"
                    f" failed {len(stats.failures)}, longest stall {stats.longest_stall_s:.1f} s,"
                    f" RSS {server.rss_kb() / 1024:.0f} MB, {open_files(pids)} fds ("
                    + ", ".join(f"{kind} {rss:.0f}" for kind, (rss, _) in sorted(by_kind.items()))
                    + ")",
                    flush=True,
                )
                sent, last = done, now
            await asyncio.gather(*tasks)
            encoder.terminate()
            await encoder.wait()
            total = len(stats.latencies_s) + len(stats.failures)
            print(
                f"result: {viewers} viewers, {total / seconds:.0f} req/s,"
                f" p99 {stats.p99_ms():.1f} ms,"
                f" {len(stats.failures)} failed, longest stall {stats.longest_stall_s:.1f} s"
                f" (limit {STALL_S:g}), RSS {first_rss_mb:.0f} -> {server.rss_kb() / 1024:.0f} MB"
            )
            if len(rss_mb) >= 4:  # the second half against the first: levelling off or not
                half = len(rss_mb) // 2
                first_growth = rss_mb[half - 1] - rss_mb[0]
                second_growth = rss_mb[-1] - rss_mb[half - 1]
                print(
                    f"RSS growth: {first_growth:+.0f} MB in the first half of the samples,"
                    f" {second_growth:+.0f} MB in the second"
                )
            for failure in stats.failures[:10]:
                print("  failed:", failure)
            ok = not stats.failures and stats.longest_stall_s <= STALL_S
            return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--cache-mb", type=int, help="cache.max_bytes of each process, in MB")
    args = parser.parse_args()
    sys.exit(asyncio.run(main_async(args.viewers, args.seconds, args.cache_mb)))


if __name__ == "__main__":
    main()
