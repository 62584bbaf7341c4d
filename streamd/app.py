"""`create_app`: every route, every shared object and their lifetimes, wired in one place.

The path of an upload, forward only: `ingest` receives and checks it (the prober runs in a
worker via `jobs`), `streams` runs it through a worker (`media`, `package`) and `publisher`
records and announces each segment (`store`, `manifests`), and `web` serves it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from aiohttp import web

from streamd import ingest
from streamd import web as serving
from streamd.access import Publishers
from streamd.appkeys import (
    CACHE,
    CLOCK,
    CONFIG,
    FEEDS,
    FLIGHTS,
    HLS,
    JOBS,
    METRICS,
    PUBLISHER,
    PUBLISHERS,
    RTMP,
    SRT,
    STATE,
    STORE,
    STREAMS,
    UPLOAD_SLOTS,
)
from streamd.clock import Clock, SystemClock
from streamd.config import Config
from streamd.ingest import recording
from streamd.ingest.http import UploadSlots
from streamd.ingest.rtmp.server import RtmpServer
from streamd.ingest.srt.ingest import SrtIngest
from streamd.jobs import JobQueue
from streamd.jobs.local import LocalJobQueue
from streamd.metrics import Metrics
from streamd.model import layout
from streamd.model.stream import Segment, Stream
from streamd.store import AsyncStore, FileStore, SegmentCache
from streamd.store.sqlite import SqliteState
from streamd.streams import Publisher, Streams
from streamd.streams.retention import Retention
from streamd.web import connection, feed, ops
from streamd.web.flights import Flights
from streamd.web.hls import HlsObjects
from streamd.web.middleware import request_middleware
from streamd.web.viewstream import EagerWebm

log = logging.getLogger("streamd")
CleanupContext = Callable[[web.Application], AsyncIterator[None]]


def create_app(
    config: Config, *, clock: Clock | None = None, jobs: JobQueue | None = None
) -> web.Application:
    """The streamd web application for this configuration."""
    connection.install()
    metrics = Metrics()
    app = web.Application(
        middlewares=[request_middleware(config.http.cors_origin, metrics)],
        client_max_size=1 << 20,
        handler_args=connection.handler_args(config.http),
    )
    app[CONFIG] = config
    app[CLOCK] = clock or SystemClock()
    app[METRICS] = metrics
    app[STORE] = store = AsyncStore(FileStore(config.data_dir))
    app[STATE] = SqliteState(config.data_dir / layout.STATE_FILE)
    app[PUBLISHERS] = Publishers(config, app[STATE], app[CLOCK])  # may refuse the config
    app[CACHE] = SegmentCache(config.cache.max_bytes)
    app[JOBS] = jobs or LocalJobQueue(
        config.worker_count,
        logging.getLogger().getEffectiveLevel(),
        config.log_format,
        config.transcode.worker_memory_bytes,
    )
    app[PUBLISHER] = Publisher(
        app[STATE],
        store,
        app[CACHE],
        app[CLOCK],
        metrics,
        config.transcode.segment_duration_s,
        dash_webm=config.transcode.webm != "off",
        sliding=config.retention.sliding,
    )
    app[STREAMS] = Streams(
        config, app[STATE], store, app[PUBLISHER], app[JOBS], app[CLOCK], metrics
    )
    app[HLS] = HlsObjects(app[PUBLISHER], app[CACHE], store, metrics.viewers, config, app[CLOCK])
    app[FEEDS] = set()
    app[FLIGHTS] = Flights()
    metrics.add_gauges(lambda: ops.gauges(app))
    app[UPLOAD_SLOTS] = UploadSlots(config.upload.max_concurrent)
    if config.ingest.rtmp_port:
        app[RTMP] = RtmpServer(config, app[STREAMS], app[PUBLISHERS], metrics)
    if config.ingest.srt_port:
        app[SRT] = SrtIngest(config, app[STREAMS], app[PUBLISHERS], metrics)
    app.add_routes(ingest.routes())
    app.add_routes(serving.routes())
    app.on_shutdown.append(feed.end_feeds)
    app.cleanup_ctx.extend(
        [_state, _workers, _streams, _retention, _listener(RTMP), _listener(SRT), _eager_webm]
    )
    return app


async def _state(app: web.Application) -> AsyncIterator[None]:
    await app[STATE].open()
    await app[PUBLISHERS].load()
    yield
    await app[STATE].close()


async def _workers(app: web.Application) -> AsyncIterator[None]:
    await app[JOBS].start()
    yield
    await app[JOBS].close()


async def _streams(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    shutil.rmtree(config.data_dir / ".incoming", ignore_errors=True)  # cut-off bodies
    stale = await asyncio.to_thread(
        recording.forget_stale,
        recording.resumable_dir(app),
        config.upload.resumable_keep_s,
        app[CLOCK].wall_s(),
    )
    if stale:
        log.info("removed %d unfinished resumable uploads: %s", len(stale), ", ".join(stale))
    await app[STREAMS].start()
    log.info(
        "streamd ready: data in %s, %d transcode workers",
        app[CONFIG].data_dir,
        app[CONFIG].worker_count,
    )
    yield
    await app[STREAMS].close()


class _Follower(Protocol):
    """Background work fed by every published segment."""

    def published(self, stream: Stream, segment: Segment) -> None: ...

    async def run(self) -> None: ...


@contextlib.asynccontextmanager
async def _following(app: web.Application, follower: _Follower, name: str) -> AsyncIterator[None]:
    """`follower` hears of every published segment and runs as a task, while the block does."""
    app[PUBLISHER].segment_listeners.add(follower.published)
    task = asyncio.create_task(follower.run(), name=name)
    try:
        yield
    finally:
        app[PUBLISHER].segment_listeners.discard(follower.published)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _retention(app: web.Application) -> AsyncIterator[None]:
    """`[retention]`: DVR windows and disk budgets, applied after each publish."""
    config = app[CONFIG]
    retention = Retention(config.retention, app[STREAMS], config.transcode.segment_duration_s)
    async with _following(app, retention, "retention"):
        yield


async def _eager_webm(app: web.Application) -> AsyncIterator[None]:
    """`[transcode] webm = "eager"`: WebM files made as segments are published."""
    if app[CONFIG].transcode.webm != "eager":
        yield
        return
    async with _following(app, EagerWebm(app), "eager-webm"):
        yield


def _listener(key: web.AppKey[RtmpServer] | web.AppKey[SrtIngest]) -> CleanupContext:
    """A live ingest listener's lifetime, where one is configured: started after the
    streams it publishes into, closed before them. (SRT without libsrt says why, once, and
    the server runs on.)"""

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        listener = app.get(key)
        if listener is not None:
            await listener.start()
        yield
        if listener is not None:
            await listener.close()

    return lifetime
