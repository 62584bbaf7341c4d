"""`create_app`: every route, every shared object and their lifetimes, wired in one place."""

from __future__ import annotations

import logging
import shutil
from collections.abc import AsyncIterator

from aiohttp import web

from streamd import edge, ingest, ops, serve
from streamd.appkeys import CACHE, CLOCK, CONFIG, FEEDS, HLS, JOBS, METRICS, SCHEDULER, STORE
from streamd.cache import SegmentCache
from streamd.clock import Clock, SystemClock
from streamd.config import Config
from streamd.httpd import allow_half_close, request_middleware
from streamd.jobs import JobQueue, LocalJobQueue
from streamd.metrics import Metrics
from streamd.scheduler import Scheduler
from streamd.store import AsyncStore, FileStore

log = logging.getLogger("streamd")


def create_app(
    config: Config, *, clock: Clock | None = None, jobs: JobQueue | None = None
) -> web.Application:
    """The streamd web application for this configuration."""
    allow_half_close()
    metrics = Metrics()
    app = web.Application(
        middlewares=[request_middleware(config.http.cors_origin, metrics)],
        client_max_size=1 << 20,
    )
    app[CONFIG] = config
    app[CLOCK] = clock or SystemClock()
    store = AsyncStore(FileStore(config.data_dir))
    app[STORE] = store
    app[CACHE] = SegmentCache(config.cache.max_bytes)
    app[JOBS] = jobs or LocalJobQueue(
        config.worker_count, logging.getLogger().getEffectiveLevel(), config.log_format
    )
    app[METRICS] = metrics
    app[SCHEDULER] = Scheduler(config, store, app[JOBS], app[CACHE], app[CLOCK], app[METRICS])
    app[HLS] = serve.HlsObjects(app[SCHEDULER], app[CACHE], store, metrics.viewers, config.http)
    app[METRICS].add_gauges(lambda: ops.gauges(app))
    app.add_routes(ingest.routes())
    app.add_routes(serve.routes())
    app.add_routes(ops.routes())
    app.add_routes(edge.primary_routes())
    app[FEEDS] = set()
    app.on_shutdown.append(edge.end_feeds)
    app.cleanup_ctx.append(_services)
    return app


async def _services(app: web.Application) -> AsyncIterator[None]:
    incoming = app[SCHEDULER].incoming_dir()
    shutil.rmtree(incoming, ignore_errors=True)  # bodies of requests cut off by a stop
    await app[JOBS].start()
    await app[SCHEDULER].start()
    log.info(
        "streamd ready: data in %s, %d transcode workers",
        app[CONFIG].data_dir,
        app[CONFIG].worker_count,
    )
    yield
    await app[SCHEDULER].close()
    await app[JOBS].close()
