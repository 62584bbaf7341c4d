"""The API of the design: `GET /viewstream/metadata/{videoId}` (the master playlist) and
`GET /viewstream/{videoId}?timestamp&format&resolution&lang` (the segment holding that
second, as a file that plays alone, decrypted when the stream is encrypted: the caller
showed its token already)."""

from __future__ import annotations

import asyncio
import math
import re

from aiohttp import web

from streamd.access import tokens
from streamd.appkeys import CONFIG, HLS, METRICS, STREAMS
from streamd.errors import BadRequest, NotFound
from streamd.manifests.hls import absolute_master
from streamd.metrics import client_id
from streamd.model import layout
from streamd.model.formats import packaging_for
from streamd.model.stream import Stream
from streamd.web.hls import bytes_response

_RESOLUTION = re.compile(r"^(\d{2,4})p?$")
_LANG = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")


def _published(request: web.Request) -> tuple[Stream, str | None]:
    """The stream a viewer asks for (counting the viewer), once it has a segment, and the
    viewer's token once checked (None when watching is open)."""
    token = request.app[HLS].authorize(request, request.match_info["video_id"])
    stream = request.app[STREAMS].get(request.match_info["video_id"])
    request.app[METRICS].viewers.saw(stream.video_id, client_id(request))
    if not stream.segments:
        raise NotFound(
            f"stream {stream.video_id!r} has nothing published yet",
            "its first segment is still being transcoded",
        )
    return stream, token


async def master(request: web.Request) -> web.Response:
    """GET /viewstream/metadata/{videoId}: the HLS master playlist (fMP4, or ?format=ts)."""
    stream, token = _published(request)
    body = absolute_master(stream, packaging_for(request.query.get("format"))).encode()
    if token is not None:  # handed on to every variant
        body = tokens.tokenized_playlist(body, token)
    return request.app[HLS].playlist_response(stream.ended, body)


def _pick_rung(stream: Stream, resolution: str | None) -> str:
    rungs = stream.rungs  # tallest first
    if not resolution:
        return rungs[0].name
    m = _RESOLUTION.match(resolution.strip().lower())
    if not m:
        raise BadRequest(f"bad resolution {resolution!r}", "use e.g. 720p")
    wanted = int(m.group(1))
    for rung in rungs:
        if min(rung.width, rung.height) <= wanted:
            return rung.name
    raise NotFound(
        f"no rung at or below {wanted}p", "available: " + ", ".join(r.name for r in rungs)
    )


async def view(request: web.Request) -> web.Response:
    """GET /viewstream/{videoId}?timestamp=T: the segment holding second T, playable alone."""
    stream, _ = _published(request)
    q = request.query
    packaging = packaging_for(q.get("format"))
    lang = q.get("lang")
    if lang and not _LANG.match(lang):
        raise BadRequest(f"bad lang {lang!r}", "use a BCP 47 tag such as en or pt-BR")
    try:
        time_s = float(q.get("timestamp", "0"))
    except ValueError as exc:
        raise BadRequest(f"bad timestamp {q.get('timestamp')!r}", "seconds from the start") from exc
    if not math.isfinite(time_s) or time_s < 0:
        raise BadRequest(f"bad timestamp {time_s!r}", "seconds from the start, 0 or more")
    rung = _pick_rung(stream, q.get("resolution"))
    seg = stream.segment_at(time_s)
    if seg is None:
        when = "beyond the end of the stream" if stream.ended else "not published yet"
        raise NotFound(
            f"timestamp {time_s:g} s is {when}", f"published: 0 to {stream.duration_s:g} s"
        )
    out = seg.rung(rung)
    if out is None:  # the rung was dropped for this segment (overload): the next one down
        heights = {r.name: r.height for r in stream.rungs}
        out = next((o for o in seg.rungs if heights[o.name] <= heights[rung]), seg.rungs[-1])
        rung = out.name
    vid, name = stream.video_id, packaging.name
    keys = [layout.segment_key(vid, name, rung, seg.sequence)]
    init = out.inits.get(name)
    if init is not None:
        keys.insert(0, layout.init_key(vid, name, rung, init))
    parts = [await request.app[HLS].object_bytes(key) for key in keys]
    scope = "public"
    if stream.protection is not None:  # off the loop: AES over a segment is milliseconds
        decrypt = stream.protection.decrypt
        loop = asyncio.get_running_loop()
        parts[-1] = await loop.run_in_executor(None, decrypt, vid, seg.sequence, parts[-1])
        scope = "private"  # clear bytes of an encrypted stream: no shared cache keeps them
    headers = {
        "Cache-Control": f"{scope}, max-age={request.app[CONFIG].http.segment_max_age_s}",
        "X-Segment-Sequence": str(seg.sequence),
        "X-Segment-Start": f"{seg.start_s:.3f}",
        "X-Segment-Duration": f"{seg.duration_s:.3f}",
        "X-Resolution": rung,
        "Content-Disposition": f'inline; filename="{vid}-{seg.sequence}-{rung}.'
        f'{packaging.file_extension}"',
    }
    return bytes_response(request, b"".join(parts), packaging.file_content_type, headers)


def routes() -> list[web.RouteDef]:
    return [
        web.get("/viewstream/metadata/{video_id}", master),
        web.get("/viewstream/{video_id}", view),
    ]
