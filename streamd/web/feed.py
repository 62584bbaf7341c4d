"""The playlist feed from the primary to its edge processes, and the edges' reports back.

An edge connects to `/internal/playlists` on the primary's unix socket and gets every
stream's playlists whole, a ready line, then each `PlaylistChange` as it happens: the lines
a publish appended, not whole playlists, so following a long stream costs the same per
segment as a short one. Each message is a JSON header line naming byte counts, then those
bytes (a day's playlist is megabytes: too long for a line). An edge that falls too far
behind is cut off; it reconnects and starts again from a fresh snapshot. A protected
stream's messages carry its key secret, so edges serve its keys: the feed is a unix socket
between streamd's own processes, and the secret is never written anywhere else.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import StreamReader, web

from streamd.appkeys import CACHE, FEEDS, METRICS, PUBLISHER
from streamd.errors import NotFound
from streamd.manifests.hls import PlaylistChange
from streamd.manifests.hls.lowlatency import LiveView, Position
from streamd.model.protection import Protection

log = logging.getLogger("streamd.web.feed")
FEED_PATH = "/internal/playlists"
REPORT_PATH = "/internal/report"
READY = {"ready": True}  # after the snapshot
MAX_BEHIND = 10_000  # messages queued for one edge before it is cut off


def encode(change: PlaylistChange) -> bytes:
    """A change as one feed message."""
    header: dict[str, Any] = {
        "video": change.video_id,
        "ended": change.ended,
        "appended": {k: len(v) for k, v in change.appended.items()},
        "replaced": {k: len(v) for k, v in change.replaced.items()},
        "removed": change.removed,
    }
    if change.protection is not None:
        p = change.protection
        header["keys"] = {
            "method": p.method,
            "secret": base64.b64encode(p.secret).decode(),
            "rotationSegments": p.rotation_segments,
            "count": change.key_count,
        }
    header["live"] = {
        k: {
            "tail": len(v.tail),
            "resume": len(v.resume),
            "headerLen": v.header_len,
            "skipped": v.skipped,
            "position": dataclasses.astuple(v.position),
        }
        for k, v in change.live.items()
    }
    header["parts"] = {k: [msn, len(data)] for k, (msn, data) in change.parts.items()}
    live = [b for v in change.live.values() for b in (v.tail, v.resume)]
    return b"".join(
        [
            json.dumps(header).encode(),
            b"\n",
            *change.appended.values(),
            *change.replaced.values(),
            *live,
            *(data for _, data in change.parts.values()),
        ]
    )


async def decode(content: StreamReader) -> AsyncIterator[PlaylistChange | None]:
    """Feed messages as changes; None for the ready line."""
    while line := await content.readline():
        header = json.loads(line)
        if header.get("ready"):
            yield None
            continue
        change = PlaylistChange(
            header["video"], bool(header["ended"]), removed=bool(header.get("removed"))
        )
        if keys := header.get("keys"):
            secret = base64.b64decode(keys["secret"])
            change.protection = Protection(secret, keys["rotationSegments"], keys["method"])
            change.key_count = keys["count"]
        for key, size in header["appended"].items():
            change.appended[key] = await content.readexactly(size)
        for key, size in header["replaced"].items():
            change.replaced[key] = await content.readexactly(size)
        for key, v in header.get("live", {}).items():
            last_msn, part_msn, part, counts, ended, target_s, part_target_s = v["position"]
            position = Position(
                last_msn,
                part_msn,
                part,
                tuple((m, n) for m, n in counts),
                ended,
                target_s,
                part_target_s,
            )
            tail = await content.readexactly(v["tail"])
            resume = await content.readexactly(v["resume"])
            change.live[key] = LiveView(tail, v["headerLen"], v["skipped"], resume, position)
        for key, (msn, size) in header.get("parts", {}).items():
            change.parts[key] = (msn, await content.readexactly(size))
        yield change


def _internal(request: web.Request) -> None:
    """/internal/* answers only on the primary's unix socket, never from TCP."""
    if request.transport is None or not isinstance(
        request.transport.get_extra_info("sockname"), str
    ):
        raise NotFound("no such route")


async def playlist_feed(request: web.Request) -> web.StreamResponse:
    """Every stream's playlists, then every change to them."""
    _internal(request)
    publisher = request.app[PUBLISHER]
    queue: asyncio.Queue[bytes] = asyncio.Queue()  # b"" ends the feed (see end_feeds)

    def on_change(change: PlaylistChange) -> None:
        if queue.qsize() >= MAX_BEHIND:
            log.warning("an edge fell %d playlist changes behind; cutting it off", MAX_BEHIND)
            publisher.listeners.discard(on_change)
            queue.put_nowait(b"")
        else:
            queue.put_nowait(encode(change))

    # The snapshot and the subscription in one step: no change falls between them.
    snapshot = [encode(p.snapshot()) for p in list(publisher.playlists.values())]
    publisher.listeners.add(on_change)
    request.app[FEEDS].add(queue)
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    try:
        await response.prepare(request)
        for message in snapshot:
            await response.write(message)
        await response.write(json.dumps(READY).encode() + b"\n")
        while message := await queue.get():
            await response.write(message)
        return response
    finally:
        publisher.listeners.discard(on_change)
        request.app[FEEDS].discard(queue)


async def end_feeds(app: web.Application) -> None:
    """On shutdown: end every feed, or the server would wait for them (they never finish)."""
    for feed in app[FEEDS]:
        feed.put_nowait(b"")


async def edge_report(request: web.Request) -> web.Response:
    """An edge's counts since its last report, added to the primary's /metrics."""
    _internal(request)
    report = await request.json()
    metrics, cache = request.app[METRICS], request.app[CACHE]
    for route, status, n in report["requests"]:
        metrics.http_requests[route, int(status)] += int(n)
    for video_id, clients in report["viewers"].items():
        for client in clients:
            metrics.viewers.saw(video_id, client)
    cache.hits += int(report["cacheHits"])
    cache.misses += int(report["cacheMisses"])
    metrics.edge_resident[int(report["pid"])] = (int(report["residentBytes"]), time.monotonic())
    return web.Response(status=204)


def routes() -> list[web.RouteDef]:
    return [web.get(FEED_PATH, playlist_feed), web.post(REPORT_PATH, edge_report)]
