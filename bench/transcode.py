"""How fast streamd transcodes the default ladder, against the ffmpeg CLI doing the same work.

    .venv/bin/python -m bench.transcode [--seconds 20] [--height 1080]

Source: N seconds of 1080p30 with camera-like noise and AAC audio. Reference: one ffmpeg
process decoding once and encoding the default ladder (libx264 at streamd's preset and
bitrates, AAC, HLS fMP4 2 s). streamd: `streamd serve` in its own process, the source
uploaded as 2 s segments, timed from the first upload until every rung's playlist holds the
whole duration. Prints each one's realtime factor and peak RSS, and the speed ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from streamd.config import Config
from streamd.ladder import parse_ladder

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"


def make_source(out: Path, seconds: int, height: int) -> list[Path]:
    """A noisy 30 fps source with AAC, and the same cut into 2 s MPEG-TS segments."""
    width = height * 16 // 9
    src = out / "source.mp4"
    subprocess.run(
        [
            FFMPEG,
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=s={width}x{height}:r=30:d={seconds},noise=alls=20:allf=t",
            "-f",
            "lavfi",
            "-i",
            f"sine=f=440:r=48000:d={seconds}",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-crf",
            "18",
            "-g",
            "60",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-b:a",
            "192k",
            str(src),
        ],
        check=True,
    )
    seg_dir = out / "segments"
    seg_dir.mkdir()
    subprocess.run(
        [
            FFMPEG,
            "-v",
            "error",
            "-i",
            str(src),
            "-c",
            "copy",
            "-f",
            "segment",
            "-segment_time",
            "2",
            str(seg_dir / "seg%03d.ts"),
        ],
        check=True,
    )
    return sorted(seg_dir.glob("seg*.ts"))


def _rss_kb(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def _tree(pid: int) -> list[int]:
    pids, frontier = [pid], [pid]
    while frontier:
        p = frontier.pop()
        try:
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        pids += map(int, children)
        frontier += map(int, children)
    return pids


def run_ffmpeg(source: Path, out: Path, config: Config) -> tuple[float, int]:
    """The ffmpeg CLI doing streamd's ladder; returns (seconds, peak RSS kB)."""
    rungs = parse_ladder(config.transcode.ladder)
    n = len(rungs)
    split = f"[0:v]split={n}" + "".join(f"[v{i}]" for i in range(n)) + ";"
    split += ";".join(f"[v{i}]scale=-2:{r.lines}:flags=bicubic[o{i}]" for i, r in enumerate(rungs))
    cmd = [FFMPEG, "-v", "error", "-y", "-i", str(source), "-filter_complex", split]
    for i, r in enumerate(rungs):
        kbps = r.video_bitrate_bps // 1000
        cmd += [
            "-map",
            f"[o{i}]",
            "-map",
            "0:a",
            f"-c:v:{i}",
            "libx264",
            f"-preset:v:{i}",
            config.transcode.preset,
            f"-b:v:{i}",
            f"{kbps}k",
            f"-maxrate:v:{i}",
            f"{kbps * 6 // 5}k",
            f"-bufsize:v:{i}",
            f"{kbps * 2}k",
            f"-profile:v:{i}",
            "high",
        ]
    cmd += [
        "-c:a",
        "aac",
        "-b:a",
        str(config.transcode.audio_bitrate_bps),
        "-ar",
        "48000",
        "-ac",
        "2",
        "-force_key_frames",
        "expr:gte(t,n_forced*2)",
        "-f",
        "hls",
        "-hls_time",
        "2",
        "-hls_segment_type",
        "fmp4",
        "-hls_playlist_type",
        "event",
        "-master_pl_name",
        "master.m3u8",
        "-var_stream_map",
        " ".join(f"v:{i},a:{i}" for i in range(n)),
        str(out / "v%v" / "index.m3u8"),
    ]
    started = time.monotonic()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.monotonic() - started
    if status:
        raise SystemExit("ffmpeg failed")
    return elapsed, usage.ru_maxrss


async def run_streamd(segments: list[Path], data_dir: Path, media_s: float) -> tuple[float, int]:
    """streamd fed 2 s uploads; returns (seconds to publish all, peak RSS kB of its tree)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamd",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        stderr=asyncio.subprocess.DEVNULL,
    )
    peak = 0
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                try:
                    async with http.get(f"{url}/api/videos") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            started = time.monotonic()
            for i, seg in enumerate(segments):
                async with http.post(
                    f"{url}/upload/bench",
                    data=seg.read_bytes(),
                    headers={"X-Segment-Number": str(i)},
                ) as r:
                    assert r.status == 202, await r.text()
            while True:
                peak = max(peak, _rss_kb(_tree(proc.pid)))
                async with http.get(f"{url}/api/videos/bench") as r:
                    v = await r.json()
                if v["durationS"] >= media_s - 0.05:
                    return time.monotonic() - started, peak
                await asyncio.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--height", type=int, default=1080)
    args = parser.parse_args()
    config = Config()
    with tempfile.TemporaryDirectory(prefix="bench-transcode-") as tmp:
        root = Path(tmp)
        print(
            f"source: {args.seconds} s of {args.height}p30 with noise, ladder "
            f"{', '.join(config.transcode.ladder)}, preset {config.transcode.preset}, "
            f"{os.cpu_count()} cores"
        )
        segments = make_source(root, args.seconds, args.height)
        (root / "ffmpeg").mkdir()
        ff_s, ff_rss = run_ffmpeg(root / "source.mp4", root / "ffmpeg", config)
        sd_s, sd_rss = asyncio.run(run_streamd(segments, root / "data", float(args.seconds)))
    print(
        f"ffmpeg CLI : {ff_s:6.2f} s  {args.seconds / ff_s:5.2f}x realtime  "
        f"peak RSS {ff_rss / 1024:6.0f} MB"
    )
    print(
        f"streamd    : {sd_s:6.2f} s  {args.seconds / sd_s:5.2f}x realtime  "
        f"peak RSS {sd_rss / 1024:6.0f} MB"
    )
    print(f"speed ratio = ffmpeg_time / streamd_time = {ff_s / sd_s:.2f}")
    print(f"RSS ratio = streamd / ffmpeg = {sd_rss / ff_rss:.2f}")


if __name__ == "__main__":
    main()
