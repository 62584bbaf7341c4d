"""Serving: `/hls/` objects (`hls`), the design's `/viewstream` API (`viewstream`), WebM DASH
segments made on demand (`dash`), the JSON
API (`api`), the admin API (`admin`), pages (`pages`), operators' endpoints (`ops`), the one
middleware, and edge processes (`edge`) that follow the primary's playlists (`feed`)."""

from aiohttp import web

from streamd.web import admin, api, dash, feed, hls, ops, pages, viewstream


def routes() -> list[web.RouteDef]:
    """Every route the primary answers."""
    return [
        *viewstream.routes(),
        *dash.routes(),
        *hls.routes(),
        *api.routes(),
        *admin.routes(),
        *ops.routes(),
        *feed.routes(),
        *pages.routes(),
    ]
