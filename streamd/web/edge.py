"""Edge processes: several processes answering HTTP on one port (SO_REUSEPORT).

One Python process tops out near 18k playlist responses a second, aiohttp's own cost being
most of it, so a box with more cores answers more viewers with more processes. With
`http.processes` = N > 1, N edges share the port and the primary process (ingest, streams,
workers) listens only on a unix socket. An edge keeps a copy of every stream's playlists,
followed over that socket, serves playlists and segments (from its own RAM cache, filled
from the data dir), and passes every other request to the primary. It never loads PyAV, so
it costs ~40 MB. Scale-out later runs the same edges on other machines over a shared store.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import threading
from multiprocessing.process import BaseProcess
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from streamd.config import Config
from streamd.errors import NotFound, Unavailable, error_response
from streamd.logs import setup_logging
from streamd.manifests.hls import PlaylistChange, PlaylistText
from streamd.manifests.hls.lowlatency import LiveState
from streamd.metrics import Metrics
from streamd.model import layout
from streamd.model.protection import Protection, published_key
from streamd.process import die_with_parent, event_loop, resident_bytes, set_process_name
from streamd.store import AsyncStore, FileStore, SegmentCache
from streamd.web import connection, feed
from streamd.web.hls import HlsObjects
from streamd.web.middleware import cors_headers

log = logging.getLogger("streamd.web.edge")
REPORT_EVERY_S = 1.0
RECONNECT_S = 0.2
HLS_ROUTE = "/hls/{video_id}/{path}"  # counted under the primary's route name
# Headers about one connection, not the request (RFC 9110 7.6.1).
HOP_BY_HOP = frozenset(
    (
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    )
)


# -- in an edge ----------------------------------------------------------------------------
class MirroredStream:
    """An edge's copy of one stream's playlists."""

    def __init__(self, video_id: str) -> None:
        self.video_id = video_id
        self.ended = False
        self.files: dict[str, PlaylistText] = {}
        self.protection: Protection | None = None
        self.key_count = 0
        self.live = LiveState()

    def get(self, key: str, delta: bool = False) -> bytes | None:
        text = self.files.get(key)
        return self.live.serve(key, text.body(), delta) if text is not None else None

    def key(self, index: int) -> bytes | None:
        return published_key(self.video_id, self.protection, self.key_count, index)

    def apply(self, change: PlaylistChange) -> None:
        self.ended = change.ended
        if change.protection is not None:
            self.protection, self.key_count = change.protection, change.key_count
        for key, data in change.appended.items():
            self.files.setdefault(key, PlaylistText()).append(data)
        for key, body in change.replaced.items():
            self.files[key] = PlaylistText(body)
        self.live.apply(change.live, change.parts)
        if change.ended:
            self.live.end()


class Mirror:
    """Every stream's playlists, as the primary's feed says they are."""

    def __init__(self) -> None:
        self.streams: dict[str, MirroredStream] = {}
        self.ready = asyncio.Event()  # holds every stream the primary had when we connected

    def get(self, video_id: str) -> MirroredStream:
        stream = self.streams.get(video_id)  # ids in it are valid: check only the others
        if stream is None:
            layout.check_video_id(video_id)
            raise NotFound(f"no stream {video_id!r} with published segments")
        return stream

    async def follow(self, primary: aiohttp.ClientSession) -> None:
        """Read the primary's feed for good, reconnecting (to a fresh snapshot) when it
        restarts or cuts this edge off."""
        while True:
            try:
                async with primary.get(_url(feed.FEED_PATH)) as response:
                    response.raise_for_status()
                    # Built aside until the snapshot is whole, then served (and kept up).
                    fresh: dict[str, MirroredStream] = {}
                    async for change in feed.decode(response.content):
                        if change is None:
                            self.streams = fresh
                            self.ready.set()
                            continue
                        vid = change.video_id
                        if change.removed:
                            fresh.pop(vid, None)
                        else:
                            fresh.setdefault(vid, MirroredStream(vid)).apply(change)
            except (aiohttp.ClientError, ValueError, asyncio.IncompleteReadError) as exc:
                log.debug("playlist feed: %r; reconnecting", exc)
            await asyncio.sleep(RECONNECT_S)


def _url(path: str) -> str:
    return f"http://primary{path}"  # the host is ignored: the connector is a unix socket


class Edge:
    """An edge's request handler: /hls/ here, everything else passed to the primary.

    It runs on aiohttp's low-level server rather than an Application: with no router and no
    middleware chain a playlist costs ~25% less CPU (28 against 37 us per request for the
    same bytes, measured with wrk), and /hls/ is the only route an edge answers itself.
    """

    def __init__(self, config: Config, primary_socket: str) -> None:
        self.config, self.primary_socket = config, primary_socket
        self.metrics = Metrics()
        self.cache = SegmentCache(config.cache.max_bytes)
        self.mirror = Mirror()
        store = AsyncStore(FileStore(config.data_dir))
        self.objects = HlsObjects(self.mirror, self.cache, store, self.metrics.viewers, config)
        self.cors = cors_headers(config.http.cors_origin)
        self.primary: aiohttp.ClientSession | None = None

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        if path.startswith("/hls/") and request.method in ("GET", "HEAD"):
            video_id, _, name = path[5:].partition("/")
            try:
                response = await self.objects.respond(request, video_id, name)
            except Exception as exc:
                response = error_response(request, exc)
            response.headers.update(self.cors)
            self.metrics.count_request(HLS_ROUTE, response.status)
            return response
        try:
            return await self.proxy(request)
        except Exception as exc:
            return error_response(request, exc)

    async def proxy(self, request: web.BaseRequest) -> web.StreamResponse:
        """Pass a request to the primary, bodies streamed both ways (an ffmpeg segment upload
        goes through as it arrives)."""
        if request.path.startswith("/internal/"):
            raise NotFound("no such route")
        assert self.primary is not None
        headers = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP
        )
        headers["X-Forwarded-For"] = request.remote or ""
        response = web.StreamResponse()
        try:
            async with self.primary.request(
                request.method,
                _url(str(request.rel_url)),
                headers=headers,
                data=request.content if request.body_exists else None,
                allow_redirects=False,
            ) as upstream:
                response.set_status(upstream.status, upstream.reason)
                for k, v in upstream.headers.items():
                    if k.lower() not in HOP_BY_HOP:
                        response.headers.add(k, v)
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response
        except aiohttp.ClientError as exc:
            if response.prepared:  # too late for an error response: cut the connection
                if request.transport is not None:
                    request.transport.close()
                return response
            raise Unavailable("the primary process did not answer", repr(exc)) from exc

    async def report(self) -> None:
        """Send the primary this edge's request counts, viewers and cache hits, once a second."""
        metrics, cache = self.metrics, self.cache
        assert self.primary is not None
        sent_hits = sent_misses = 0
        while True:
            await asyncio.sleep(REPORT_EVERY_S)
            counts, metrics.http_requests = metrics.http_requests, type(metrics.http_requests)()
            viewers = metrics.viewers.drain()  # the primary keeps them (and forgets them)
            report: dict[str, Any] = {
                "requests": [[r, s, n] for (r, s), n in counts.items()],
                "viewers": viewers,
                "cacheHits": cache.hits - sent_hits,
                "cacheMisses": cache.misses - sent_misses,
                "pid": os.getpid(),
                "residentBytes": resident_bytes(),
            }
            try:
                async with self.primary.post(_url(feed.REPORT_PATH), json=report) as response:
                    response.raise_for_status()
            except aiohttp.ClientError as exc:
                log.debug("report not taken: %r", exc)
                metrics.http_requests.update(counts)
                for video_id, clients in viewers.items():
                    for client in clients:
                        metrics.viewers.saw(video_id, client)
                continue
            sent_hits += report["cacheHits"]
            sent_misses += report["cacheMisses"]

    async def serve(self, stop: asyncio.Event) -> None:
        """Answer on the primary's port until `stop` is set."""
        connection.install()
        async with aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=self.primary_socket),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        ) as self.primary:
            tasks: list[asyncio.Task[Any]] = [
                asyncio.create_task(self.mirror.follow(self.primary)),
                asyncio.create_task(self.report()),
            ]
            try:
                # Take the port only with every playlist in hand: a fresh edge (or one started
                # again) must not answer 404 for a stream the others serve.
                ready = asyncio.create_task(self.mirror.ready.wait())
                stopped = asyncio.create_task(stop.wait())
                tasks += [ready, stopped]
                await asyncio.wait([ready, stopped], return_when=asyncio.FIRST_COMPLETED)
                if not stop.is_set():
                    await self._listen(stop)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _listen(self, stop: asyncio.Event) -> None:
        server = web.Server(
            self.handle, access_log=None, **connection.handler_args(self.config.http)
        )
        runner = web.ServerRunner(server)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.config.host, self.config.port, reuse_port=True).start()
            await stop.wait()
        finally:
            await runner.cleanup()


