"""Serving viewers: master and media playlists, segments (RAM first, then disk), the piece of
video at a given time, the JSON API and the pages."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from streamd import layout
from streamd.appkeys import CONFIG, HLS, METRICS, SCHEDULER
from streamd.errors import BadRequest, NotFound
from streamd.ops import client_id
from streamd.playlist import MIME

if TYPE_CHECKING:
    from streamd.appkeys import PlaylistIndex, Playlists
    from streamd.cache import SegmentCache
    from streamd.config import HttpConfig
    from streamd.metrics import Viewers
    from streamd.store import AsyncStore
    from streamd.streams import Stream

ROOT = Path(__file__).resolve().parent.parent
STATIC_DIR = ROOT / "static"
HLS_JS = ROOT / "node_modules" / "hls.js" / "dist" / "hls.min.js"
HLS_MJS = ROOT / "node_modules" / "hls.js" / "dist" / "hls.min.mjs"  # for the player's ES modules
CONTENT_TYPES = {
    ".ts": "video/mp2t",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".jpg": "image/jpeg",
    ".m3u8": MIME,
}
ENDED_MAX_AGE = "public, max-age=3600"
_OBJECT = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
_RESOLUTION = re.compile(r"^(\d{2,4})p?$")
_LANG = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")


def _packaging(value: str | None) -> str:
    fmt = (value or "fmp4").lower()
    if fmt in ("fmp4", "mp4", "cmaf", "m4s"):
        return "fmp4"
    if fmt == "ts":
        return "ts"
    raise BadRequest(f"unknown format {value!r}", "use mp4 (fMP4/CMAF) or ts")


def _watched(request: web.Request) -> Stream:
    """The stream a viewer asks for, counting the viewer."""
    stream = request.app[SCHEDULER].get(request.match_info["video_id"])
    request.app[METRICS].viewers.saw(stream.video_id, client_id(request))
    return stream


def _published(request: web.Request) -> Stream:
    stream = _watched(request)
    if not stream.segments:
        raise NotFound(
            f"stream {stream.video_id!r} has nothing published yet",
            "its first segment is still being transcoded",
        )
    return stream


async def master(request: web.Request) -> web.Response:
    """GET /viewstream/metadata/{videoId}: the HLS master playlist (fMP4, or ?format=ts)."""
    from streamd.publish import absolute_master  # here: edges never need it, nor PyAV

    stream = _published(request)
    text = absolute_master(stream, _packaging(request.query.get("format")))
    return request.app[HLS].playlist_response(stream, text.encode())


def bytes_response(
    request: web.BaseRequest, data: bytes, content_type: str, headers: dict[str, str]
) -> web.Response:
    """A response for bytes in RAM, honouring a Range header like a file server would."""
    headers = {**headers, "Accept-Ranges": "bytes"}
    try:
        rng = request.http_range
    except ValueError:
        rng = slice(None, None)
    if rng.start is None and rng.stop is None:
        return web.Response(body=data, content_type=content_type, headers=headers)
    start, stop, _ = rng.indices(len(data))
    if start >= stop:
        raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{len(data)}"})
    headers["Content-Range"] = f"bytes {start}-{stop - 1}/{len(data)}"
    return web.Response(
        body=data[start:stop], status=206, content_type=content_type, headers=headers
    )


class HlsObjects:
    """Playlists, segments, init segments and thumbnails under /hls/: what every viewer asks
    for every few seconds, answered alike by the primary and by edge processes."""

    def __init__(
        self,
        playlists: PlaylistIndex,
        cache: SegmentCache,
        store: AsyncStore,
        viewers: Viewers,
        http: HttpConfig,
    ) -> None:
        self.playlists, self.cache, self.store, self.viewers = playlists, cache, store, viewers
        self.live_max_age = f"public, max-age={http.live_playlist_max_age_s}"
        self.segment_max_age = f"public, max-age={http.segment_max_age_s}, immutable"

    async def respond(self, request: web.BaseRequest, video_id: str, path: str) -> web.Response:
        stream = self.playlists.get(video_id)
        self.viewers.saw(stream.video_id, client_id(request))
        key = f"hls/{stream.video_id}/{path}"
        # Playlists first, and without parsing the path: every viewer polls them.
        body = stream.playlists.get(key)
        if body is not None:
            return self.playlist_response(stream, body)
        if not _OBJECT.match(path) or ".." in path:
            raise NotFound("no such object")
        suffix = "." + path.rpartition(".")[2]
        if suffix == ".m3u8":
            raise NotFound(f"no playlist {path}")
        content_type = CONTENT_TYPES.get(suffix, "application/octet-stream")
        thumbnail = suffix == ".jpg"
        cache_control = "no-cache" if thumbnail else self.segment_max_age
        data = await self.object_bytes(key, keep=not thumbnail)
        return bytes_response(request, data, content_type, {"Cache-Control": cache_control})

    def playlist_response(self, stream: Playlists, body: bytes) -> web.Response:
        # RFC 8216 4: playlists are UTF-8 by definition; no charset parameter.
        cache_control = ENDED_MAX_AGE if stream.ended else self.live_max_age
        return web.Response(
            body=body, headers={"Content-Type": MIME, "Cache-Control": cache_control}
        )

    async def object_bytes(self, key: str, keep: bool = True) -> bytes:
        """A published object from the RAM cache, else the store (then kept in the cache: a
        segment one viewer asked for, others ask for next); 404 if it is in neither.

        Bytes from RAM rather than sendfile: uvloop has no sendfile path, and an edge
        process fills its own cache this way."""
        data = self.cache.get(key)
        if data is not None:
            return data
        try:
            data = await self.store.get(key)
        except FileNotFoundError as exc:
            raise NotFound(f"no object {key.split('/', 2)[-1]}") from exc
        if keep:
            self.cache.put(key, data)
        return data


async def hls_object(request: web.Request) -> web.StreamResponse:
    """GET /hls/{videoId}/{path}: media playlists, segments, init segments, thumbnail."""
    return await request.app[HLS].respond(
        request, request.match_info["video_id"], request.match_info["path"]
    )


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
    stream = _published(request)
    q = request.query
    packaging = _packaging(q.get("format"))
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
    keys = [layout.segment_key(stream.video_id, packaging, rung, seg.sequence)]
    if packaging == "fmp4":
        keys.insert(0, layout.init_key(stream.video_id, rung, seg.rung(rung).init))
    parts = [await request.app[HLS].object_bytes(key) for key in keys]
    headers = {
        "Cache-Control": f"public, max-age={request.app[CONFIG].http.segment_max_age_s}",
        "X-Segment-Sequence": str(seg.sequence),
        "X-Segment-Start": f"{seg.start_s:.3f}",
        "X-Segment-Duration": f"{seg.duration_s:.3f}",
        "X-Resolution": rung,
        "Content-Disposition": f'inline; filename="{stream.video_id}-{seg.sequence}-{rung}.'
        f'{"mp4" if packaging == "fmp4" else "ts"}"',
    }
    content_type = "video/mp4" if packaging == "fmp4" else "video/mp2t"
    return bytes_response(request, b"".join(parts), content_type, headers)


async def api_videos(request: web.Request) -> web.Response:
    streams = sorted(request.app[SCHEDULER].streams.values(), key=lambda s: -s.created_wall_s)
    viewers = request.app[METRICS].viewers
    return web.json_response(
        {
            "videos": [
                {**s.summary(), "viewers": viewers.count(s.video_id)} for s in streams if s.uploads
            ]
        }
    )


async def api_video(request: web.Request) -> web.Response:
    stream = request.app[SCHEDULER].get(request.match_info["video_id"])
    viewers = request.app[METRICS].viewers.count(stream.video_id)
    return web.json_response({**stream.detail(), "viewers": viewers})


def _static(path: Path, content_type: str | None = None) -> web.RouteDef:
    async def handler(request: web.Request) -> web.FileResponse:
        headers = {"Cache-Control": "no-cache"}
        if content_type:
            headers["Content-Type"] = content_type
        return web.FileResponse(path, headers=headers)

    return web.get("/" + path.name, handler)


def routes() -> list[web.RouteDef]:
    pages = [_static(p) for p in sorted(STATIC_DIR.glob("*")) if p.is_file()]
    index = STATIC_DIR / "index.html"

    async def home(request: web.Request) -> web.FileResponse:
        return web.FileResponse(index, headers={"Cache-Control": "no-cache"})

    hls_js = _static(HLS_JS, "text/javascript")
    hls_mjs = _static(HLS_MJS, "text/javascript")
    return [
        web.get("/viewstream/metadata/{video_id}", master),
        web.get("/viewstream/{video_id}", view),
        web.get("/hls/{video_id}/{path:.+}", hls_object),
        web.get("/api/videos", api_videos),
        web.get("/api/videos/{video_id}", api_video),
        web.get("/", home),
        web.get("/vendor/hls.min.js", hls_js.handler),
        web.get("/vendor/hls.mjs", hls_mjs.handler),
        web.static("/js", STATIC_DIR / "js"),  # the pages' ES modules
        *pages,
    ]
