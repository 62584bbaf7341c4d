"""What `ffmpeg -f hls -method PUT http://HOST/upload/ID/index.m3u8` sends: `indexN.ts` (or
`init.mp4` and `indexN.m4s`), then the playlist, whose EXT-X-ENDLIST ends the stream once
every segment it names has arrived. Each segment goes through the same checks as a POST."""

from __future__ import annotations

import asyncio
import contextlib
import re

from aiohttp import web

from streamd.appkeys import STORE, STREAMS
from streamd.errors import BadRequest, UnsupportedMedia
from streamd.ingest.http import accept, authorize, counted, receive_upload
from streamd.ingest.receive import discard
from streamd.model import layout
from streamd.model.protection import QUERY as ENCRYPTION

INIT_WAIT_S = 10.0
# At most 9 digits: a segment number is a small int, never a 5,000-digit one to convert.
_FFMPEG_SEGMENT = re.compile(
    r"^(?P<stem>.*?)(?<!\d)(?P<number>\d{1,9})\.(?P<ext>ts|m4s|mp4|aac|m2ts)$"
)


def parse_pushed_playlist(text: str) -> tuple[list[int], bool]:
    """The segment numbers an ffmpeg playlist names, and whether it has ended."""
    numbers = [
        int(m["number"])
        for line in text.splitlines()
        if line
        and not line.startswith("#")
        # Names may be URLs with a query (-hls_segment_filename '...%d.ts?encryption=...').
        and (m := _FFMPEG_SEGMENT.match(line.strip().split("?", 1)[0].rsplit("/", 1)[-1]))
    ]
    return numbers, "#EXT-X-ENDLIST" in text


async def ffmpeg_put(request: web.Request) -> web.Response:
    """PUT/POST /upload/{videoId}/{name}: what `ffmpeg -f hls -method PUT` sends."""
    video_id = authorize(request)
    name = request.match_info["name"]
    streams = request.app[STREAMS]
    if name.endswith(".m3u8"):
        text = (await request.content.read(1 << 20)).decode("utf-8", "replace")
        numbers, ended = parse_pushed_playlist(text)
        if ended and numbers:
            if video_id in streams.records:
                runner = streams.runners[video_id]
                await runner.end_after(runner.stream.session_base + max(numbers))
        return web.json_response({"videoId": video_id, "playlist": name, "ended": ended})
    match = _FFMPEG_SEGMENT.match(name)
    init = match is None and name.endswith(".mp4")
    if match is None and not init:
        raise BadRequest(
            f"cannot tell the segment number from {name[:80]!r}",
            "name segments like index12.ts, or POST to /upload/{videoId}",
        )
    streams.refuse_if_ended(video_id)
    encryption = request.query.get(ENCRYPTION)  # as on a POST: the first request's counts
    streams.check_encryption(video_id, encryption)
    received = await receive_upload(request)
    try:
        runner = streams.for_upload(video_id, encryption)
        if init:
            key = layout.ingest_init_key(video_id, f"init-{received.sha256[:12]}.mp4")
            await request.app[STORE].put_file(key, received.path)
            await runner.set_ingest_init(key)
            return web.json_response({"videoId": video_id, "init": name}, status=201)
        assert match is not None
        prefix: tuple[str, ...] = ()
        if match["ext"] == "m4s":
            # ffmpeg doesn't wait for answers, so its init.mp4 PUT may still be on its way.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(runner.init_arrived.wait(), INIT_WAIT_S)
            if runner.stream.ingest_init is None:
                raise UnsupportedMedia("an fMP4 segment arrived without its init.mp4")
            prefix = (runner.stream.ingest_init,)
        number = int(match["number"])
        return await accept(
            request.app, video_id, number, received, prefix, encryption, names_restart=True
        )
    finally:
        await discard(received.path)


async def ffmpeg_delete(request: web.Request) -> web.Response:
    """ffmpeg's `delete_segments` asks to drop old segments; streamd keeps them for DVR."""
    authorize(request)
    return web.Response(status=204)


def routes() -> list[web.RouteDef]:
    return [
        web.put("/upload/{video_id}/{name}", counted(ffmpeg_put)),
        web.post("/upload/{video_id}/{name}", counted(ffmpeg_put)),
        web.delete("/upload/{video_id}/{name}", ffmpeg_delete),
    ]
