"""Ingest: how media comes in. Segment uploads (`http`), ffmpeg's HLS PUT (`ffmpeg`), live
sessions over RTMP (`rtmp`) and chunked HTTP (`chunked`), and captions (`captions`), all
handing their media to `streamd.streams` (a live session to its stream's `LiveFeed`)."""

from aiohttp import web

from streamd.ingest import audio, captions, chunked, ffmpeg, http


def routes() -> list[web.RouteDef]:
    return [
        *http.routes(),
        *captions.routes(),
        *audio.routes(),
        *ffmpeg.routes(),
        *chunked.routes(),
    ]
