"""Ingest: how media comes in. HTTP uploads (`http`) and ffmpeg's HLS PUT (`ffmpeg`) today;
RTMP, SRT and chunked HTTP will sit beside them, all handing uploads to `streamd.streams`."""

from aiohttp import web

from streamd.ingest import ffmpeg, http


def routes() -> list[web.RouteDef]:
    return [*http.routes(), *ffmpeg.routes()]
