"""For operators: /metrics (Prometheus), /healthz (up), /readyz (able to take work)."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import Metric

from streamd.appkeys import CACHE, CONFIG, JOBS, METRICS, RTMP, SRT, STREAMS
from streamd.metrics import counter, gauge
from streamd.process import FORKSERVER_NAME, children_named, resident_bytes

EDGE_GONE_S = 5.0  # an edge reports every second


def gauges(app: web.Application) -> Iterator[Metric]:
    """What /metrics reads at scrape time."""
    streams, cache, metrics = app[STREAMS], app[CACHE], app[METRICS]
    uploads: Counter[str] = Counter()
    states: Counter[str] = Counter()
    for stream in streams.records.values():
        states[stream.state] += 1
        uploads.update(stream.counts)
    yield gauge(
        "streamd_queue_depth",
        "Uploads waiting or being transcoded, by state.",
        {(s,): uploads[s] for s in ("held", "queued", "transcoding")},
        ("state",),
    )
    yield gauge(
        "streamd_streams",
        "Streams by state.",
        {(s,): states[s] for s in ("waiting", "live", "ended")},
        ("state",),
    )
    yield gauge(
        "streamd_realtime_factor",
        "Media seconds transcoded per second, last upload of each live stream.",
        {
            (s.video_id,): s.realtime_factor
            for s in streams.records.values()
            if s.realtime_factor is not None and not s.ended
        },
        ("stream",),
    )
    yield gauge(
        "streamd_stream_bytes",
        "Bytes of the segments each stream's playlists name (what retention limits).",
        {(s.video_id,): s.kept_bytes for s in streams.records.values()},
        ("stream",),
    )
    feeds = [(vid, r.live.current()) for vid, r in streams.runners.items()]
    live = [(vid, f) for vid, f in feeds if f is not None]
    yield gauge(
        "streamd_ingest_bytes",
        "Bytes received from each connected live publisher in its session.",
        {(vid, f.protocol): f.bytes for vid, f in live},
        ("stream", "protocol"),
    )
    yield gauge(
        "streamd_ingest_frames",
        "Video frames received from each connected live publisher in its session.",
        {(vid, f.protocol): f.frames for vid, f in live},
        ("stream", "protocol"),
    )
    dropped: Counter[str] = Counter(
        r.name for s in streams.records.values() if not s.ended for r in s.rungs[: s.dropped_rungs]
    )
    yield gauge(
        "streamd_rungs_dropped",
        "Live streams leaving a rung out of new segments, because transcoding fell behind.",
        {(rung,): n for rung, n in dropped.items()},
        ("rung",),
    )
    yield gauge(
        "streamd_viewers",
        "Distinct clients that fetched from a stream in the last minute.",
        {(vid,): metrics.viewers.count(vid) for vid in metrics.viewers.streams()},
        ("stream",),
    )
    yield gauge("streamd_cache_bytes", "Bytes of segments held in RAM.", {(): cache.size_bytes})
    yield gauge("streamd_cache_objects", "Segments held in RAM.", {(): len(cache)})
    yield counter("streamd_cache_hits", "Segment reads served from RAM.", cache.hits)
    yield counter("streamd_cache_misses", "Segment reads that went to disk.", cache.misses)
    resident, count = process_memory(app)
    yield gauge(
        "streamd_process_resident_bytes",
        "Resident memory of streamd's processes, by kind: the primary, its HTTP edges, the "
        "processes that run jobs and the forkserver they are forked from.",
        {(kind,): n for kind, n in resident.items()},
        ("kind",),
    )
    yield gauge(
        "streamd_processes",
        "streamd's processes, by kind.",
        {(kind,): n for kind, n in count.items()},
        ("kind",),
    )
    yield gauge(
        "streamd_workers_healthy",
        "1 when every transcode worker is alive.",
        {(): 1.0 if app[JOBS].healthy() else 0.0},
    )


def process_memory(app: web.Application) -> tuple[dict[str, float], dict[str, float]]:
    """Resident bytes and counts by kind of process. Edges say theirs in their reports (one
    silent for longer than `EDGE_GONE_S` has gone); the others are read from /proc. The
    forkserver shares most of its pages with the workers forked from it: each counts
    them, as `ps` does."""
    metrics = app[METRICS]
    now = time.monotonic()
    for pid, (_, said) in list(metrics.edge_resident.items()):
        if now - said > EDGE_GONE_S:
            del metrics.edge_resident[pid]
    by_kind = {"primary": [resident_bytes()]}
    by_kind["edge"] = [n for n, _ in metrics.edge_resident.values()]
    for kind, pids in app[JOBS].process_ids().items():
        by_kind[kind] = [resident_bytes(pid) for pid in pids]
    by_kind["forkserver"] = [resident_bytes(pid) for pid in children_named(FORKSERVER_NAME)]
    return (
        {kind: float(sum(sizes)) for kind, sizes in by_kind.items()},
        {kind: float(len(sizes)) for kind, sizes in by_kind.items()},
    )


async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(request: web.Request) -> web.Response:
    """The process is up and its event loop answers."""
    return web.json_response({"status": "ok"})


def _writable(directory: Path) -> bool:
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".readyz-") as f:
            f.write(b"ok")
            f.flush()
            os.fsync(f.fileno())
        return True
    except OSError:
        return False


async def readyz(request: web.Request) -> web.Response:
    """Ready to take uploads: workers alive, data dir writable, free space above the mark."""
    config = request.app[CONFIG]
    writable = await asyncio.to_thread(_writable, config.data_dir)
    try:
        free = (await asyncio.to_thread(shutil.disk_usage, config.data_dir)).free
    except OSError:
        free = 0
    checks = {
        "workers": request.app[JOBS].healthy(),
        "dataDirWritable": writable,
        "freeSpace": free >= config.min_free_bytes,
    }
    ready = all(checks.values())
    body: dict[str, object] = {"ready": ready, "checks": checks, "freeBytes": free}
    body["ingest"] = ingest_state(request.app)
    return web.json_response(body, status=200 if ready else 503)


def ingest_state(app: web.Application) -> dict[str, str]:
    """Each live protocol's listener: on (with its port), off, or why it could not start."""
    config = app[CONFIG].ingest
    rtmp, srt = app.get(RTMP), app.get(SRT)
    return {
        "rtmp": f"port {config.rtmp_port}" if rtmp is not None else "off",
        "srt": "off"
        if srt is None
        else (f"unavailable: {srt.unavailable}" if srt.unavailable else f"port {srt.port}"),
        "http": "PUT /ingest/{videoId}.ts",
    }


def routes() -> list[web.RouteDef]:
    return [web.get("/metrics", metrics), web.get("/healthz", healthz), web.get("/readyz", readyz)]
