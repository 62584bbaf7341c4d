"""`POST /upload/{videoId}/audio?lang=xx[&name=...][&segment=N]`: a commentary in another
language for the time of video upload N (the stream's latest when absent), in any container
with an audio track. It becomes that language's audio rendition (streamd.streams.audio),
encoded once its video upload is published; uploads it has nothing for are silent there.
"""

from __future__ import annotations

import logging

from aiohttp import web

from streamd.appkeys import CONFIG, JOBS, STORE, STREAMS
from streamd.errors import BadRequest, NotFound
from streamd.ingest.captions import check_lang
from streamd.ingest.http import authorize, receive_upload, segment_number
from streamd.ingest.receive import discard
from streamd.model.jobs import MediaLimits

log = logging.getLogger("streamd.ingest.audio")


async def audio(request: web.Request) -> web.Response:
    """An audio upload for one video upload's time, in `?lang=`."""
    video_id = authorize(request)
    lang = check_lang(request.query.get("lang", ""))
    name = request.query.get("name", "")[:64]
    streams, config, store = request.app[STREAMS], request.app[CONFIG], request.app[STORE]
    if video_id not in streams.records:
        raise NotFound(f"no stream {video_id!r}", "audio goes with a stream's video")
    stream = streams.get(video_id)
    received = await receive_upload(request)
    try:
        number = segment_number(request, received)
        if number is None:
            if stream.highest_upload < 0:
                raise BadRequest("no video upload to add audio to", "send ?segment=N")
            number = stream.highest_upload
        else:
            number += stream.session_base  # as the encoder numbers its video uploads
        limits = MediaLimits.of(config.upload)
        duration_s = await request.app[JOBS].probe_audio(
            received.path, config.upload.probe_timeout_s, limits
        )

        async def keep(key: str) -> None:
            await store.put_file(key, received.path)

        rendition = await streams.add_commentary(video_id, lang, name, number, keep)
    finally:
        await discard(received.path)
    return web.json_response(
        {
            "videoId": video_id,
            "lang": lang,
            "segment": number,
            "rendition": rendition,
            "durationS": duration_s,
        },
        status=202,
    )


def routes() -> list[web.RouteDef]:
    return [web.post("/upload/{video_id}/audio", audio)]
