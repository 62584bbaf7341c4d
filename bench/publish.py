"""What publishing one segment costs as a stream grows: its last segment against its 10th.

    .venv/bin/python -m bench.publish [--segments 43200] [--rungs 2] [--window 50]

The real publish path as `create_app` wires it (FileStore, SqliteState, SegmentCache, Metrics,
Publisher, Streams and the stream's runner, on streamd's event loop), without the HTTP server
and without transcoding: an in-process job queue stands in for the workers, writing a few
hundred bytes per rung and packaging (in a thread) and reporting each segment as a worker does.
Uploads go to the runner as ingest hands them over, one 2 s segment each (24 hours by default),
each once the one before is published and its job's end recorded. Per segment: CPU time of the
event loop's thread, bytes the process wrote meanwhile (SQLite and its WAL, playlists; the
stand-in worker's files left out), and CPU time of every thread. Prints the 10th and last
segments, the medians and means of a window from each, and the ratios last/10th (target < 1.5
for the first two, the issue's measures).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from streamd.clock import SystemClock
from streamd.config import Config
from streamd.metrics import Metrics
from streamd.model import layout
from streamd.model.formats import PACKAGINGS
from streamd.model.jobs import (
    JobProgress,
    PublishedSegment,
    RungOutput,
    SourceInfo,
    TranscodeJob,
    TranscodeResult,
)
from streamd.model.ladder import Rung
from streamd.model.pipeline import VIDEO_HZ
from streamd.model.stream import PUBLISHED, Stream, Upload
from streamd.process import event_loop
from streamd.store import AsyncStore, FileStore, SegmentCache
from streamd.store.sqlite import SqliteState
from streamd.streams import Publisher, Streams

SEGMENT_S = 2.0
VIDEO_ID = "bench"
# What each segment costs: the two measures, then every thread's CPU (the SQLite
# thread's and the stand-in worker's included) for what the loop's figure does not see.
LOOP, BYTES, ALL = "CPU on loop (us)", "bytes written", "CPU all threads (us)"
LADDER = (  # tallest first, as a worker plans it; --rungs N takes the N shortest
    (Rung("720p", 1280, 720, 2_800_000, 128_000), "avc1.64001f,mp4a.40.2"),
    (Rung("480p", 854, 480, 1_400_000, 128_000), "avc1.64001e,mp4a.40.2"),
    (Rung("360p", 640, 360, 800_000, 128_000), "avc1.64001e,mp4a.40.2"),
    (Rung("240p", 426, 240, 400_000, 128_000), "avc1.640015,mp4a.40.2"),
)


def wchar() -> int | None:
    """Bytes this process has passed to write() so far, or None without /proc."""
    try:
        lines = Path("/proc/self/io").read_text().splitlines()
    except OSError:
        return None
    return next(int(line.split()[1]) for line in lines if line.startswith("wchar:"))


class PlaceholderJobs:
    """A JobQueue without workers: each upload becomes one 2 s segment of placeholder bytes
    in every rung and packaging (plus an fMP4 init per rung, once), reported as a worker does."""

    def __init__(self, root: Path, rungs: int) -> None:
        self.store = FileStore(root, fsync=False)
        self.ladder = LADDER[-rungs:]
        self.inits: set[str] = set()
        self.bytes_written = 0  # the stand-in worker's, left out of what publishing wrote

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def healthy(self) -> bool:
        return True

    async def probe(self, source: Path | bytes, timeout_s: float) -> SourceInfo:
        raise NotImplementedError("uploads skip ingest here")

    def _put(self, key: str, data: bytes) -> None:
        self.store.put(key, data)
        self.bytes_written += len(data)

    def _write(self, sequence: int) -> tuple[RungOutput, ...]:
        outputs = []
        for rung, codecs in self.ladder:
            sizes, inits = {}, {}
            for p in PACKAGINGS.values():
                if p.has_init:
                    init = f"ftyp moov {rung.name} {codecs} ".encode() * 16
                    inits[p.name] = f"init-{hashlib.sha256(init).hexdigest()[:12]}.mp4"
                    key = layout.init_key(VIDEO_ID, p.name, rung.name, inits[p.name])
                    if key not in self.inits:
                        self._put(key, init)
                        self.inits.add(key)
                size = 200 + rung.height + (88 if p.name == "ts" else 0)
                media = bytes([sequence % 251]) * size
                self._put(layout.segment_key(VIDEO_ID, p.name, rung.name, sequence), media)
                sizes[p.name] = len(media)
            outputs.append(RungOutput(rung.name, sizes, codecs, inits))
        return tuple(outputs)

    async def transcode(
        self, job: TranscodeJob, on_progress: Callable[[JobProgress], None]
    ) -> TranscodeResult:
        started, state = time.monotonic(), job.state
        ladder = tuple(r for r, _ in self.ladder)
        for item in job.inputs:
            sequence = state.next_segment
            outputs = await asyncio.to_thread(self._write, sequence)
            seg = PublishedSegment(
                sequence, round(state.time_s, 6), SEGMENT_S, item.upload, outputs, ladder, 30.0
            )
            on_progress(JobProgress(item.upload, 100.0, seg))
            state = replace(
                state,
                next_segment=sequence + 1,
                video_pts_90k=state.video_pts_90k + round(SEGMENT_S * VIDEO_HZ),
                rungs=ladder,
                frame_rate=30.0,
            )
        seconds = len(job.inputs) * SEGMENT_S
        elapsed = max(time.monotonic() - started, 1e-6)
        return TranscodeResult(
            state, seconds, elapsed, len(job.inputs), {r.name: 0.0 for r in ladder}
        )


class DoneState(SqliteState):
    """The SQLite state store, setting an upload's event once its job's end is committed
    (the runner's last step for it: its uploads recorded with the pipeline state)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.done: dict[int, asyncio.Event] = {}

    async def record(self, stream: Stream, **change: Any) -> None:
        await super().record(stream, **change)
        for u in change.get("uploads", ()) if change.get("pipeline") else ():
            if (event := self.done.pop(u.number, None)) is not None:
                event.set()


async def fill(root: Path, segments: int, rungs: int) -> dict[str, list[float | None]]:
    """Publish `segments` uploads one after another; the cost of each, by measure."""
    config = Config(data_dir=root)
    clock, metrics = SystemClock(), Metrics()
    store = AsyncStore(FileStore(config.data_dir))
    state = DoneState(config.data_dir / layout.STATE_FILE)
    cache = SegmentCache(config.cache.max_bytes)
    jobs = PlaceholderJobs(config.data_dir, rungs)
    target_s = config.transcode.segment_duration_s
    publisher = Publisher(state, store, cache, clock, metrics, target_s)
    streams = Streams(config, state, store, publisher, jobs, clock, metrics)
    await state.open()
    await jobs.start()
    await streams.start()
    costs: dict[str, list[float | None]] = {LOOP: [], BYTES: [], ALL: []}
    started, step = time.monotonic(), max(1, segments // 20)
    for n in range(segments):
        sha = hashlib.sha256(n.to_bytes(8, "big")).hexdigest()
        key = layout.upload_key(VIDEO_ID, n, "ts")
        upload = Upload(n, sha, 100_000, (key,), clock.wall_s(), source={"durationS": SEGMENT_S})
        done = state.done[n] = asyncio.Event()
        w0, worker0 = wchar(), jobs.bytes_written
        t0, p0 = time.thread_time(), time.process_time()
        runner = streams.for_upload(VIDEO_ID)
        async with runner.lock:
            await runner.add_upload(upload)
        await done.wait()
        t1, p1, w1 = time.thread_time(), time.process_time(), wchar()
        costs[LOOP].append((t1 - t0) * 1e6)
        costs[ALL].append((p1 - p0) * 1e6)
        worker = jobs.bytes_written - worker0
        costs[BYTES].append(None if w0 is None or w1 is None else w1 - w0 - worker)
        if upload.state != PUBLISHED or len(runner.stream.segments) != n + 1:
            raise SystemExit(f"upload {n} not published: {upload}")
        if (n + 1) % step == 0 or n + 1 == segments:
            print(f"  {n + 1:6d} segments  {time.monotonic() - started:7.1f} s")
    await streams.close()
    await jobs.close()
    await state.close()
    return costs


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=43_200)
    parser.add_argument("--rungs", type=int, default=2, choices=range(1, len(LADDER) + 1))
    parser.add_argument("--window", type=int, default=50)
    args = parser.parse_args()
    if args.window < 1 or args.segments < 9 + args.window:
        parser.error("need --window >= 1 and --segments >= 9 + --window")
    names = ", ".join(r.name for r, _ in LADDER[-args.rungs :])
    print(
        f"{args.segments} segments of {SEGMENT_S:g} s ({args.segments * SEGMENT_S / 3600:.1f} h), "
        f"rungs {names}, packagings {', '.join(PACKAGINGS)}"
    )
    if wchar() is None:
        print("no /proc/self/io here: CPU only, no bytes written")
    with tempfile.TemporaryDirectory(prefix="bench-publish-") as tmp:
        root = Path(tmp)
        started = time.monotonic()
        costs = asyncio.Runner(loop_factory=event_loop).run(fill(root, args.segments, args.rungs))
        wall = time.monotonic() - started
        db_size = (root / layout.STATE_FILE).stat().st_size  # checkpointed when closed
        playlist = layout.media_playlist_key(VIDEO_ID, "fmp4", LADDER[-1][0].name)
        playlist_size = (root / playlist).stat().st_size
    w, first = args.window, 9  # the 10th segment
    series = {k: [x or 0.0 for x in v] for k, v in costs.items() if None not in v}
    early, late = slice(first, first + w), slice(-w, None)
    median, mean = statistics.median, statistics.fmean
    rows: list[tuple[str, Callable[[list[float]], float]]] = [
        ("10th segment", lambda v: v[first]),
        ("last segment", lambda v: v[-1]),
        (f"10th..{first + w}th median", lambda v: median(v[early])),
        (f"10th..{first + w}th mean", lambda v: mean(v[early])),
        (f"last {w} median", lambda v: median(v[late])),
        (f"last {w} mean", lambda v: mean(v[late])),
    ]
    print(f"{'':24}" + "".join(f"{name:>22}" for name in series))
    for label, pick in rows:
        print(f"{label:24}" + "".join(f"{pick(v):22,.0f}" for v in series.values()))
    for name, v in series.items():
        for stat, f in (("median", median), ("mean", mean)):
            ratio = f(v[late]) / f(v[early])
            verdict = "yes" if ratio < 1.5 else "NO"
            print(f"ratio last/10th, {name}, window {stat}: {ratio:.2f}  (under 1.5: {verdict})")
    print(f"wall time: {wall:.1f} s ({args.segments / wall:.0f} segments/s)")
    print(f"SQLite file: {db_size:,} bytes; media playlist {playlist}: {playlist_size:,} bytes")


if __name__ == "__main__":
    main()
