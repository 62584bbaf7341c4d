"""What every HTTP request goes through, in whichever process answers it (the primary or an
edge): one middleware for errors, CORS and counting. What concerns the connection rather
than the request lives in `connection`."""

from __future__ import annotations

from aiohttp import web

from streamd.errors import Handler, error_response
from streamd.metrics import Metrics

CORS_PREFIXES = ("/hls/", "/dash/", "/viewstream/", "/api/", "/vendor/")
# The Fetch standard reads these only on a preflight's answer, so only OPTIONS carries them;
# every other answer carries just the origin and what a player may read (Content-Range).
PREFLIGHT_HEADERS = {
    "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
    "Access-Control-Allow-Headers": "Range, Content-Type",
    "Access-Control-Max-Age": "86400",
}
EXPOSE_HEADERS = {"Access-Control-Expose-Headers": "Content-Length, Content-Range, Accept-Ranges"}


def cors_headers(origin: str) -> dict[str, str]:
    """What answers to players on other origins carry (preflights aside)."""
    return {"Access-Control-Allow-Origin": origin, **EXPOSE_HEADERS}


def request_middleware(cors_origin: str, metrics: Metrics) -> web.middleware:  # type: ignore[valid-type]
    """What every request goes through, in one layer (aiohttp builds the middleware chain per
    request, so each extra layer costs every playlist poll): failures become JSON errors,
    players on other origins get CORS headers, and the request is counted by route."""
    cors = cors_headers(cors_origin)
    preflight = {"Access-Control-Allow-Origin": cors_origin, **PREFLIGHT_HEADERS}

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        cross_origin = request.path.startswith(CORS_PREFIXES)
        response: web.StreamResponse
        if cross_origin and request.method == "OPTIONS":
            response = web.Response(status=204, headers=preflight)
        else:
            try:
                response = await handler(request)
            except Exception as exc:
                try:
                    response = error_response(request, exc)
                except web.HTTPException as redirect:
                    metrics.count_request(_route(request), redirect.status)
                    raise
                if request.body_exists and not request.content.at_eof():
                    # Refused mid-body (too large, no key): close rather than read the rest.
                    response.force_close()
            if cross_origin:
                response.headers.update(cors)
        metrics.count_request(_route(request), response.status)
        return response

    return middleware


def _route(request: web.Request) -> str:
    """The route pattern (not the path, to keep the label set small)."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"
