"""`/hls/{videoId}/...`: playlists, segments, init segments, AES-128 keys and thumbnails, what
every viewer asks for every few seconds, answered alike by the primary and by edge processes:
playlists from RAM, objects from the RAM cache, else from the store (then cached), keys
derived from the stream's secret (never stored beside the segments)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Protocol

from aiohttp import web

from streamd.access import tokens
from streamd.appkeys import HLS
from streamd.clock import Clock, SystemClock
from streamd.config import Config
from streamd.errors import BadRequest, Forbidden, NotFound, Unavailable
from streamd.manifests.dash import MIME as DASH_MIME
from streamd.manifests.hls import MIME
from streamd.manifests.hls.lowlatency import BLOCK_TD, LiveState, LiveView
from streamd.metrics import Viewers, client_id
from streamd.model import layout
from streamd.model.formats import FMP4, content_type_for
from streamd.store import AsyncStore, SegmentCache
from streamd.web.middleware import cors_headers

ENDED_MAX_AGE = "public, max-age=3600"
BLOCKED_MAX_AGE_TD = 6  # LL-HLS B.1: blocking playlist responses cached six target durations
_PART = re.compile(r"^fmp4/[A-Za-z0-9_-]+/part([0-9]{6,9})\.([0-9]{1,4})\.m4s$")  # layout
_SEGMENT = re.compile(r"^fmp4/([A-Za-z0-9_-]+)/seg([0-9]{6,9})\.m4s$")
PREVIEW_TYPES = {".jpg": "image/jpeg", ".vtt": "text/vtt"}
_OBJECT = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
_KEY = re.compile(r"^keys/([0-9]{1,9})\.key$")  # layout.key_name
KEY_CACHE_CONTROL = "private, no-store"


class Playlists(Protocol):
    """One stream's playlists: the publisher's, or an edge's copy of them."""

    @property
    def video_id(self) -> str: ...
    @property
    def ended(self) -> bool: ...
    @property
    def live(self) -> LiveState: ...
    def get(self, key: str, delta: bool = False) -> bytes | None: ...
    def key(self, index: int) -> bytes | None: ...


class PlaylistIndex(Protocol):
    def get(self, video_id: str) -> Playlists:
        """The stream's playlists; raises NotFound (or InvalidVideoId)."""
        ...


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


def directives(query: Mapping[str, str]) -> tuple[int | None, int | None, bool]:
    """LL-HLS delivery directives (6.2.5): `_HLS_msn`, `_HLS_part`, `_HLS_skip`; 400 for
    malformed values, or a part without a segment."""

    def number(name: str) -> int | None:
        value = query.get(name)
        if value is None:
            return None
        if not value.isdigit() or len(value) > 12:
            raise BadRequest(f"{name} must be a whole number", f"got {value[:20]!r}")
        return int(value)

    msn, part = number("_HLS_msn"), number("_HLS_part")
    if part is not None and msn is None:
        raise BadRequest("_HLS_part needs _HLS_msn", "draft-pantos-hls-rfc8216bis 6.2.5.2")
    skip = query.get("_HLS_skip")
    if skip not in (None, "YES", "v2"):
        raise BadRequest("_HLS_skip must be YES or v2", f"got {skip[:20]!r}")
    return msn, part, skip is not None


