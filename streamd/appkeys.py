"""Typed keys for what `create_app` puts on the application."""

from __future__ import annotations

from aiohttp import web

from streamd.cache import SegmentCache
from streamd.clock import Clock
from streamd.config import Config
from streamd.jobs import JobQueue
from streamd.metrics import Metrics
from streamd.scheduler import Scheduler
from streamd.store import AsyncStore

CONFIG = web.AppKey("config", Config)
CLOCK = web.AppKey("clock", Clock)
STORE = web.AppKey("store", AsyncStore)
CACHE = web.AppKey("cache", SegmentCache)
JOBS = web.AppKey("jobs", JobQueue)
SCHEDULER = web.AppKey("scheduler", Scheduler)
METRICS = web.AppKey("metrics", Metrics)
