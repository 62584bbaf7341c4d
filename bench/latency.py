"""How close to live: publish delay per segment and the delay a viewer sees.

    .venv/bin/python -m bench.latency [--seconds 30]

A live 720p30 stream at real time, fed twice: by `ffmpeg -re ... -f hls -method PUT` (the
encoder people have) and by `streamd push --realtime` (a recording paced like a live event),
both with 2 s segments into `streamd serve` on its defaults. For each segment: the time from
the end of its upload to its being in every rung's playlist (p50, p95, max). While ffmpeg
streams, headless Chromium plays /player.html (hls.js) and reports how far it is behind the
live edge and behind real time (the segment's EXT-X-PROGRAM-DATE-TIME against the clock).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.media import FFMPEG, h264_aac, lavfi_source
from bench.server import Server
from streamd.model.layout import STATE_FILE

ROOT = Path(__file__).resolve().parent.parent


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] if ordered else 0.0


def percentiles(values: list[float]) -> str:
    if not values:
        return "no samples"
    return (
        f"p50 {statistics.median(values):.2f} s, p95 {p95(values):.2f} s, "
        f"max {max(values):.2f} s ({len(values)} samples)"
    )


def publish_delays(data_dir: Path, video_id: str) -> list[float]:
    """Per segment: published time minus the arrival of the upload it came from."""
    db = sqlite3.connect(f"file:{data_dir / STATE_FILE}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT s.published_wall_s - u.received_wall_s FROM segments s JOIN uploads u"
            " ON u.video_id = s.video_id AND u.number = s.upload"
            " WHERE s.video_id = ? ORDER BY s.sequence",
            (video_id,),
        ).fetchall()
    finally:
        db.close()
    return [delay for (delay,) in rows]


def ffmpeg_720p30(seconds: int, *output: str, realtime: bool = True) -> list[str]:
    """A camera-like 720p30 source with a tone, encoded with 2 s GOPs, to `output`."""
    encode = h264_aac("veryfast", "-b:v", "3M")
    return [
        FFMPEG,
        "-v",
        "error",
        *(["-re"] if realtime else []),
        *lavfi_source(1280, 720, seconds, noise=8),
        *encode,
        *output,
    ]


async def watch(url: str, seconds: int) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(ROOT / "bench" / "viewer.mjs"),
        url,
        str(seconds),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await proc.communicate()
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def main_async(seconds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        root = Path(tmp)
        recording = root / "recording.mp4"
        proc = await asyncio.create_subprocess_exec(
            *ffmpeg_720p30(seconds, str(recording), realtime=False)
        )
        await proc.wait()
        async with Server(root / "data") as server:
            print(
                f"streamd on {server.url}, defaults; source 720p30, 2 s segments, {seconds} s live"
            )
            push = await asyncio.create_subprocess_exec(
                *ffmpeg_720p30(
                    seconds,
                    "-f",
                    "hls",
                    "-hls_time",
                    "2",
                    "-headers",
                    f"Authorization: Bearer {server.key}\r\n",
                    "-method",
                    "PUT",
                    f"{server.url}/upload/lat-ffmpeg/index.m3u8",
                )
            )
            await asyncio.sleep(4)  # let the first segments arrive, as a viewer would
            viewer = await watch(f"{server.url}/player.html?v=lat-ffmpeg", max(3, seconds - 8))
            await push.wait()
            await server.wait_ended("lat-ffmpeg")
            cli = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "streamd",
                "push",
                str(recording),
                "--server",
                server.url,
                "--video",
                "lat-push",
                "--key",
                server.key,
                "--realtime",
                stdout=asyncio.subprocess.DEVNULL,
            )
            await cli.wait()
            await server.wait_ended("lat-push")
            ff = publish_delays(server.data_dir, "lat-ffmpeg")
            pushed = publish_delays(server.data_dir, "lat-push")
    print(f"publish delay, ffmpeg -method PUT  : {percentiles(ff)}")
    print(f"publish delay, streamd push        : {percentiles(pushed)}")
    edge = [s["edge"] for s in viewer["samples"] if s["edge"] is not None]
    real = [s["realtime"] for s in viewer["samples"] if s["realtime"] is not None]
    print(f"hls.js behind the live edge        : {percentiles(edge)}")
    print(f"hls.js behind real time (PDT)      : {percentiles(real)}")
    if viewer["errors"]:
        print(f"player errors: {viewer['errors']}")
    publish_ok = p95(ff + pushed) < 1.0
    viewer_ok = bool(real) and statistics.median(real) < 6.0
    print(
        f"targets: publish p95 < 1 s {'met' if publish_ok else 'NOT met'}; "
        f"viewer behind real time < 6 s {'met' if viewer_ok else 'NOT met'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=30)
    args = parser.parse_args()
    asyncio.run(main_async(args.seconds))


if __name__ == "__main__":
    main()
