"""Serving viewers: master and media playlists, segments (RAM first, then disk), the piece of
video at a given time, the JSON API and the pages."""

from __future__ import annotations

import math
import re
from pathlib import Path

from aiohttp import web

from streamd import layout
from streamd.appkeys import CACHE, CONFIG, METRICS, SCHEDULER, STORE
from streamd.errors import BadRequest, NotFound
from streamd.ops import client_id
from streamd.playlist import MIME
from streamd.publish import absolute_master
from streamd.streams import Stream

ROOT = Path(__file__).resolve().parent.parent
STATIC_DIR = ROOT / "static"
HLS_JS = ROOT / "node_modules" / "hls.js" / "dist" / "hls.min.js"
CONTENT_TYPES = {
    ".ts": "video/mp2t",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".jpg": "image/jpeg",
    ".m3u8": MIME,
}
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


def _playlist_response(request: web.Request, stream: Stream, body: bytes) -> web.Response:
    age = 3600 if stream.ended else request.app[CONFIG].http.live_playlist_max_age_s
    # RFC 8216 4: playlists are UTF-8 by definition; no charset parameter.
    return web.Response(
        body=body, headers={"Content-Type": MIME, "Cache-Control": f"public, max-age={age}"}
    )


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
    stream = _published(request)
    text = absolute_master(stream, _packaging(request.query.get("format")))
    return _playlist_response(request, stream, text.encode())


def bytes_response(
    request: web.Request, data: bytes, content_type: str, headers: dict[str, str]
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


async def hls_object(request: web.Request) -> web.StreamResponse:
    """GET /hls/{videoId}/{path}: media playlists, segments, init segments, thumbnail."""
    stream = _watched(request)
    path = request.match_info["path"]
    key = f"hls/{stream.video_id}/{path}"
    # Playlists first, and without parsing the path: every viewer polls them.
    body = stream.playlists.get(key)
    if body is not None:
        return _playlist_response(request, stream, body)
    if not _OBJECT.match(path) or ".." in path:
        raise NotFound("no such object")
    suffix = "." + path.rpartition(".")[2]
    if suffix == ".m3u8":
        raise NotFound(f"no playlist {path}")
    content_type = CONTENT_TYPES.get(suffix, "application/octet-stream")
    http = request.app[CONFIG].http
    if suffix == ".jpg":
        headers = {"Cache-Control": "no-cache"}
    else:
        headers = {"Cache-Control": f"public, max-age={http.segment_max_age_s}, immutable"}
    data = request.app[CACHE].get(key)
    if data is None and (local := request.app[STORE].local_path(key)) is not None:
        # sendfile from disk; FileResponse answers 404 itself if the file is not there
        return web.FileResponse(local, headers={**headers, "Content-Type": content_type})
    if data is None:
        data = await _object_bytes(request, key)
    return bytes_response(request, data, content_type, headers)


async def _object_bytes(request: web.Request, key: str) -> bytes:
    """A published object from the RAM cache, else the store; 404 if it is in neither."""
    data = request.app[CACHE].get(key)
    if data is not None:
        return data
    try:
        return await request.app[STORE].get(key)
    except FileNotFoundError as exc:
        raise NotFound(f"no object {key.split('/', 2)[-1]}") from exc


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
    parts = [await _object_bytes(request, key) for key in keys]
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
    return [
        web.get("/viewstream/metadata/{video_id}", master),
        web.get("/viewstream/{video_id}", view),
        web.get("/hls/{video_id}/{path:.+}", hls_object),
        web.get("/api/videos", api_videos),
        web.get("/api/videos/{video_id}", api_video),
        web.get("/", home),
        web.get("/vendor/hls.min.js", hls_js.handler),
        *pages,
    ]
