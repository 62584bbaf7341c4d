"""Typed keys for what `create_app` puts on the application.

The types are for the type checker only: importing this module must stay cheap, since an edge
process (streamd.edge) serves /hls/ with streamd.serve but without loading PyAV or numpy.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

from aiohttp import web

if TYPE_CHECKING:
    from streamd.cache import SegmentCache
    from streamd.clock import Clock
    from streamd.config import Config
    from streamd.jobs import JobQueue
    from streamd.metrics import Metrics
    from streamd.scheduler import Scheduler
    from streamd.serve import HlsObjects
    from streamd.store import AsyncStore


class Playlists(Protocol):
    """What serving a stream's playlists needs: a Stream, or an edge's copy of its playlists."""

    @property
    def video_id(self) -> str: ...
    @property
    def ended(self) -> bool: ...
    @property
    def playlists(self) -> dict[str, bytes]: ...


class PlaylistIndex(Protocol):
    def get(self, video_id: str) -> Playlists:
        """The stream's playlists; raises NotFound (or InvalidVideoId)."""
        ...


CONFIG: web.AppKey[Config] = web.AppKey("config")
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
STORE: web.AppKey[AsyncStore] = web.AppKey("store")
CACHE: web.AppKey[SegmentCache] = web.AppKey("cache")
JOBS: web.AppKey[JobQueue] = web.AppKey("jobs")
SCHEDULER: web.AppKey[Scheduler] = web.AppKey("scheduler")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
HLS: web.AppKey[HlsObjects] = web.AppKey("hls")
FEEDS: web.AppKey[set[asyncio.Queue[str]]] = web.AppKey("feeds")  # edges following playlists
