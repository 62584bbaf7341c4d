"""How many live streams this box keeps at real time through RTMP, against the ffmpeg CLI
doing the same ladder per stream (what Owncast and nginx-rtmp's `exec` do).

    .venv/bin/python -m bench.live [--seconds 20] [--max-streams 5] [--part 720 1080]

Sources: camera-like 30 fps recordings (testsrc2 with light noise, H.264 with a 2 s GOP,
AAC), published N times at once with `ffmpeg -re -c copy -f flv` (encoders sending at real
time) to `streamd serve` with overload handling off. Reference: N ffmpeg processes, each
reading the same recording at real time (`-re`) and encoding the same ladder (x264 at
streamd's live preset, bitrates and live lookahead, AAC) to HLS.

- 720: a 720p source at 3 Mbit/s, ladder 720p/480p/360p, passthrough off: the same work.
- 1080: a 1080p source at 4.5 Mbit/s, ladder 1080p/720p/480p/360p, passthrough on (the
  source is the 1080p rung as it came, as streamd does for OBS by default); the CLI encodes
  every rung.

A run keeps up when every publisher finishes within 5% of its duration (one the server
stops reading finishes late; so does an ffmpeg that cannot encode at real time) and, for
streamd, p95 publish delay stays under a segment's duration (2 s). N grows from 1 until a
run does not keep up. The publish delay of a segment runs from the moment its last frame
arrived (the stream's first frame's arrival plus the segment's end) to its being in every
playlist.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from bench.latency import live_publish_delays, p95, percentiles
from bench.media import FFMPEG, h264_aac, hls_ladder, lavfi_source, split_scale
from bench.server import Server, free_port
from streamd.config import TranscodeConfig
from streamd.media.codecs.h264 import live_x264_params
from streamd.model.ladder import parse_ladder

KEEPS_UP = 1.05  # finishing within 5% of the media's duration
DELAY_LIMIT_S = 2.0  # p95 publish delay of a stream that keeps up: one segment


@dataclass(frozen=True)
class Part:
    height: int
    video_bitrate: str
    ladder: tuple[str, ...]
    passthrough: bool


PARTS = {
    "720": Part(720, "3M", ("720p:2800k", "480p:1400k", "360p:800k"), passthrough=False),
    "1080": Part(1080, "4500k", ("1080p:5000k", "720p:2800k", "480p:1400k", "360p:800k"), True),
}


def reference_command(source: Path, out: Path, part: Part) -> list[str]:
    """The ffmpeg CLI doing streamd's live ladder from a real-time read of the source."""
    rungs = parse_ladder(list(part.ladder))
    preset = TranscodeConfig().live_preset
    cmd = [FFMPEG, "-v", "error", "-y", "-re", "-i", str(source), *split_scale(rungs)]
    for i, r in enumerate(rungs):
        kbps = r.video_bitrate_bps // 1000
        cmd += ["-map", f"[o{i}]", "-map", "0:a"]
        cmd += [f"-c:v:{i}", "libx264", f"-b:v:{i}", f"{kbps}k", f"-c:a:{i}", "aac"]
        params = f"vbv-maxrate={kbps * 6 // 5}:vbv-bufsize={kbps * 2}{live_x264_params(preset)}"
        cmd += [f"-x264-params:v:{i}", params]
    cmd += ["-preset", preset, "-profile:v", "high", *hls_ladder(out, len(rungs))]
    return cmd


async def timed(commands: list[list[str]]) -> list[float]:
    """Run commands at once; each one's wall time (raises if one fails)."""

    async def one(cmd: list[str]) -> float:
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(*cmd, stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"{cmd[0]} failed: {err.decode()[-500:]}")
        return time.monotonic() - started

    return list(await asyncio.gather(*(one(c) for c in commands)))


async def streamd_run(
    root: Path, source: Path, part: Part, streams: int, seconds: int
) -> tuple[bool, str]:
    rtmp_port = free_port()
    env = {
        "STREAMD_TRANSCODE_LADDER": ",".join(part.ladder),
        "STREAMD_TRANSCODE_PASSTHROUGH": "true" if part.passthrough else "false",
        "STREAMD_TRANSCODE_OVERLOAD_DELAY_S": "0",
        "STREAMD_INGEST_RTMP_PORT": str(rtmp_port),
        "STREAMD_INGEST_RECONNECT_WINDOW_S": "1",
    }
    data = root / f"streamd-{part.height}-{streams}"
    async with Server(data, env) as server:
        publish = [
            [FFMPEG, "-v", "error", "-re", "-i", str(source), "-c", "copy", "-f", "flv",
             f"rtmp://127.0.0.1:{rtmp_port}/live/s{i}?key={server.key}"]
            for i in range(streams)
        ]  # fmt: skip
        times = await timed(publish)
        ended = [await server.wait_ended(f"s{i}") for i in range(streams)]
        # Each stream's last segment closes when its session ends: not a publish delay.
        delays = [d for i in range(streams) for d in live_publish_delays(data, f"s{i}")[:-1]]
    kept = (
        all(t <= seconds * KEEPS_UP for t in times)
        and all(abs(v["durationS"] - seconds) < 0.5 for v in ended)
        and p95(delays) <= DELAY_LIMIT_S
    )
    slowest = max(times)
    return kept, f"slowest publisher {slowest:.1f} s; publish delay {percentiles(delays)}"


async def ffmpeg_run(
    root: Path, source: Path, part: Part, streams: int, seconds: int
) -> tuple[bool, str]:
    outs = [root / f"ffmpeg-{part.height}-{streams}-{i}" for i in range(streams)]
    for out in outs:
        out.mkdir()
    times = await timed([reference_command(source, out, part) for out in outs])
    slowest = max(times)
    return slowest <= seconds * KEEPS_UP, f"slowest {slowest:.1f} s"


Run = Callable[[Path, Path, Part, int, int], Awaitable[tuple[bool, str]]]


async def capacity(
    name: str, run: Run, root: Path, source: Path, part: Part, args: argparse.Namespace
) -> int:
    """The most streams `run` keeps at real time, trying 1, 2, ... until one falls behind."""
    held = 0
    for n in range(1, args.max_streams + 1):
        kept, detail = await run(root, source, part, n, args.seconds)
        print(f"  {name}: {n} stream(s) {'keep up' if kept else 'fall behind'} ({detail})")
        if not kept:
            break
        held = n
    return held


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        root = Path(tmp)
        for name in args.part:
            part = PARTS[name]
            source = root / f"source-{part.height}.flv"
            encode = h264_aac("veryfast", "-b:v", part.video_bitrate)
            width = part.height * 16 // 9
            proc = await asyncio.create_subprocess_exec(
                FFMPEG, "-v", "error", *lavfi_source(width, part.height, args.seconds, noise=8),
                *encode, "-f", "flv", str(source),
            )  # fmt: skip
            await proc.wait()
            print(
                f"{part.height}p30 camera-like source at {part.video_bitrate}bit/s, "
                f"{args.seconds} s, ladder {' '.join(part.ladder)}, "
                f"streamd passthrough {'on' if part.passthrough else 'off'}"
            )
            ours = await capacity("streamd", streamd_run, root, source, part, args)
            theirs = await capacity("ffmpeg CLI", ffmpeg_run, root, source, part, args)
            ratio = ours / theirs if theirs else float("inf")
            print(
                f"{part.height}p30 live streams held at real time: streamd {ours}, "
                f"ffmpeg CLI {theirs}: ratio {ratio:.2f} (target >= 1.0)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--max-streams", type=int, default=5)
    parser.add_argument("--part", nargs="+", choices=sorted(PARTS), default=["720", "1080"])
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
