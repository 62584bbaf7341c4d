"""The pages (`/` the stream list, `/player.html`), their ES modules, and hls.js and dash.js
from node_modules, pinned by package-lock.json."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from streamd.errors import NotFound

ROOT = Path(__file__).resolve().parent.parent.parent
STATIC_DIR = ROOT / "static"
HLS_DIST = ROOT / "node_modules" / "hls.js" / "dist"
DASH_DIST = ROOT / "node_modules" / "dashjs" / "dist" / "modern" / "umd"
NO_CACHE = {"Cache-Control": "no-cache"}


def _file(url: str, path: Path, content_type: str | None = None) -> web.RouteDef:
    headers = {**NO_CACHE, **({"Content-Type": content_type} if content_type else {})}

    async def handler(request: web.Request) -> web.FileResponse:
        return web.FileResponse(path, headers=headers)

    return web.get(url, handler)


def _tree(url: str, root: Path) -> web.RouteDef:
    """Every file under `root` at `url`/..., never one outside it."""
    root = root.resolve()

    async def handler(request: web.Request) -> web.FileResponse:
        try:  # a NUL in the path makes resolve() raise ValueError
            path = (root / request.match_info["path"]).resolve()
        except (ValueError, OSError) as exc:
            raise NotFound("no such file") from exc
        if root not in path.parents or not path.is_file():
            raise NotFound("no such file")
        return web.FileResponse(path, headers=NO_CACHE)

    return web.get(url + "/{path:.+}", handler)


def routes() -> list[web.RouteDef]:
    pages = [_file("/" + p.name, p) for p in sorted(STATIC_DIR.glob("*")) if p.is_file()]
    return [
        _file("/", STATIC_DIR / "index.html"),
        _file("/vendor/hls.min.js", HLS_DIST / "hls.min.js", "text/javascript"),
        _file("/vendor/hls.mjs", HLS_DIST / "hls.min.mjs", "text/javascript"),
        _file("/vendor/dash.all.min.js", DASH_DIST / "dash.all.min.js", "text/javascript"),
        _tree("/js", STATIC_DIR / "js"),  # the pages' ES modules
        *pages,
    ]
