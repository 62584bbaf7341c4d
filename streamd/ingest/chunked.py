"""Live over HTTP: `PUT` or `POST /ingest/{videoId}.ts`, one long request whose body is a
continuous MPEG-TS (`ffmpeg -re ... -f mpegts -method PUT URL`), fed to the stream's live
session as it arrives.

A refused request is answered at once and its connection closed: ffmpeg ignores the status
of a request it is still streaming, and would otherwise send its whole event into nothing.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from streamd.appkeys import CONFIG, METRICS, STREAMS
from streamd.errors import StreamdError, error_response
from streamd.ingest.http import authorize
from streamd.streams.live import LiveFeed

log = logging.getLogger("streamd.ingest.chunked")
READ_BYTES = 1 << 16


async def ingest(request: web.Request) -> web.StreamResponse:
    """PUT/POST /ingest/{videoId}.ts: a live session for as long as the body lasts."""
    streams = request.app[STREAMS]
    peer = request.remote or "?"
    try:
        video_id = authorize(request)
    except StreamdError as exc:
        request.app[METRICS].publishes.labels("http", exc.code).inc()
        return await _refuse(request, exc)
    try:
        feed = await streams.open_live(video_id, "http", "mpegts", peer)
    except StreamdError as exc:  # counted there
        return await _refuse(request, exc)
    feed.on_takeover = lambda: _drop(request)
    try:
        await _pump(request, feed)
    except (ConnectionError, OSError) as exc:  # the publisher went, or was taken over
        log.info("http %s: %s", peer, exc)
    finally:
        streams.close_live(feed)
    return web.json_response({"videoId": video_id, "bytes": feed.bytes})


async def _refuse(request: web.Request, exc: StreamdError) -> web.StreamResponse:
    """Answer at once and close the connection, not after reading the body aiohttp would
    otherwise linger on: ffmpeg then fails instead of streaming into nothing."""
    response = error_response(request, exc)
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    _drop(request, gently=True)
    return response


async def _pump(request: web.Request, feed: LiveFeed) -> None:
    idle_s = request.app[CONFIG].ingest.idle_timeout_s
    while True:
        try:
            async with asyncio.timeout(idle_s):
                chunk = await request.content.readany()
        except TimeoutError:
            log.warning("http %s: nothing for %g s; closing", request.remote, idle_s)
            return
        if not chunk:
            return
        await feed.write(chunk)


def _drop(request: web.Request, gently: bool = False) -> None:
    """Close the publisher's connection (refused, or a new publisher took the stream)."""
    if request.transport is not None:
        if gently:  # after what was written
            request.transport.close()
        else:
            request.transport.abort()


def routes() -> list[web.RouteDef]:
    return [
        web.put("/ingest/{video_id}.ts", ingest),
        web.post("/ingest/{video_id}.ts", ingest),
    ]