class HlsObjects:
    """Everything under /hls/, for one process."""

    def __init__(
        self,
        playlists: PlaylistIndex,
        cache: SegmentCache,
        store: AsyncStore,
        viewers: Viewers,
        config: Config,
        clock: Clock | None = None,
    ) -> None:
        self.playlists, self.cache, self.store, self.viewers = playlists, cache, store, viewers
        http = config.http
        self.live_max_age = f"public, max-age={http.live_playlist_max_age_s}"
        self.segment_max_age = f"public, max-age={http.segment_max_age_s}, immutable"
        self.viewer_secret = config.auth.viewer_secret
        self.cors = cors_headers(config.http.cors_origin)  # on a response sent before it ends
        self.clock = clock or SystemClock()

    def authorize(self, request: web.BaseRequest, video_id: str) -> str | None:
        """The request's viewer token, once checked (None when watching is open)."""
        if not self.viewer_secret:
            return None
        token = request.query.get(tokens.QUERY)
        tokens.verify(self.viewer_secret, video_id, token, self.clock.wall_s())
        return token

    async def respond(
        self, request: web.BaseRequest, video_id: str, path: str
    ) -> web.StreamResponse:
        token = self.authorize(request, video_id)  # first: no token, no answer at all
        stream = self.playlists.get(video_id)
        self.viewers.saw(stream.video_id, client_id(request))
        key = f"hls/{stream.video_id}/{path}"
        # Playlists first, and without parsing the path: every viewer polls them.
        body = stream.get(key)
        if body is not None:
            cache_control = None
            view = stream.live.views.get(key)
            if view is not None and request.query:  # LL-HLS delivery directives
                msn, part, skip = directives(request.query)
                if msn is not None:
                    await self.block(stream, key, view, msn, part)
                    # 6.2.5.2 and Apple's CDN guidance: cacheable by its whole URL.
                    cache_control = f"public, max-age={BLOCKED_MAX_AGE_TD * view.position.target_s}"
                body = stream.get(key, delta=skip)
                assert body is not None
            if token is not None:
                body = tokens.tokenized_playlist(body, token)
            kind = DASH_MIME if path.endswith(".mpd") else MIME
            return self.playlist_response(stream.ended, body, cache_control, kind)
        if path.startswith("keys/"):
            return self.key_response(stream, path, token)
        if (m := _PART.match(path)) is not None:
            return await self.part_response(request, stream, key, m)
        if not _OBJECT.match(path) or ".." in path:
            raise NotFound("no such object")
        suffix = "." + path.rpartition(".")[2]
        if suffix in (".m3u8", ".mpd"):
            raise NotFound(f"no playlist {path}")
        # Previews (the poster, sprite sheets, their track) change as the stream goes on:
        # revalidated, and not kept in the RAM cache of immutable media.
        preview = PREVIEW_TYPES.get(suffix)
        content_type = preview or content_type_for(suffix)
        cache_control = "no-cache" if preview else self.segment_max_age
        try:
            data = await self.object_bytes(key, keep=not preview)
        except NotFound:
            if (m := _SEGMENT.match(path)) is None:
                raise
            return await self.growing_segment(request, stream, key, m)
        return bytes_response(
            request,
            data,
            content_type or "application/octet-stream",
            {"Cache-Control": cache_control},
        )

    def key_response(self, stream: Playlists, path: str, token: str | None) -> web.Response:
        """An AES-128 key: 16 bytes, for a viewer whose token was checked, never cached."""
        if token is None:  # viewer_secret was unset after the stream was encrypted
            raise Forbidden("keys are served only with a viewer token", "set auth.viewer_secret")
        m = _KEY.match(path)
        key = None if m is None else stream.key(int(m.group(1)))
        if key is None:
            raise NotFound(f"no key {path!r} for stream {stream.video_id!r}")
        return web.Response(
            body=key,
            content_type="application/octet-stream",
            headers={"Cache-Control": KEY_CACHE_CONTROL},
        )

    def playlist_response(
        self, ended: bool, body: bytes, cache_control: str | None = None, content_type: str = MIME
    ) -> web.Response:
        """A playlist or an MPD. RFC 8216 4: playlists are UTF-8 by definition, so no
        charset parameter (an MPD says its encoding itself)."""
        if cache_control is None:
            cache_control = ENDED_MAX_AGE if ended else self.live_max_age
        return web.Response(
            body=body, headers={"Content-Type": content_type, "Cache-Control": cache_control}
        )

    async def block(
        self, stream: Playlists, key: str, view: LiveView, msn: int, part: int | None
    ) -> None:
        """Hold a playlist request until it holds segment `msn` (or its part `part`):
        400 if that is further ahead than a client may ask, 503 after three target
        durations (draft-pantos-hls-rfc8216bis 6.2.5.2)."""
        view.position.refuse(msn, part)
        timeout_s = BLOCK_TD * view.position.target_s
        if not await stream.live.waiters_for(key).wait(view.position, msn, part, timeout_s):
            raise Unavailable(
                f"segment {msn}" + ("" if part is None else f" part {part}") + " did not come",
                f"waited {timeout_s} s",
            )

    async def part_response(
        self, request: web.BaseRequest, stream: Playlists, key: str, m: re.Match[str]
    ) -> web.Response:
        """An LL-HLS part, from RAM. The next one (what EXT-X-PRELOAD-HINT names) is held
        until it exists, then sent whole (6.2.6: never a part's bytes before all of them)."""
        data = stream.live.parts.get(key)
        if data is None:
            playlist = key.rsplit("/", 1)[0] + "/index.m3u8"
            view = stream.live.views.get(playlist)
            msn, index = int(m.group(1)), int(m.group(2))
            if view is None or view.position.reached(msn, index):
                raise NotFound(f"no part {key.rsplit('/', 1)[1]}")
            try:
                view.position.refuse(msn, index)
            except BadRequest as exc:
                raise NotFound(f"no part {key.rsplit('/', 1)[1]} yet", exc.message) from exc
            await self.block(stream, playlist, view, msn, index)
            data = stream.live.parts.get(key)
            if data is None:  # the segment was cut before it: hinted, never made
                raise NotFound(f"no part {key.rsplit('/', 1)[1]}")
        return bytes_response(
            request, data[1], FMP4.content_type, {"Cache-Control": self.segment_max_age}
        )

    async def growing_segment(
        self, request: web.BaseRequest, stream: Playlists, key: str, m: re.Match[str]
    ) -> web.StreamResponse:
        """A live fMP4 segment still being made, sent as its parts come (chunked transfer):
        low-latency DASH asks for it one part after it begins. Its bytes, once all sent,
        are the whole segment's (a segment is its parts' CMAF chunks)."""
        rendition, msn = m.group(1), int(m.group(2))
        playlist = key.rsplit("/", 1)[0] + "/index.m3u8"
        view = stream.live.views.get(playlist)
        if view is None:
            raise NotFound(f"no segment {key.rsplit('/', 1)[1]}")
        try:
            view.position.refuse(msn, 0)
        except BadRequest as exc:
            raise NotFound(f"no segment {key.rsplit('/', 1)[1]} yet", exc.message) from exc
        response: web.StreamResponse | None = None
        index = 0
        while True:
            part = stream.live.parts.get(layout.part_key(stream.video_id, rendition, msn, index))
            if part is not None:
                if response is None:
                    headers = {"Content-Type": FMP4.content_type, "Cache-Control": "no-cache"}
                    response = web.StreamResponse(headers={**headers, **self.cors})
                    response.enable_chunked_encoding()
                    await response.prepare(request)
                await response.write(part[1])
                index += 1
                continue
            view = stream.live.views.get(playlist)
            if view is None or view.position.last_msn >= msn:
                break  # the segment is whole (or the stream ended): every part was sent
            timeout_s = BLOCK_TD * view.position.target_s
            waiters = stream.live.waiters_for(playlist)
            if not await waiters.wait(view.position, msn, index, timeout_s):
                break
            if layout.part_key(stream.video_id, rendition, msn, index) not in stream.live.parts:
                # Reached without the part: the segment's parts ended (6.2.5.2 counts past
                # its last as the next segment's first). All were sent; looping again would
                # spin without ever yielding the event loop.
                break
        if response is None:  # whole before a part of it was sent: from the store
            data = await self.object_bytes(key)
            return bytes_response(
                request, data, FMP4.content_type, {"Cache-Control": self.segment_max_age}
            )
        await response.write_eof()
        return response

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


def routes() -> list[web.RouteDef]:
    return [web.get("/hls/{video_id}/{path:.+}", hls_object)]
