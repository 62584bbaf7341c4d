"""The admin API, on only when `[auth] admin_token` is set: per-stream publish keys (made,
listed, revoked) and deleting a stream with everything it published."""

from __future__ import annotations

import hmac

from aiohttp import web

from streamd.access import bearer_key
from streamd.appkeys import CONFIG, PUBLISHERS, STREAMS
from streamd.errors import NotFound, Unauthorized
from streamd.model import layout


def _admin(request: web.Request) -> None:
    """Raise unless the request carries the admin token (404 when there is none to carry)."""
    token = request.app[CONFIG].auth.admin_token
    if not token:
        raise NotFound("the admin API is off", "set [auth] admin_token to turn it on")
    presented = bearer_key(request.headers.get("Authorization")) or ""
    if not hmac.compare_digest(presented.encode(), token.encode()):
        raise Unauthorized("the admin API needs the admin token", "Authorization: Bearer TOKEN")


async def make_key(request: web.Request) -> web.Response:
    """POST /admin/streams/{videoId}/keys: a new publish key for this stream only. The key is
    in this answer and nowhere else (streamd keeps its hash)."""
    _admin(request)
    video_id = layout.check_video_id(request.match_info["video_id"])
    key_id, key = await request.app[PUBLISHERS].make_stream_key(video_id)
    return web.json_response({"videoId": video_id, "keyId": key_id, "key": key}, status=201)


async def list_keys(request: web.Request) -> web.Response:
    """GET /admin/streams/{videoId}/keys: the stream's keys (ids and dates, never the keys)."""
    _admin(request)
    video_id = layout.check_video_id(request.match_info["video_id"])
    keys = request.app[PUBLISHERS].stream_keys(video_id)
    return web.json_response({"videoId": video_id, "keys": keys})


async def revoke_key(request: web.Request) -> web.Response:
    """DELETE /admin/keys/{keyId}: the key publishes no more."""
    _admin(request)
    await request.app[PUBLISHERS].revoke(request.match_info["key_id"])
    return web.Response(status=204)


async def delete_stream(request: web.Request) -> web.Response:
    """DELETE /admin/streams/{videoId} or /api/videos/{videoId}: the stream, its uploads,
    segments and playlists."""
    _admin(request)
    video_id = request.match_info["video_id"]
    await request.app[STREAMS].delete(video_id)
    request.app[PUBLISHERS].forget_stream(video_id)
    return web.Response(status=204)


def routes() -> list[web.RouteDef]:
    return [
        web.post("/admin/streams/{video_id}/keys", make_key),
        web.get("/admin/streams/{video_id}/keys", list_keys),
        web.delete("/admin/keys/{key_id}", revoke_key),
        web.delete("/admin/streams/{video_id}", delete_stream),
        web.delete("/api/videos/{video_id}", delete_stream),  # the same, where the API lists it
    ]
