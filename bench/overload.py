"""Overload: three live 1080p30 streams on a box that cannot transcode them all in real time.

    .venv/bin/python -m bench.overload [--seconds 60] [--streams 3] [--recording] [--height 1080]

Each stream is `streamd push --realtime` of the same 1080p30 recording (2 s segments, paced
as a live event) into `streamd serve` on its defaults (ladder 1080p/720p/480p/360p, one
worker per core). Run twice in the same session: first with `transcode.overload_delay_s = 0`
(no degrading: the reference, where delay grows for as long as the event lasts), then with
the default, where each stream leaves its tallest rungs out while it is behind. Prints the
publish delay per segment (upload arrival to playlists) and the rungs dropped and restored.
With `--recording`, a fourth stream pushes a recording as fast as it can during the second
run: it runs on the niced workers and must not push the live streams behind.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.latency import p95, percentiles, publish_delays
from bench.media import FFMPEG, h264_aac, lavfi_source
from bench.server import Server

TARGET_S = 8.0


def _push(server: Server, source: Path, video_id: str, realtime: bool) -> list[str]:
    return [
        sys.executable,
        "-m",
        "streamd",
        "push",
        str(source),
        "--server",
        server.url,
        "--video",
        video_id,
        "--key",
        server.key,
        *(["--realtime"] if realtime else []),
    ]


async def _ladder_changes(server: Server) -> dict[str, int]:
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/metrics") as r:
        text = await r.text()
    changes: dict[str, int] = {}
    for m in re.finditer(
        r'streamd_ladder_changes_total\{change="(\w+)",rung="(\w+)"\} (\S+)', text
    ):
        changes[f"{m[2]} {m[1]}"] = int(float(m[3]))
    return changes


async def _run(
    root: Path, source: Path, streams: int, seconds: int, delay_s: float | None, recording: bool
) -> tuple[dict[str, list[float]], dict[str, int], float]:
    env = {} if delay_s is None else {"STREAMD_TRANSCODE_OVERLOAD_DELAY_S": str(delay_s)}
    async with Server(root / f"data-{delay_s}", env) as server:
        ids = [f"live{i}" for i in range(streams)]
        procs = [
            await asyncio.create_subprocess_exec(
                *_push(server, source, vid, realtime=True), stdout=asyncio.subprocess.DEVNULL
            )
            for vid in ids
        ]
        if recording:
            procs.append(
                await asyncio.create_subprocess_exec(
                    *_push(server, source, "recording", realtime=False),
                    stdout=asyncio.subprocess.DEVNULL,
                )
            )
        await asyncio.gather(*(p.wait() for p in procs))
        started = time.monotonic()
        # The reference may be far behind when its senders stop: give it as long again,
        # then report what it had published.
        for vid in ids:
            try:
                await server.wait_ended(
                    vid, timeout_s=max(5.0, seconds - (time.monotonic() - started))
                )
            except RuntimeError:
                pass
        drain_s = time.monotonic() - started
        delays = {vid: publish_delays(server.data_dir, vid) for vid in ids}
        return delays, await _ladder_changes(server), drain_s


async def main_async(seconds: int, streams: int, recording: bool, height: int = 1080) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-overload-") as tmp:
        root = Path(tmp)
        source = root / "event.mp4"
        make = await asyncio.create_subprocess_exec(
            FFMPEG,
            "-v",
            "error",
            *lavfi_source(height * 16 // 9 // 2 * 2, height, seconds, noise=8),
            *h264_aac("veryfast", "-b:v", "6M"),
            str(source),
        )
        await make.wait()
        print(
            f"{streams} live {height}p30 streams, {seconds} s each, 2 s segments, streamd defaults"
            f"{' + a recording pushed at full speed' if recording else ''}"
        )
        results = {}
        for label, delay_s, rec in (
            ("no degrading (reference)", 0.0, False),
            ("degrading", None, recording),
        ):
            delays, changes, drain_s = await _run(root, source, streams, seconds, delay_s, rec)
            every = [d for ds in delays.values() for d in ds]
            published = sum(len(ds) for ds in delays.values())
            setting = "default" if delay_s is None else f"{delay_s:g}"
            print(f"\n{label}: transcode.overload_delay_s = {setting}")
            for vid, ds in delays.items():
                print(f"  {vid}: publish delay {percentiles(ds)}")
            print(f"  segments published: {published}; {drain_s:.0f} s to finish after the senders")
            print(f"  ladder changes: {changes or 'none'}")
            results[label] = every
    worst_ref = max(results["no degrading (reference)"], default=0.0)
    worst = max(results["degrading"], default=0.0)
    ratio = worst / worst_ref if worst_ref else 0.0
    print(
        f"\nworst publish delay: {worst:.1f} s degrading against {worst_ref:.1f} s without"
        f" (ratio {ratio:.2f}); p95 {p95(results['degrading']):.1f} s;"
        f" target < {TARGET_S:g} s {'met' if worst < TARGET_S else 'NOT met'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--streams", type=int, default=3)
    parser.add_argument("--recording", action="store_true")
    parser.add_argument("--height", type=int, default=1080, help="of the source (smoke: 360)")
    args = parser.parse_args()
    asyncio.run(main_async(args.seconds, args.streams, args.recording, args.height))


if __name__ == "__main__":
    main()
