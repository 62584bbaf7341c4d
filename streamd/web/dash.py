"""`/dash/{videoId}/webm-{rendition}/...`: the MPD's WebM (VP9, Opus) segments, encoded
from the published CMAF segments the first time one is asked for (on the files process,
at the lowest priority), then kept and served like any other object. Only the primary
answers them (an edge passes them on): it holds the stream records and the workers.

A segment's Opus audio is decoded together with its neighbours' (when published), so that
the segments join frame for frame (streamd.media.webm).
"""

from __future__ import annotations

import re

from aiohttp import web

from streamd.appkeys import CACHE, CONFIG, FLIGHTS, HLS, JOBS, METRICS, STORE
from streamd.errors import NotFound
from streamd.model import layout
from streamd.model.formats import FMP4
from streamd.model.stream import Segment, Stream
from streamd.web.hls import bytes_response
from streamd.web.viewstream import REMUX_TIMEOUT_S, published, track

_SEGMENT = re.compile(r"^seg([0-9]{6,9})\.webm$")
INIT = "init.webm"
CONTENT_TYPES = {"audio": "audio/webm"}


async def webm(request: web.Request) -> web.Response:
    """GET /dash/{videoId}/webm-{rendition}/{init.webm|segNNNNNN.webm}."""
    stream, _ = published(request)
    app = request.app
    if app[CONFIG].transcode.webm == "off":
        raise NotFound("WebM is off on this server", 'set [transcode] webm = "on_demand"')
    if stream.protection is not None:
        raise NotFound("an encrypted stream has no WebM", "its clear pictures are not kept")
    representation, name = request.match_info["representation"], request.match_info["name"]
    rendition = representation.removeprefix("webm-")
    if rendition == representation:
        raise NotFound(f"no representation {representation[:40]!r}")
    segment = _segment(stream, rendition, name)
    key = layout.dash_webm_key(stream.video_id, representation, name)
    try:
        data = await app[HLS].object_bytes(key)  # the RAM cache, else the store
    except NotFound:
        flight = (stream.video_id, representation, segment.sequence)
        head, media = await app[FLIGHTS].once(
            flight, lambda: _encode(app, stream, rendition, segment)
        )
        data = head if name == INIT else media
        app[CACHE].put(key, data)
    kind = CONTENT_TYPES.get(rendition, "video/webm")
    max_age = app[CONFIG].http.segment_max_age_s
    headers = {"Cache-Control": f"public, max-age={max_age}, immutable"}
    return bytes_response(request, data, kind, headers)


def _segment(stream: Stream, rendition: str, name: str) -> Segment:
    """The published segment a WebM object is made from (its init: the newest one)."""
    if name == INIT:
        found = next((s for s in reversed(stream.segments) if s.rung(rendition)), None)
    elif (m := _SEGMENT.match(name)) is not None:
        found = stream.segment(int(m.group(1)))
    else:
        found = None
    if found is None or found.rung(rendition) is None:
        raise NotFound(f"no WebM {name} of {rendition} for {stream.video_id!r}")
    return found


async def _encode(
    app: web.Application, stream: Stream, rendition: str, segment: Segment
) -> tuple[bytes, bytes]:
    """Encode one segment: its init and media; keep its media, and the rendition's init
    if not kept yet."""
    vid, jobs = stream.video_id, app[JOBS]
    spec = stream.rungs[0]
    timeout_s = REMUX_TIMEOUT_S + 4 * segment.duration_s
    this = await track(app, stream, FMP4, rendition, [segment])
    if rendition == "audio":
        before = await _audio_of(app, stream, rendition, segment, segment.sequence - 1)
        after = await _audio_of(app, stream, rendition, segment, segment.sequence + 1)
        last = stream.ended and segment is stream.segments[-1]
        head, media = await jobs.webm_audio(
            this, before, after, spec.audio_bitrate_bps, last, timeout_s
        )
    else:
        bitrate = next(r.video_bitrate_bps for r in stream.rungs if r.name == rendition)
        head, media = await jobs.webm_video(this, bitrate, timeout_s)
    app[METRICS].files_encoded.labels("webm-dash").inc()
    representation = f"webm-{rendition}"
    store = app[STORE]
    media_key = layout.dash_webm_key(vid, representation, f"seg{segment.sequence:06d}.webm")
    await store.put(media_key, media)
    init_key = layout.dash_webm_key(vid, representation, INIT)
    try:
        await store.size(init_key)
    except FileNotFoundError:  # the same bytes for every segment: kept once
        await store.put(init_key, head)
    return head, media


async def _audio_of(
    app: web.Application, stream: Stream, rendition: str, segment: Segment, sequence: int
) -> bytes | None:
    """A neighbour's audio track file, if it is published, on the same timeline (no
    restart between them) and with the same init segment."""
    neighbour = stream.segment(sequence)
    if neighbour is None:
        return None
    later = neighbour if sequence > segment.sequence else segment
    ours, theirs = segment.rung(rendition), neighbour.rung(rendition)
    if theirs is None or ours is None or later.discontinuity or theirs.inits != ours.inits:
        return None
    return await track(app, stream, FMP4, rendition, [neighbour])


def routes() -> list[web.RouteDef]:
    return [web.get("/dash/{video_id}/{representation}/{name}", webm)]