def run_edge(config: Config, primary_socket: str) -> None:
    """An edge process's main: serve on the port until SIGTERM or the primary goes."""
    die_with_parent(signal.SIGTERM)  # a clean stop of its own when the primary goes
    set_process_name("streamd-edge")
    setup_logging(config.log_level, config.log_format)
    loop = event_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        loop.run_until_complete(Edge(config, primary_socket).serve(stop))
    finally:
        loop.close()


class Edges:
    """The edge processes (spawned: fresh interpreters without PyAV), each started again if
    it dies, so the port never goes dark while the primary runs."""

    def __init__(self, config: Config, primary_socket: str, count: int) -> None:
        self._ctx = multiprocessing.get_context("spawn")
        self._args = (config, primary_socket)
        self._stopping = threading.Event()
        self.processes = [self._start(i) for i in range(count)]
        self._watcher = threading.Thread(target=self._watch, name="edges", daemon=True)
        self._watcher.start()

    def _start(self, i: int) -> BaseProcess:
        process = self._ctx.Process(target=run_edge, args=self._args, name=f"edge-{i}", daemon=True)
        process.start()
        return process

    def _watch(self) -> None:
        while not self._stopping.wait(1.0):
            for i, process in enumerate(self.processes):
                if not process.is_alive() and not self._stopping.is_set():
                    log.warning("edge %d exited (code %s); starting it again", i, process.exitcode)
                    self.processes[i] = self._start(i)

    def stop(self) -> None:
        self._stopping.set()
        self._watcher.join()
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.join(5)
