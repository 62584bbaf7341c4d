"""Serving: `/hls/` objects (`hls`), the design's `/viewstream` API (`viewstream`), the JSON
API (`api`), pages (`pages`), operators' endpoints (`ops`), the one middleware, and edge
processes (`edge`) that share the port and follow the primary's playlists (`feed`)."""

from aiohttp import web

from streamd.web import api, feed, hls, ops, pages, viewstream


def routes() -> list[web.RouteDef]:
    """Every route the primary answers."""
    return [
        *viewstream.routes(),
        *hls.routes(),
        *api.routes(),
        *ops.routes(),
        *feed.routes(),
        *pages.routes(),
    ]
