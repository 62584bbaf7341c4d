"""`create_app`: every route, every shared object and their lifetimes, wired in one place."""

from __future__ import annotations

import logging
import shutil
from collections.abc import AsyncIterator

from aiohttp import web, web_protocol

from streamd import ingest, ops, serve
from streamd.appkeys import CACHE, CLOCK, CONFIG, JOBS, METRICS, SCHEDULER, STORE
from streamd.cache import SegmentCache
from streamd.clock import Clock, SystemClock
from streamd.config import Config
from streamd.errors import Handler, error_response
from streamd.jobs import JobQueue, LocalJobQueue
from streamd.metrics import Metrics
from streamd.scheduler import Scheduler
from streamd.store import AsyncStore, FileStore

log = logging.getLogger("streamd")
CORS_PREFIXES = ("/hls/", "/viewstream/", "/api/", "/vendor/")


CORS_HEADERS = {
    "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
    "Access-Control-Allow-Headers": "Range, Content-Type",
    "Access-Control-Expose-Headers": "Content-Length, Content-Range, Accept-Ranges",
    "Access-Control-Max-Age": "86400",
}


def edge_middleware(cors_origin: str, metrics: Metrics) -> web.middleware:  # type: ignore[valid-type]
    """What every request goes through, in one layer (aiohttp builds the middleware chain per
    request, so each extra layer costs every playlist poll): failures become JSON errors,
    players on other origins get CORS headers, and the request is counted by route."""
    cors = {"Access-Control-Allow-Origin": cors_origin, **CORS_HEADERS}

    @web.middleware
    async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
        cross_origin = request.path.startswith(CORS_PREFIXES)
        response: web.StreamResponse
        if cross_origin and request.method == "OPTIONS":
            response = web.Response(status=204, headers=cors)
        else:
            try:
                response = await handler(request)
            except Exception as exc:
                try:
                    response = error_response(request, exc)
                except web.HTTPException as redirect:
                    metrics.count_request(_route(request), redirect.status)
                    raise
            if cross_origin:
                response.headers.update(cors)
        metrics.count_request(_route(request), response.status)
        return response

    return edge


def _route(request: web.Request) -> str:
    """The route pattern (not the path, to keep the label set small)."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def _eof_received(self: web_protocol.RequestHandler) -> bool | None:
    """Answer clients that half-close after their body, as `ffmpeg -method PUT` does.

    aiohttp closes the whole connection on a client's FIN (aio-libs/aiohttp#3659), so ffmpeg's
    segment uploads would never get an answer. While a request is pending, keep the write
    side open (a body cut short ends by the upload's idle timeout); an idle client leaving
    still closes at once.
    """
    idle = self._waiter is not None and not self._waiter.done() and not self._messages
    return None if idle else True


def allow_half_close() -> None:
    """Install `_eof_received` on aiohttp's request handler (idempotent)."""
    web_protocol.RequestHandler.eof_received = _eof_received  # type: ignore[method-assign,assignment]


def create_app(
    config: Config, *, clock: Clock | None = None, jobs: JobQueue | None = None
) -> web.Application:
    """The streamd web application for this configuration."""
    allow_half_close()
    metrics = Metrics()
    app = web.Application(
        middlewares=[edge_middleware(config.http.cors_origin, metrics)],
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
    app[METRICS].add_gauges(lambda: ops.gauges(app))
    app.add_routes(ingest.routes())
    app.add_routes(serve.routes())
    app.add_routes(ops.routes())
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
