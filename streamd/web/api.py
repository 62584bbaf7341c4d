"""The JSON API: `GET /api/videos` and `/api/videos/{videoId}`, streams as the status page
and operators see them. A stream's API view lives here, not on its record."""

from __future__ import annotations

import itertools
import time
from typing import Any

from aiohttp import web

from streamd.appkeys import CLOCK, METRICS, STREAMS
from streamd.clock import iso
from streamd.model import layout
from streamd.model.audio import AudioLanguage
from streamd.model.formats import FMP4
from streamd.model.protection import method_of
from streamd.model.recording import PlannedPiece
from streamd.model.stream import RECORDING, UPLOAD_STATES, Stream
from streamd.streams.live import LiveFeed
from streamd.web.ops import process_memory

UPLOAD_LIST_MAX = 100


def ingest(stream: Stream, feed: LiveFeed | None) -> dict[str, Any] | None:
    """How a live stream is fed: its protocol, whether its publisher is connected, what it
    sends (None for a stream of segment uploads)."""
    last = next(reversed(stream.uploads.values()), None) if stream.uploads else None
    if last is None or not last.ingest or last.ingest == RECORDING:
        return None
    view = {"protocol": last.ingest, "connected": False, "source": last.source}
    if feed is not None:
        view |= feed.as_json()
    return view


def recording(stream: Stream) -> dict[str, Any] | None:
    """A recording uploaded whole: how far its transcode is (its pieces' progress, by their
    length), and how fast it goes (seconds of media per second)."""
    if not stream.vod:
        return None
    pieces = [
        (PlannedPiece.from_json((u.source or {})["piece"]), u) for u in stream.uploads.values()
    ]
    total_s = sum(p.duration_s for p, _ in pieces)
    done_s = sum(p.duration_s * u.percent / 100 for p, u in pieces)
    started, finished = stream.transcode_wall_s or (None, None)
    elapsed_s = None
    if started is not None:
        elapsed_s = (finished or time.time()) - started
    return {
        "pieces": len(pieces),
        "durationS": round(total_s, 3),
        "doneS": round(done_s, 3),
        "percent": round(100 * done_s / total_s, 1) if total_s else 0.0,
        "elapsedS": None if elapsed_s is None else round(elapsed_s, 3),
        "speed": round(done_s / elapsed_s, 3) if elapsed_s else None,
        "done": finished is not None,
    }


def audio_json(stream: Stream, track: AudioLanguage) -> dict[str, Any]:
    """An audio language; an alternate's with how far it is made (it follows the video)."""
    out: dict[str, Any] = {"rendition": track.rendition, "lang": track.lang, "name": track.name}
    if not track.main:
        made = stream.audio_from(track.rendition) - stream.first_sequence
        out["madeUpToS"] = round(stream.segments[made - 1].end_s, 3) if made > 0 else 0.0
    return out


def summary(stream: Stream, feed: LiveFeed | None = None) -> dict[str, Any]:
    """What the stream list shows of a stream."""
    vid = stream.video_id
    last = stream.segments[-1] if stream.segments else None
    rungs = []
    for r in stream.rungs:
        peak, avg = stream.rates(r.name, FMP4.name)
        rungs.append(
            {
                "name": r.name,
                "width": r.width,
                "height": r.height,
                "bandwidthBps": peak,
                "averageBandwidthBps": avg,
                "codecs": stream.codecs.get(r.name),
            }
        )
    return {
        "videoId": vid,
        "state": stream.state,
        "createdAt": iso(stream.created_wall_s),
        "updatedAt": iso(stream.updated_wall_s or stream.created_wall_s),
        "startedAt": None if stream.start_wall_s is None else iso(stream.start_wall_s),
        "durationS": stream.duration_s,
        # Where the playlists start (retention keeps a live window) and what they hold.
        "firstS": round(stream.segments[0].start_s, 3) if stream.segments else 0.0,
        "segments": len(stream.segments),
        "keptBytes": stream.kept_bytes,
        "encryption": method_of(stream.protection),
        "frameRate": stream.frame_rate or None,
        "realtimeFactor": stream.realtime_factor,
        "publishDelayS": stream.publish_delay_s,
        # Rungs left out of new segments while transcoding is behind real time.
        "droppedRungs": [r.name for r in stream.rungs[: stream.dropped_rungs]],
        "uploads": {state: stream.counts[state] for state in UPLOAD_STATES},
        "ingest": ingest(stream, feed),
        "recording": recording(stream),
        "rungs": rungs,
        # Languages: the audio renditions (the main first) and the subtitle tracks.
        "audio": [audio_json(stream, a) for a in stream.audio_languages.values()],
        "subtitles": [{"lang": t.lang, "name": t.name} for t in stream.captions.values()],
        "links": {
            "master": f"/viewstream/metadata/{vid}",
            "masterTs": f"/viewstream/metadata/{vid}?format=ts",
            "dash": layout.url_for(layout.mpd_key(vid)),
            "player": f"/player.html?v={vid}",
            "thumbnail": layout.url_for(layout.thumbnail_key(vid)) if last else None,
            # Seek-bar previews (WebVTT, cues into sprite sheets): not of encrypted streams.
            "thumbnails": layout.url_for(layout.thumbnail_track_key(vid))
            if last and stream.protection is None
            else None,
        },
    }


def detail(stream: Stream, feed: LiveFeed | None = None) -> dict[str, Any]:
    """A stream with its latest uploads (a day-long event has tens of thousands)."""
    latest = itertools.islice(reversed(stream.uploads.values()), UPLOAD_LIST_MAX)
    return {
        **summary(stream, feed),
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
            for u in sorted(latest, key=lambda u: u.number)
        ],
    }


async def videos(request: web.Request) -> web.Response:
    registry = request.app[STREAMS]
    streams = sorted(registry.records.values(), key=lambda s: -s.created_wall_s)
    viewers = request.app[METRICS].viewers
    return web.json_response(
        {
            "videos": [
                {
                    **summary(s, registry.runners[s.video_id].live.current()),
                    "viewers": viewers.count(s.video_id),
                }
                for s in streams
                if s.uploads
            ],
            # The server's memory by kind of process, for the / page's line.
            "server": {"residentBytes": process_memory(request.app)[0]},
        }
    )


async def video(request: web.Request) -> web.Response:
    runner = request.app[STREAMS].runner(request.match_info["video_id"])
    viewers = request.app[METRICS].viewers.count(runner.stream.video_id)
    detailed = detail(runner.stream, runner.live.current())
    return web.json_response({**detailed, "viewers": viewers})


async def server_time(request: web.Request) -> web.Response:
    """GET /api/time: the server's clock (ISO 8601), which DASH players set theirs by
    (the MPD's UTCTiming), so a live edge is where the server says it is."""
    return web.Response(
        text=iso(request.app[CLOCK].wall_s()), headers={"Cache-Control": "no-store"}
    )


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/videos", videos),
        web.get("/api/videos/{video_id}", video),
        web.get("/api/time", server_time),
    ]
