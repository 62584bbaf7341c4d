"""How many live streams this box keeps at real time through RTMP, against the ffmpeg CLI
doing the same ladder per stream (what Owncast and nginx-rtmp's `exec` do).

    .venv/bin/python -m bench.live [--seconds 20] [--max-streams 4]

Source: a camera-like 720p30 recording (bench.latency's, H.264 3 Mbit/s, 2 s GOP, AAC),
published N times at once with `ffmpeg -re -c copy -f flv` (an encoder sending at real time).
streamd: `streamd serve` with the ladder 720p/480p/360p and overload handling off, each
stream published to rtmp://.../live/sN. Reference: N ffmpeg processes, each reading the same
recording at real time (`-re`) and encoding the same ladder (x264 at streamd's preset,
bitrates and live lookahead, AAC) to HLS. A run keeps up when every stream finishes within
5% of its duration (a publisher that cannot send at real time, because the server stopped
reading, finishes late; so does an ffmpeg that cannot encode at real time). N grows from 1
until a run does not keep up; the most that kept up is each one's capacity.

Also prints streamd's publish delay per segment: from the moment its last frame arrived
(the stream's first frame's arrival plus the segment's end) to its being in every playlist.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from pathlib import Path

from bench.latency import ffmpeg_720p30, percentiles
from bench.media import FFMPEG
from bench.server import Server, free_port
from streamd.media.codecs.h264 import LIVE_X264
from streamd.model.ladder import parse_ladder
from streamd.model.layout import STATE_FILE

LADDER = ["720p:2800k", "480p:1400k", "360p:800k"]
KEEPS_UP = 1.05  # finishing within 5% of the media's duration


def publish_delays(data_dir: Path, video_id: str) -> list[float]:
    """Per segment: published time minus the wall time its last frame arrived."""
    db = sqlite3.connect(f"file:{data_dir / STATE_FILE}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT g.published_wall_s - (s.start_wall_s + g.start_s + g.duration_s)"
            " FROM segments g JOIN streams s ON s.video_id = g.video_id"
            " WHERE g.video_id = ? ORDER BY g.sequence",
            (video_id,),
        ).fetchall()
    finally:
        db.close()
    return [delay for (delay,) in rows[:-1]]  # the last closes at the end of the session


def reference_command(source: Path, out: Path) -> list[str]:
    """The ffmpeg CLI doing streamd's live ladder from a real-time read of the source."""
    rungs = parse_ladder(LADDER)
    n = len(rungs)
    graph = f"[0:v]split={n}" + "".join(f"[v{i}]" for i in range(n)) + ";"
    graph += ";".join(f"[v{i}]scale=-2:{r.lines}[o{i}]" for i, r in enumerate(rungs))
    cmd = [FFMPEG, "-v", "error", "-y", "-re", "-i", str(source), "-filter_complex", graph]
    for i, r in enumerate(rungs):
        kbps = r.video_bitrate_bps // 1000
        cmd += ["-map", f"[o{i}]", "-map", "0:a"]
        cmd += [f"-c:v:{i}", "libx264", f"-b:v:{i}", f"{kbps}k", f"-c:a:{i}", "aac"]
        params = f"vbv-maxrate={kbps * 6 // 5}:vbv-bufsize={kbps * 2}{LIVE_X264}"
        cmd += [f"-x264-params:v:{i}", params]
    cmd += [
        "-preset",
        "veryfast",
        "-profile:v",
        "high",
        "-force_key_frames",
        "expr:gte(t,n_forced*2)",
    ]
    cmd += ["-var_stream_map", " ".join(f"v:{i},a:{i}" for i in range(n))]
    cmd += [
        "-f",
        "hls",
        "-hls_time",
        "2",
        "-hls_segment_type",
        "fmp4",
        "-hls_playlist_type",
        "event",
    ]
    cmd += ["-master_pl_name", "master.m3u8", str(out / "v%v" / "index.m3u8")]
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


async def streamd_run(root: Path, source: Path, streams: int, seconds: int) -> tuple[bool, str]:
    rtmp_port = free_port()
    env = {
        "STREAMD_TRANSCODE_LADDER": ",".join(LADDER),
        "STREAMD_TRANSCODE_OVERLOAD_DELAY_S": "0",
        "STREAMD_INGEST_RTMP_PORT": str(rtmp_port),
        "STREAMD_INGEST_RECONNECT_WINDOW_S": "1",
    }
    data = root / f"streamd-{streams}"
    async with Server(data, env) as server:
        publish = [
            [FFMPEG, "-v", "error", "-re", "-i", str(source), "-c", "copy", "-f", "flv",
             f"rtmp://127.0.0.1:{rtmp_port}/live/s{i}?key={server.key}"]
            for i in range(streams)
        ]  # fmt: skip
        times = await timed(publish)
        ended = [await server.wait_ended(f"s{i}") for i in range(streams)]
        delays = [d for i in range(streams) for d in publish_delays(data, f"s{i}")]
    kept = all(t <= seconds * KEEPS_UP for t in times) and all(
        abs(v["durationS"] - seconds) < 0.5 for v in ended
    )
    slowest = max(times)
    return kept, f"slowest publisher {slowest:.1f} s; publish delay {percentiles(delays)}"


async def ffmpeg_run(root: Path, source: Path, streams: int, seconds: int) -> tuple[bool, str]:
    outs = [root / f"ffmpeg-{streams}-{i}" for i in range(streams)]
    for out in outs:
        out.mkdir()
    times = await timed([reference_command(source, out) for out in outs])
    slowest = max(times)
    return slowest <= seconds * KEEPS_UP, f"slowest {slowest:.1f} s"


async def capacity(
    name: str, run: object, root: Path, source: Path, args: argparse.Namespace
) -> int:
    held = 0
    for n in range(1, args.max_streams + 1):
        kept, detail = await run(root, source, n, args.seconds)  # type: ignore[operator]
        print(f"  {name}: {n} stream(s) {'keep up' if kept else 'fall behind'} ({detail})")
        if not kept:
            break
        held = n
    return held


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        root = Path(tmp)
        source = root / "source.flv"
        proc = await asyncio.create_subprocess_exec(
            *ffmpeg_720p30(args.seconds, "-f", "flv", str(source), realtime=False)
        )
        await proc.wait()
        print(f"720p30 camera-like source, {args.seconds} s, ladder {' '.join(LADDER)}")
        ours = await capacity("streamd", streamd_run, root, source, args)
        theirs = await capacity("ffmpeg CLI", ffmpeg_run, root, source, args)
        ratio = ours / theirs if theirs else float("inf")
        print(f"live 720p30 streams held at real time: streamd {ours}, ffmpeg CLI {theirs}")
        print(f"ratio {ratio:.2f} (target >= 1.0)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--max-streams", type=int, default=4)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
