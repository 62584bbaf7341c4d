"""What the server knows about each stream: its uploads, its published segments, its state.

A `Stream` is owned by the event loop; it is persisted as one JSON manifest after every
change, so a restarted server knows exactly what was published and what was still to do.
"""

from __future__ import annotations

import asyncio
import bisect
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from streamd import layout
from streamd.ladder import Rung
from streamd.pipeline import PipelineState
from streamd.transcode import PublishedSegment, RungOutput

HELD, QUEUED, TRANSCODING, PUBLISHED, FAILED = (
    "held",
    "queued",
    "transcoding",
    "published",
    "failed",
)
UPLOAD_STATES = (HELD, QUEUED, TRANSCODING, PUBLISHED, FAILED)


def iso(wall_s: float) -> str:
    return (
        datetime.fromtimestamp(wall_s, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


@dataclass
class Upload:
    """One received upload (a source segment), by its number."""

    number: int
    sha256: str
    size_bytes: int
    keys: tuple[str, ...]
    received_wall_s: float
    state: str = QUEUED
    error: str | None = None
    source: dict[str, Any] | None = None
    percent: float = 0.0

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["keys"] = list(self.keys)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Upload:
        return cls(**{**d, "keys": tuple(d["keys"])})


@dataclass(frozen=True)
class Segment:
    """A published output segment, in every rung and both packagings."""

    sequence: int
    start_s: float
    duration_s: float
    upload: int
    published_wall_s: float
    rungs: tuple[RungOutput, ...]

    @classmethod
    def published(cls, seg: PublishedSegment, wall_s: float) -> Segment:
        return cls(seg.sequence, seg.start_s, seg.duration_s, seg.upload, wall_s, seg.rungs)

    def rung(self, name: str) -> RungOutput:
        return next(r for r in self.rungs if r.name == name)

    def to_json(self) -> list[Any]:
        return [
            self.sequence,
            self.start_s,
            self.duration_s,
            self.upload,
            self.published_wall_s,
            [list(asdict(r).values()) for r in self.rungs],
        ]

    @classmethod
    def from_json(cls, d: list[Any]) -> Segment:
        return cls(d[0], d[1], d[2], d[3], d[4], tuple(RungOutput(*r) for r in d[5]))


@dataclass
class Stream:
    """A stream's record; `wake` tells its runner there is new work."""

    video_id: str
    created_wall_s: float
    next_upload: int | None = None  # the upload number to transcode next
    uploads: dict[int, Upload] = field(default_factory=dict)
    segments: list[Segment] = field(default_factory=list)
    pipeline: PipelineState = field(default_factory=PipelineState)
    ending: bool = False
    ended: bool = False
    end_after: int | None = None  # end once this upload arrives (ffmpeg's last playlist)
    start_wall_s: float | None = None  # wall-clock time of the stream's second 0
    ingest_init: str | None = None  # fMP4 init segment ffmpeg pushed, for its .m4s uploads
    rungs: tuple[Rung, ...] = ()  # the published ladder
    frame_rate: float = 0.0
    realtime_factor: float | None = None  # of the last upload's transcode (not persisted)
    publish_delay_s: float | None = None  # of the last segment (not persisted)
    solo_until: int = -1  # uploads up to this number go one per job (after a failed run)
    updated_wall_s: float = 0.0
    wake: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    init_arrived: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    playlists: dict[str, bytes] = field(default_factory=dict, repr=False)  # encoded once

    @property
    def state(self) -> str:
        if self.ended:
            return "ended"
        return "live" if self.segments else "waiting"

    @property
    def duration_s(self) -> float:
        last = self.segments[-1] if self.segments else None
        return round(last.start_s + last.duration_s, 3) if last else 0.0

    def next_number(self) -> int:
        """The number of an upload that came without one: the one after the highest seen."""
        return max(self.uploads) + 1 if self.uploads else 0

    def refresh_states(self) -> None:
        """Uploads waiting in an unbroken run from `next_upload` are queued; the rest held."""
        n = self.next_upload
        if n is None:
            return
        while n in self.uploads and self.uploads[n].state in (HELD, QUEUED, TRANSCODING):
            if self.uploads[n].state == HELD:
                self.uploads[n].state = QUEUED
            n += 1
        for number, up in self.uploads.items():
            if number > n and up.state == QUEUED:
                up.state = HELD

    def next_jobs(self, limit: int) -> list[Upload]:
        """The queued uploads from `next_upload` on, in an unbroken run of at most `limit`."""
        run: list[Upload] = []
        n = self.next_upload
        while n is not None and len(run) < limit:
            up = self.uploads.get(n)
            if up is None or up.state not in (QUEUED, TRANSCODING):
                break
            run.append(up)
            n += 1
        return run

    def skip_gap(self) -> bool:
        """Jump over missing uploads to the first held one (on end, or after a timeout)."""
        held = sorted(n for n, u in self.uploads.items() if u.state == HELD)
        if not held:
            return False
        self.next_upload = held[0]
        self.refresh_states()
        return True

    def segment_at(self, time_s: float) -> Segment | None:
        starts = [s.start_s for s in self.segments]
        i = bisect.bisect_right(starts, time_s) - 1
        if i < 0:
            return None
        seg = self.segments[i]
        return seg if time_s < seg.start_s + seg.duration_s else None

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(UPLOAD_STATES, 0)
        for up in self.uploads.values():
            counts[up.state] += 1
        return counts

    def bandwidth(self, rung: str, packaging: str) -> tuple[int, int]:
        """(peak, average) bit rate of a rung's published segments, audio included."""
        sizes = [
            (s.duration_s, s.rung(rung).ts_bytes if packaging == "ts" else s.rung(rung).fmp4_bytes)
            for s in self.segments
        ]
        sizes = [(d, b) for d, b in sizes if d > 0]
        if not sizes:
            return 0, 0
        total_s = sum(d for d, _ in sizes)
        average = math.ceil(sum(b for _, b in sizes) * 8 / total_s)
        # Very short segments (a stream's tail) make a meaningless peak; RFC 8216 4.3.4.2.
        long_enough = [(d, b) for d, b in sizes if d >= 0.5] or sizes
        peak = max(math.ceil(b * 8 / d) for d, b in long_enough)
        return max(peak, average), average

    def summary(self) -> dict[str, Any]:
        """The JSON the API and the status page show."""
        vid = self.video_id
        last = self.segments[-1] if self.segments else None
        rungs = []
        for r in self.rungs:
            peak, avg = self.bandwidth(r.name, "fmp4")
            rungs.append(
                {
                    "name": r.name,
                    "width": r.width,
                    "height": r.height,
                    "bandwidthBps": peak,
                    "averageBandwidthBps": avg,
                    "codecs": last.rung(r.name).codecs if last else None,
                }
            )
        return {
            "videoId": vid,
            "state": self.state,
            "createdAt": iso(self.created_wall_s),
            "updatedAt": iso(self.updated_wall_s or self.created_wall_s),
            "durationS": self.duration_s,
            "segments": len(self.segments),
            "frameRate": self.frame_rate or None,
            "realtimeFactor": self.realtime_factor,
            "publishDelayS": self.publish_delay_s,
            "uploads": self.counts(),
            "rungs": rungs,
            "links": {
                "master": f"/viewstream/metadata/{vid}",
                "masterTs": f"/viewstream/metadata/{vid}?format=ts",
                "player": f"/player.html?v={vid}",
                "thumbnail": layout.url_for(layout.thumbnail_key(vid)) if last else None,
            },
        }

    def detail(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "uploadList": [
                {
                    "number": u.number,
                    "state": u.state,
                    "percent": round(u.percent, 1),
                    "sizeBytes": u.size_bytes,
                    "receivedAt": iso(u.received_wall_s),
                    "error": u.error,
                    "source": u.source,
                }
                for u in sorted(self.uploads.values(), key=lambda u: u.number)
            ],
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "videoId": self.video_id,
            "createdWallS": self.created_wall_s,
            "updatedWallS": self.updated_wall_s,
            "nextUpload": self.next_upload,
            "ending": self.ending,
            "ended": self.ended,
            "endAfter": self.end_after,
            "startWallS": self.start_wall_s,
            "ingestInit": self.ingest_init,
            "rungs": [asdict(r) for r in self.rungs],
            "frameRate": self.frame_rate,
            "pipeline": self.pipeline.to_json(),
            "uploads": [u.to_json() for u in self.uploads.values()],
            "segments": [s.to_json() for s in self.segments],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Stream:
        uploads = [Upload.from_json(u) for u in d["uploads"]]
        return cls(
            video_id=d["videoId"],
            created_wall_s=d["createdWallS"],
            updated_wall_s=d["updatedWallS"],
            next_upload=d["nextUpload"],
            ending=d["ending"],
            ended=d["ended"],
            end_after=d.get("endAfter"),
            start_wall_s=d["startWallS"],
            ingest_init=d.get("ingestInit"),
            rungs=tuple(Rung(**r) for r in d["rungs"]),
            frame_rate=d["frameRate"],
            pipeline=PipelineState.from_json(d["pipeline"]),
            uploads={u.number: u for u in uploads},
            segments=[Segment.from_json(s) for s in d["segments"]],
        )
