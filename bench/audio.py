"""An alternate audio language (issue 14): a commentary made into its rendition, against the
ffmpeg CLI doing the same job.

    .venv/bin/python -m bench.audio [--seconds 120] [--runs 3]

streamd: the worker's job (`media.alternate.run_audio_job`, in this process) decoding a
stereo AAC file, encoding it once as AAC at 128 kbit/s on the stream's frame grid, and
packaging every 2 s segment as audio-only fMP4 (CMAF) and MPEG-TS. Reference: one ffmpeg
command doing the same (one encode, the tee muxer writing an fMP4 HLS and a TS HLS rendition
of 2 s segments). Prints the median of each and the ratio ffmpeg/streamd (above 1: streamd
is faster), then the cost per segment.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from streamd.media.alternate import run_audio_job
from streamd.model.audio import AudioJob, AudioPiece, AudioSource
from streamd.store import open_store

SEGMENT_S = 2.0
BITRATE_BPS = 128_000


def _source(tmp: Path, seconds: int) -> Path:
    path = tmp / "commentary.m4a"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
         f"sine=f=440:r=48000:d={seconds},pan=stereo|c0=c0|c1=c0",
         "-f", "lavfi", "-i", f"anoisesrc=a=0.05:r=48000:d={seconds}",
         "-filter_complex", "[0][1]amix=inputs=2", "-ac", "2", "-c:a", "aac", "-b:a", "192k",
         str(path)],
        check=True,
    )  # fmt: skip
    return path


def streamd_run(tmp: Path, source: Path, seconds: int) -> float:
    store_dir = tmp / "store"
    store = open_store(f"file://{store_dir}")
    store.put("ingest/bench/audio/fr/000000", source.read_bytes())
    count = int(seconds / SEGMENT_S)
    segments = tuple((n, n * SEGMENT_S, SEGMENT_S) for n in range(count))
    piece = AudioPiece(0, AudioSource(("ingest/bench/audio/fr/000000",)), segments)
    job = AudioJob("bench", f"file://{store_dir}", "audio-fr", (piece,), BITRATE_BPS)
    started = time.perf_counter()
    result = run_audio_job(job)
    elapsed = time.perf_counter() - started
    assert len(result.outputs) == count, len(result.outputs)
    return elapsed


def ffmpeg_run(tmp: Path, source: Path) -> float:
    out = tmp / "ffmpeg"
    out.mkdir(exist_ok=True)
    hls = f"f=hls:hls_time={SEGMENT_S:g}:hls_playlist_type=vod"
    tee = (
        f"[{hls}:hls_segment_type=fmp4:hls_segment_filename={out}/f%06d.m4s]{out}/f.m3u8|"
        f"[{hls}:hls_segment_type=mpegts:hls_segment_filename={out}/t%06d.ts]{out}/t.m3u8"
    )
    started = time.perf_counter()
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(source), "-map", "0:a", "-c:a", "aac",
         "-b:a", str(BITRATE_BPS), "-ar", "48000", "-ac", "2", "-f", "tee", tee],
        check=True,
    )  # fmt: skip
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=120)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-audio-") as name:
        tmp = Path(name)
        source = _source(tmp, args.seconds)
        ours, theirs = [], []
        for _ in range(args.runs):
            ours.append(streamd_run(tmp, source, args.seconds))
            theirs.append(ffmpeg_run(tmp, source))
    ours_s, theirs_s = statistics.median(ours), statistics.median(theirs)
    segments = int(args.seconds / SEGMENT_S)
    print(f"{args.seconds} s of stereo AAC into {segments} segments of {SEGMENT_S:g} s, fMP4 + TS")
    print(f"streamd (run_audio_job): {ours_s:.3f} s   ffmpeg CLI (tee): {theirs_s:.3f} s")
    print(f"ratio ffmpeg/streamd = {theirs_s / ours_s:.2f}")
    print(f"per segment: streamd {1000 * ours_s / segments:.1f} ms")


if __name__ == "__main__":
    main()
