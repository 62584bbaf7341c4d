"""How fast a recording uploaded whole (`?mode=vod`) is transcoded, against the ffmpeg CLI
doing the same ladder over the same file, and with one worker against all of them.

    .venv/bin/python -m bench.vod [--seconds 60] [--height 720]

Source: N seconds of 30 fps video with camera-like noise and AAC. Reference: one ffmpeg
process decoding once and encoding the default ladder (bench.transcode's command). streamd:
`streamd serve` in its own process, the file pushed with `streamd push --vod`'s client
(resumable upload), timed from the end of the upload until the stream has ended; once with
`transcode.workers` = 1, once with the default (one per core). Prints each one's time and
the ratios; the speed-up of several workers is what splitting at keyframes buys.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from bench.server import Server
from bench.transcode import make_source, run_ffmpeg
from streamd.client.push import StreamdClient
from streamd.client.recording import push_recording
from streamd.config import Config
from streamd.model.ladder import RungSpec


async def run_streamd(source: Path, data_dir: Path, workers: int) -> tuple[float, int]:
    """(seconds from the upload's end to the recording's, its pieces)."""
    env = {"STREAMD_TRANSCODE_WORKERS": str(workers)} if workers else {}
    async with Server(data_dir, env) as server:
        async with StreamdClient(server.url, headers=server.auth, timeout_s=600) as client:
            report = await push_recording(source, "vod", client, progress=False)
        return report.transcode_s, report.pieces


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--height", type=int, default=720)
    args = parser.parse_args()
    config = Config()
    # The rungs streamd makes of this source (taller ones are dropped), for ffmpeg too.
    ladder = [r for r in config.transcode.ladder if RungSpec.parse(r).lines <= args.height]
    if not ladder:
        raise SystemExit(f"no rung of the default ladder fits {args.height}p: use --height 360+")
    config = replace(config, transcode=replace(config.transcode, ladder=ladder))
    with tempfile.TemporaryDirectory(prefix="bench-vod-") as tmp:
        root = Path(tmp)
        print(
            f"source: {args.seconds} s of {args.height}p30 with noise, ladder "
            f"{', '.join(config.transcode.ladder)}, preset {config.transcode.preset}, "
            f"{os.cpu_count()} cores"
        )
        make_source(root, args.seconds, args.height)
        source = root / "source.mp4"
        (root / "ffmpeg").mkdir()
        ff_s, _, _ = run_ffmpeg(source, root / "ffmpeg", config)
        one_s, one_pieces = asyncio.run(run_streamd(source, root / "one", 1))
        all_s, all_pieces = asyncio.run(run_streamd(source, root / "all", 0))
        print(f"ffmpeg CLI          : {ff_s:6.2f} s  {args.seconds / ff_s:5.2f}x realtime")
        print(
            f"streamd, 1 worker   : {one_s:6.2f} s  {args.seconds / one_s:5.2f}x realtime  "
            f"({one_pieces} pieces)"
        )
        print(
            f"streamd, {config.worker_count} workers  : {all_s:6.2f} s  "
            f"{args.seconds / all_s:5.2f}x realtime  ({all_pieces} pieces)"
        )
        print(f"speed ratio = ffmpeg_time / streamd_time = {ff_s / all_s:.2f}")
        print(f"workers speed-up = 1 worker / {config.worker_count} = {one_s / all_s:.2f}")


if __name__ == "__main__":
    main()
