"""Typed keys for what `create_app` puts on the application (shared by `ingest` and `web`).

The types are for the type checker only: importing this module must stay cheap, since an edge
process serves /hls/ without loading PyAV or numpy.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from streamd.access import Publishers
    from streamd.clock import Clock
    from streamd.config import Config
    from streamd.ingest.http import UploadSlots
    from streamd.ingest.rtmp.server import RtmpServer
    from streamd.ingest.srt.ingest import SrtIngest
    from streamd.jobs import JobQueue
    from streamd.metrics import Metrics
    from streamd.store import AsyncStore, SegmentCache
    from streamd.store.state import StateStore
    from streamd.streams import Publisher, Streams
    from streamd.web.flights import Flights
    from streamd.web.hls import HlsObjects

CONFIG: web.AppKey[Config] = web.AppKey("config")
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
STORE: web.AppKey[AsyncStore] = web.AppKey("store")
STATE: web.AppKey[StateStore] = web.AppKey("state")
CACHE: web.AppKey[SegmentCache] = web.AppKey("cache")
JOBS: web.AppKey[JobQueue] = web.AppKey("jobs")
STREAMS: web.AppKey[Streams] = web.AppKey("streams")
PUBLISHER: web.AppKey[Publisher] = web.AppKey("publisher")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
HLS: web.AppKey[HlsObjects] = web.AppKey("hls")
PUBLISHERS: web.AppKey[Publishers] = web.AppKey("publishers")
UPLOAD_SLOTS: web.AppKey[UploadSlots] = web.AppKey("upload_slots")
RTMP: web.AppKey[RtmpServer] = web.AppKey("rtmp")  # only while `ingest.rtmp_port` is set
SRT: web.AppKey[SrtIngest] = web.AppKey("srt")  # only while `ingest.srt_port` is set
FLIGHTS: web.AppKey[Flights] = web.AppKey("flights")  # WebM encodes asked for at once
FEEDS: web.AppKey[set[asyncio.Queue[bytes]]] = web.AppKey("feeds")  # edges following playlists
