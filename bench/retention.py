"""Retention: what a sliding DVR window costs a publish, against an EVENT playlist.

    .venv/bin/python -m bench.retention [--segments 7200] [--window-min 120]

The playlists alone (`StreamPlaylists`, in this process, no disk): N 2 s segments of a
two-rung ladder (fMP4 and TS) published into EVENT playlists (the reference) and into
sliding ones, where the segments older than the window leave in batches as
`streams.retention` removes them. Prints the publish time (p50 of the last 1,000) of each,
their ratio, and what each trim (the body written again) costs.
"""

from __future__ import annotations

import argparse
import statistics
import time

from streamd.manifests.hls import StreamPlaylists
from streamd.model.jobs import RungOutput
from streamd.model.ladder import Rung
from streamd.model.stream import Segment, Stream
from streamd.streams.retention import BATCH

RUNGS = (Rung("240p", 320, 240, 300_000, 128_000), Rung("144p", 192, 144, 150_000, 128_000))


def _segment(sequence: int) -> Segment:
    outputs = tuple(
        RungOutput(r.name, {"fmp4": 90_000, "ts": 100_000}, "avc1.64000d", {"fmp4": "init.mp4"})
        for r in RUNGS
    )
    return Segment(sequence, 2.0 * sequence, 2.0, sequence, 1.7e9 + 2.0 * sequence, outputs)


def run(segments: int, window: int | None) -> tuple[float, list[float]]:
    """(publish p50 over the last 1,000 in us, each trim in ms)."""
    stream = Stream("bench", 1.7e9, rungs=RUNGS, frame_rate=30.0, start_wall_s=1.7e9)
    playlists = StreamPlaylists("bench", 2.0, sliding=window is not None)
    publishes, trims = [], []
    for sequence in range(segments):
        seg = _segment(sequence)
        started = time.perf_counter()
        stream.add_segment(seg)
        playlists.add(stream, seg)
        publishes.append(time.perf_counter() - started)
        if window is not None and len(stream.segments) >= window * (1 + BATCH):
            started = time.perf_counter()
            stream.retire(stream.next_sequence - window, 0.0)
            playlists.trim(stream)
            trims.append(1000 * (time.perf_counter() - started))
    return 1e6 * statistics.median(publishes[-1000:]), trims


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=7200)
    parser.add_argument("--window-min", type=float, default=120.0)
    args = parser.parse_args()
    window = round(args.window_min * 60 / 2.0)
    event, _ = run(args.segments, None)
    sliding, trims = run(args.segments, window)
    print(f"{args.segments} segments of 2 s, 2 rungs x (fMP4, TS), window {window} segments")
    print(f"EVENT (reference): publish p50 {event:.0f} us")
    print(f"sliding:           publish p50 {sliding:.0f} us")
    print(f"ratio sliding/EVENT = {sliding / event:.2f}")
    if trims:
        print(
            f"trims: {len(trims)}, each {statistics.median(trims):.2f} ms (median), "
            f"{sum(trims) / args.segments * 1000:.0f} us a segment on average"
        )


if __name__ == "__main__":
    main()
