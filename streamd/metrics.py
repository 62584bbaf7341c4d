"""What the server is doing, for Prometheus (`GET /metrics`) and the status page.

One registry per app (no process-global state), so tests and several apps in one process
each see their own counters. Gauges that are cheaper to read than to keep (queue depth,
cache bytes, viewers) are computed at scrape time by a collector.
"""

from __future__ import annotations

import collections
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from aiohttp import web

VIEWER_WINDOW_S = 60.0
PUBLISH_DELAY_BUCKETS_S = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)


def client_id(request: web.BaseRequest) -> str:
    """Who is watching, as well as an origin server can tell: address and user agent.
    (Requests an edge process passed on arrive over a unix socket, which has no address,
    with the viewer's in X-Forwarded-For; from TCP that header is not trusted.)"""
    remote = request.remote or request.headers.get("X-Forwarded-For", "")
    return f"{remote}|{request.headers.get('User-Agent', '')}"


class Viewers:
    """Distinct clients seen per stream in the last minute (address + user agent)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._seen: dict[str, dict[str, float]] = defaultdict(dict)
        self._clock = clock

    def saw(self, video_id: str, client: str) -> None:
        self._seen[video_id][client] = self._clock()

    def count(self, video_id: str) -> int:
        horizon = self._clock() - VIEWER_WINDOW_S
        clients = self._seen.get(video_id, {})
        for client in [c for c, t in clients.items() if t < horizon]:
            del clients[client]
        return len(clients)

    def streams(self) -> list[str]:
        return list(self._seen)

    def drain(self) -> dict[str, list[str]]:
        """Every client seen since the last drain, by stream, forgotten here (an edge hands
        them to the primary, which counts them)."""
        seen, self._seen = self._seen, defaultdict(dict)
        return {video_id: list(clients) for video_id, clients in seen.items()}


class _Gauges(Collector):
    """Gauges read at scrape time from the objects that know them."""

    def __init__(self, read: Callable[[], Iterator[Metric]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        yield from self._read()


class Metrics:
    """Every counter and histogram streamd keeps."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.uploads = Counter(
            "streamd_uploads", "Uploads received, by result.", ["result"], registry=r
        )
        self.upload_bytes = Counter(
            "streamd_upload_bytes", "Bytes of accepted uploads.", registry=r
        )
        self.segments_published = Counter(
            "streamd_segments_published",
            "Output segments published, per rung.",
            ["rung"],
            registry=r,
        )
        self.files_encoded = Counter(
            "streamd_files_encoded",
            "Files encoded on demand (format: webm), each once.",
            ["format"],
            registry=r,
        )
        self.segments_deleted = Counter(
            "streamd_segments_deleted",
            "Segments deleted by retention (DVR window, disk limits), every rung at once.",
            registry=r,
        )
        self.parts_published = Counter(
            "streamd_parts_published", "LL-HLS parts published (every rung at once).", registry=r
        )
        self.segments_failed = Counter(
            "streamd_segments_failed",
            "Uploads that failed to transcode, per rung.",
            ["rung"],
            registry=r,
        )
        self.transcode_seconds = Counter(
            "streamd_transcode_seconds",
            "Worker time spent per rung (scale + encode + mux).",
            ["rung"],
            registry=r,
        )
        self.ladder_changes = Counter(
            "streamd_ladder_changes",
            "Rungs left out of a live stream's new segments (transcoding fell behind), and back.",
            ["rung", "change"],
            registry=r,
        )
        self.publishes = Counter(
            "streamd_publishes",
            "Live publishers that asked to publish, by protocol and result (accepted, or why not).",
            ["protocol", "result"],
            registry=r,
        )
        self.publisher_disconnects = Counter(
            "streamd_publisher_disconnects",
            "Live publishers that went away, by protocol.",
            ["protocol"],
            registry=r,
        )
        self.publish_delay = Histogram(
            "streamd_publish_delay_seconds",
            "From the end of an upload to its segment being in every rung's playlist.",
            buckets=PUBLISH_DELAY_BUCKETS_S,
            registry=r,
        )
        # A plain counter read at scrape time: a labelled prometheus Counter takes a lock and
        # a label lookup on every request, a cost every playlist poll would pay.
        self.http_requests: collections.Counter[tuple[str, int]] = collections.Counter()
        self.viewers = Viewers()
        # Each edge's resident bytes, by its pid, with when it last said (its reports).
        self.edge_resident: dict[int, tuple[int, float]] = {}
        self.registry.register(_Gauges(self._http))

    def count_request(self, route: str, status: int) -> None:
        self.http_requests[route, status] += 1

    def _http(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "streamd_http_requests",
            "HTTP requests by route and status.",
            labels=["route", "status"],
        )
        for (route, status), n in sorted(self.http_requests.items()):
            family.add_metric([route, str(status)], n)
        yield family

    def add_gauges(self, read: Callable[[], Iterator[Metric]]) -> None:
        self.registry.register(_Gauges(read))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def gauge(
    name: str,
    documentation: str,
    values: dict[tuple[str, ...], float],
    labels: tuple[str, ...] = (),
) -> GaugeMetricFamily:
    """A gauge family from {label values: value}."""
    family = GaugeMetricFamily(name, documentation, labels=list(labels))
    for label_values, value in values.items():
        family.add_metric(list(label_values), value)
    return family


def counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    """A counter kept elsewhere (e.g. the cache's own hit count), read at scrape time."""
    return CounterMetricFamily(name, documentation, value=value)
