"""Receiving uploads: `POST /upload/{videoId}` (raw or multipart), ffmpeg's HLS PUTs, `end`.

An upload is streamed to a temp file, checked (a retry, a conflict, decodable media), moved
into the store and recorded before the answer, so a 202 means it is on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import aiofiles
import aiofiles.os
from aiohttp import BodyPartReader, web

from streamd import layout
from streamd.appkeys import CLOCK, CONFIG, JOBS, METRICS, SCHEDULER, STORE
from streamd.errors import (
    BadRequest,
    Handler,
    RequestTimeout,
    StreamdError,
    UnsupportedMedia,
    UploadTooLarge,
)
from streamd.streams import Upload

log = logging.getLogger("streamd.ingest")
CHUNK = 256 * 1024
INIT_WAIT_S = 10.0
_FFMPEG_SEGMENT = re.compile(r"^(?P<stem>.*?)(?P<number>\d+)\.(?P<ext>ts|m4s|mp4|aac|m2ts)$")
_SNIFF = [(b"\x1a\x45\xdf\xa3", "mkv"), (b"FLV", "flv"), (b"RIFF", "avi"), (b"G", "ts")]


@dataclass(frozen=True)
class Received:
    """An upload body on local disk, with what the request said about it."""

    path: Path
    sha256: str
    size_bytes: int
    extension: str
    segment_field: str | None = None


def _extension(head: bytes, filename: str | None) -> str:
    if filename and "." in filename:
        ext = filename.rsplit(".", 1)[1].lower()
        if re.fullmatch(r"[a-z0-9]{1,5}", ext):
            return ext
    if head[4:8] in (b"ftyp", b"styp", b"moov", b"moof"):
        return "mp4"
    return next((ext for magic, ext in _SNIFF if head.startswith(magic)), "bin")


async def _receive(
    request: web.Request, directory: Path, max_bytes: int, idle_s: float
) -> Received:
    """Stream the body (raw, or the `file` part of a multipart form) to a temp file."""
    fd, name = tempfile.mkstemp(dir=directory, prefix="upload-")
    path = Path(name)
    digest, size, head = hashlib.sha256(), 0, b""
    filename = request.headers.get("X-Segment-Filename")
    segment_field = None
    try:
        async with aiofiles.open(fd, "wb") as out:

            async def write(chunk: bytes) -> None:
                nonlocal size, head
                size += len(chunk)
                if size > max_bytes:
                    raise UploadTooLarge("upload too large", f"the limit is {max_bytes} bytes")
                if len(head) < 16:
                    head += chunk[: 16 - len(head)]
                digest.update(chunk)
                await out.write(chunk)

            if request.content_type == "multipart/form-data":
                found = False
                reader = await request.multipart()
                async for part in reader:
                    if not isinstance(part, BodyPartReader):
                        continue
                    if part.name == "file":
                        found, filename = True, part.filename or filename
                        while True:
                            async with asyncio.timeout(idle_s):
                                chunk = await part.read_chunk(CHUNK)
                            if not chunk:
                                break
                            await write(chunk)
                    elif part.name == "segment":
                        segment_field = (await part.text()).strip()
                if not found:
                    raise BadRequest("multipart upload without a `file` part")
            else:
                while True:
                    async with asyncio.timeout(idle_s):
                        chunk = await request.content.read(CHUNK)
                    if not chunk:
                        break
                    await write(chunk)
    except TimeoutError as exc:
        await _discard(path)
        raise RequestTimeout("the upload stalled", f"no data for {idle_s:g} s") from exc
    except BaseException:
        await _discard(path)
        raise
    if size == 0:
        await _discard(path)
        raise BadRequest("empty upload", "send the segment's bytes as the request body")
    return Received(path, digest.hexdigest(), size, _extension(head, filename), segment_field)


async def _discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        await aiofiles.os.remove(path)


def _number(request: web.Request, received: Received) -> int | None:
    for source, value in (
        ("X-Segment-Number header", request.headers.get("X-Segment-Number")),
        ("segment query", request.query.get("segment")),
        ("segment form field", received.segment_field),
    ):
        if value is None or value == "":
            continue
        if not value.isdigit() or len(value) > 9:
            raise BadRequest(
                f"bad segment number {value[:20]!r} in the {source}", "a whole number from 0"
            )
        return int(value)
    return None


async def _accept(
    app: web.Application,
    video_id: str,
    number: int | None,
    received: Received,
    prefix_keys: tuple[str, ...] = (),
) -> web.Response:
    sched, store, config = app[SCHEDULER], app[STORE], app[CONFIG]
    arrived_wall_s = app[CLOCK].wall_s()  # the body is in: publish delays count from here
    stream = sched.stream_for_upload(video_id)
    try:
        async with stream.lock:
            number = stream.next_number() if number is None else number
            existing = sched.existing_upload(stream, number, received.sha256)
            if existing is not None:
                app[METRICS].uploads.labels("duplicate").inc()
                return web.json_response(
                    {
                        "videoId": video_id,
                        "segment": number,
                        "state": existing.state,
                        "duplicate": True,
                    }
                )
            if prefix_keys:
                parts = [await store.get(k) for k in prefix_keys]
                async with aiofiles.open(received.path, "rb") as f:
                    source: Path | bytes = b"".join(parts) + await f.read()
            else:
                source = received.path
            info = await app[JOBS].probe(source, config.upload.probe_timeout_s)
            key = layout.upload_key(video_id, number, received.extension)
            await store.put_file(key, received.path)
            upload = Upload(
                number,
                received.sha256,
                received.size_bytes,
                (*prefix_keys, key),
                arrived_wall_s,
                source=info.as_json(),
            )
            await sched.add_upload(stream, upload)
            app[METRICS].uploads.labels("accepted").inc()
            app[METRICS].upload_bytes.inc(received.size_bytes)
    except BaseException:
        if not stream.uploads and not stream.segments:
            sched.streams.pop(video_id, None)  # never keep a stream that got nothing
        raise
    log.info(
        "%s upload %d accepted: %d bytes, %s %dx%d %s, %s",
        video_id,
        number,
        received.size_bytes,
        info.container.split(",")[0],
        info.geometry.width,
        info.geometry.height,
        info.video_codec,
        upload.state,
    )
    return web.json_response(
        {"videoId": video_id, "segment": number, "state": upload.state, "source": info.as_json()},
        status=202,
    )


async def upload(request: web.Request) -> web.Response:
    """POST /upload/{videoId}: one segment per call."""
    video_id = layout.check_video_id(request.match_info["video_id"])
    sched, config = request.app[SCHEDULER], request.app[CONFIG]
    sched.refuse_if_ended(video_id)
    received = await _receive(
        request, sched.incoming_dir(), config.upload.max_bytes, config.upload.idle_timeout_s
    )
    try:
        return await _accept(request.app, video_id, _number(request, received), received)
    finally:
        await _discard(received.path)


async def end(request: web.Request) -> web.Response:
    """POST /upload/{videoId}/end: no more segments; playlists get EXT-X-ENDLIST."""
    stream = await request.app[SCHEDULER].end(request.match_info["video_id"])
    return web.json_response(
        {
            "videoId": stream.video_id,
            "state": "ended" if stream.ended else "ending",
            "segments": len(stream.segments),
        },
        status=202,
    )


async def ffmpeg_put(request: web.Request) -> web.Response:
    """PUT/POST /upload/{videoId}/{name}: what `ffmpeg -f hls -method PUT` sends."""
    video_id = layout.check_video_id(request.match_info["video_id"])
    name = request.match_info["name"]
    sched, config = request.app[SCHEDULER], request.app[CONFIG]
    if name.endswith(".m3u8"):
        text = (await request.content.read(1 << 20)).decode("utf-8", "replace")
        numbers = [
            int(m["number"])
            for line in text.splitlines()
            if line
            and not line.startswith("#")
            and (m := _FFMPEG_SEGMENT.match(line.strip().rsplit("/", 1)[-1]))
        ]
        ended = "#EXT-X-ENDLIST" in text
        if ended and numbers:
            await sched.end_after(video_id, max(numbers))
        return web.json_response({"videoId": video_id, "playlist": name, "ended": ended})
    match = _FFMPEG_SEGMENT.match(name)
    init = match is None and name.endswith(".mp4")
    if match is None and not init:
        raise BadRequest(
            f"cannot tell the segment number from {name[:80]!r}",
            "name segments like index12.ts, or POST to /upload/{videoId}",
        )
    sched.refuse_if_ended(video_id)
    received = await _receive(
        request, sched.incoming_dir(), config.upload.max_bytes, config.upload.idle_timeout_s
    )
    try:
        stream = sched.stream_for_upload(video_id)
        if init:
            key = layout.ingest_init_key(video_id, f"init-{received.sha256[:12]}.mp4")
            await request.app[STORE].put_file(key, received.path)
            stream.ingest_init = key
            stream.init_arrived.set()
            return web.json_response({"videoId": video_id, "init": name}, status=201)
        assert match is not None
        prefix: tuple[str, ...] = ()
        if match["ext"] == "m4s":
            # ffmpeg doesn't wait for answers, so its init.mp4 PUT may still be on its way.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stream.init_arrived.wait(), INIT_WAIT_S)
            if stream.ingest_init is None:
                raise UnsupportedMedia("an fMP4 segment arrived without its init.mp4")
            prefix = (stream.ingest_init,)
        return await _accept(request.app, video_id, int(match["number"]), received, prefix)
    finally:
        await _discard(received.path)


async def ffmpeg_delete(request: web.Request) -> web.Response:
    """ffmpeg's `delete_segments` asks to drop old segments; streamd keeps them for DVR."""
    layout.check_video_id(request.match_info["video_id"])
    return web.Response(status=204)


def _counted(handler: Handler) -> Handler:
    """Count refused uploads by their error code (accepted ones are counted in _accept)."""

    async def counted(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except StreamdError as exc:
            request.app[METRICS].uploads.labels(exc.code).inc()
            raise

    return counted


def routes() -> list[web.RouteDef]:
    return [
        web.post("/upload/{video_id}", _counted(upload)),
        web.post("/upload/{video_id}/end", end),
        web.put("/upload/{video_id}/{name}", _counted(ffmpeg_put)),
        web.post("/upload/{video_id}/{name}", _counted(ffmpeg_put)),
        web.delete("/upload/{video_id}/{name}", ffmpeg_delete),
    ]
