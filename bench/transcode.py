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
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.media import FFMPEG, h264_aac, hls_ladder, lavfi_source, split_scale
from bench.server import Server, memory_by_kind
from streamd.config import Config
from streamd.model.ladder import parse_ladder


def make_source(out: Path, seconds: int, height: int) -> list[Path]:
    """A noisy 30 fps source with AAC, and the same cut into 2 s MPEG-TS segments."""
    out.mkdir(exist_ok=True)
    width = height * 16 // 9
    src = out / "source.mp4"
    encode = [*h264_aac("veryfast", "-crf", "18"), "-b:a", "192k"]
    subprocess.run(
        [
            FFMPEG,
            "-v",
            "error",
            "-y",
            *lavfi_source(width, height, seconds, noise=20),
            *encode,
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


def run_ffmpeg(source: Path, out: Path, config: Config) -> tuple[float, int, float]:
    """The ffmpeg CLI doing streamd's ladder; returns (seconds, peak RSS kB, CPU seconds)."""
    rungs = parse_ladder(config.transcode.ladder)
    cmd = [FFMPEG, "-v", "error", "-y", "-i", str(source), *split_scale(rungs)]
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
    ]
    cmd += hls_ladder(out, len(rungs))
    started = time.monotonic()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.monotonic() - started
    if status:
        raise SystemExit("ffmpeg failed")
    return elapsed, usage.ru_maxrss, usage.ru_utime + usage.ru_stime


@dataclass
class Memory:
    """The server tree's peaks: the sum of RSS (as the CLI's one process is measured), the
    sum of PSS (shared pages counted once), and each kind of process's RSS."""

    rss_kb: int = 0
    pss_kb: int = 0
    by_kind_mb: dict[str, float] = field(default_factory=dict)

    def sample(self, root: int) -> None:
        kinds = memory_by_kind(root)
        self.rss_kb = max(self.rss_kb, round(1024 * sum(r for r, _ in kinds.values())))
        self.pss_kb = max(self.pss_kb, round(1024 * sum(p for _, p in kinds.values())))
        for kind, (rss, _) in kinds.items():
            self.by_kind_mb[kind] = max(self.by_kind_mb.get(kind, 0.0), rss)


async def run_streamd(
    segments: list[Path], data_dir: Path, media_s: float
) -> tuple[float, Memory, float]:
    """streamd fed 2 s uploads; returns (seconds to publish all, its tree's peak memory, CPU
    seconds of its tree meanwhile)."""
    memory = Memory()
    # Overload handling off: it would leave rungs out of a backlog that is behind real time,
    # where the CLI encodes every one (and the PSNR would compare missing segments).
    env = {"STREAMD_TRANSCODE_OVERLOAD_DELAY_S": "0"}
    async with Server(data_dir, env) as server, aiohttp.ClientSession() as http:
        assert server.proc is not None
        cpu_before = server.cpu_s()
        started = time.monotonic()
        await server.upload_segments("bench", segments)
        while (await server.video("bench")).get("durationS", 0) < media_s - 0.05:
            memory.sample(server.proc.pid)
            await asyncio.sleep(0.1)
        elapsed = time.monotonic() - started
        cpu = server.cpu_s() - cpu_before
        # End it, so players (ffmpeg for PSNR) read the playlists as complete, not live.
        async with http.post(f"{server.url}/upload/bench/end", headers=server.auth) as r:
            assert r.status == 202
        await server.wait_ended("bench")
        playlists = list((data_dir / "hls" / "bench" / "ts").glob("*/index.m3u8"))
        while not all(p.read_text().rstrip().endswith("#EXT-X-ENDLIST") for p in playlists):
            await asyncio.sleep(0.05)  # the files follow the API by a moment
        return elapsed, memory, cpu


def psnr(encoded: Path, source: Path, width: int, height: int) -> float:
    """Average PSNR (dB) of an encoded rung against the source scaled to its size."""
    graph = (
        f"[0:v]setpts=PTS-STARTPTS[out];[1:v]scale={width}:{height}:flags=bicubic,"
        f"setpts=PTS-STARTPTS[ref];[out][ref]psnr"
    )
    out = subprocess.run(
        [
            FFMPEG,
            "-hide_banner",
            "-i",
            str(encoded),
            "-i",
            str(source),
            "-lavfi",
            graph,
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    m = re.search(r"average:([\d.]+|inf)", out)
    assert m, out[-500:]
    return float(m.group(1))


def rung_sizes(data_dir: Path) -> dict[str, tuple[int, int]]:
    master = (data_dir / "hls" / "bench" / "ts" / "master.m3u8").read_text()
    sizes = {}
    for res, uri in re.findall(r"#EXT-X-STREAM-INF:.*RESOLUTION=(\d+x\d+).*\n(\S+)", master):
        w, h = res.split("x")
        sizes[uri.split("/")[0]] = (int(w), int(h))
    return sizes


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--no-capacity", action="store_true", help="skip the 720p live run")
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
        ff_s, ff_rss, ff_cpu = run_ffmpeg(root / "source.mp4", root / "ffmpeg", config)
        sd_s, memory, sd_cpu = asyncio.run(
            run_streamd(segments, root / "data", float(args.seconds))
        )
        sd_rss = memory.rss_kb
        print(
            f"ffmpeg CLI : {ff_s:6.2f} s  {args.seconds / ff_s:5.2f}x realtime  "
            f"peak RSS {ff_rss / 1024:6.0f} MB  CPU {ff_cpu:6.1f} s"
        )
        print(
            f"streamd    : {sd_s:6.2f} s  {args.seconds / sd_s:5.2f}x realtime  "
            f"peak RSS {sd_rss / 1024:6.0f} MB  CPU {sd_cpu:6.1f} s"
        )
        print(f"speed ratio = ffmpeg_time / streamd_time = {ff_s / sd_s:.2f}  (target >= 1.0)")
        print(f"RSS ratio = streamd / ffmpeg = {sd_rss / ff_rss:.2f}  (target <= 1.5)")
        print(
            f"streamd peak PSS (shared pages once) {memory.pss_kb / 1024:.0f} MB = "
            f"{memory.pss_kb / ff_rss:.2f}x; peak RSS by process kind: "
            + ", ".join(f"{k} {mb:.0f} MB" for k, mb in sorted(memory.by_kind_mb.items()))
        )
        ladder = [r.name for r in parse_ladder(config.transcode.ladder)]
        for rung, (w, h) in sorted(
            rung_sizes(root / "data").items(), key=lambda kv: ladder.index(kv[0])
        ):
            ours = psnr(
                root / "data" / "hls" / "bench" / "ts" / rung / "index.m3u8",
                root / "source.mp4",
                w,
                h,
            )
            theirs = psnr(
                root / "ffmpeg" / f"v{ladder.index(rung)}" / "index.m3u8", root / "source.mp4", w, h
            )
            print(
                f"PSNR {rung:>5}: streamd {ours:5.2f} dB, ffmpeg {theirs:5.2f} dB, "
                f"difference {ours - theirs:+.2f} dB  (target >= -0.50)"
            )
        if not args.no_capacity:
            live = make_source(root / "live", args.seconds, 720)
            live_s, _, _ = asyncio.run(run_streamd(live, root / "data720", float(args.seconds)))
            factor = args.seconds / live_s
            print(
                f"live 720p30 (720/480/360): {factor:.2f}x realtime on this machine -> "
                f"about {int(factor)} simultaneous live stream(s) at real time"
            )


if __name__ == "__main__":
    main()
