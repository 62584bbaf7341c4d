"""`POST /upload/{videoId}` (raw or multipart, one segment per call, or `?mode=vod` a
whole recording) and `.../end`.

An upload is streamed to a temp file, checked (a retry, a conflict, decodable media), moved
into the store and recorded before the answer, so a 202 means it is on disk.
"""

from __future__ import annotations

import contextlib
import errno
import logging
from collections.abc import Iterator
from pathlib import Path

import aiofiles
from aiohttp import web

from streamd.access import bearer_key
from streamd.appkeys import (
    CLOCK,
    CONFIG,
    JOBS,
    METRICS,
    PUBLISHERS,
    STORE,
    STREAMS,
    UPLOAD_SLOTS,
)
from streamd.errors import (
    BadRequest,
    Handler,
    StorageError,
    StreamdError,
    Unavailable,
)
from streamd.ingest import recording
from streamd.ingest.receive import Received, discard, ensure_space, receive
from streamd.model import layout
from streamd.model.jobs import MediaLimits
from streamd.model.protection import QUERY as ENCRYPTION
from streamd.model.stream import Upload

log = logging.getLogger("streamd.ingest")
SESSION_HEADER = "X-Publish-Session"


def authorize(request: web.Request) -> str:
    """The stream's id, once the request's key may publish to it (before any body is read:
    a refused publisher writes nothing)."""
    video_id = layout.check_video_id(request.match_info["video_id"])
    key = bearer_key(request.headers.get("Authorization"))
    request.app[PUBLISHERS].check(video_id, key)
    return video_id


def incoming_dir(app: web.Application) -> Path:
    """Where request bodies are written before they are checked."""
    path = app[CONFIG].data_dir / ".incoming"
    path.mkdir(parents=True, exist_ok=True)
    return path


async def receive_upload(request: web.Request) -> Received:
    config = request.app[CONFIG]
    directory = incoming_dir(request.app)
    await ensure_space(directory, config.min_free_bytes)
    up = config.upload
    return await receive(
        request, directory, up.max_bytes, up.idle_timeout_s, up.min_rate_bytes_per_s
    )


def segment_number(request: web.Request, received: Received) -> int | None:
    for source, value in (
        ("X-Segment-Number header", request.headers.get("X-Segment-Number")),
        ("segment query", request.query.get("segment")),
        ("segment form field", received.segment_field),
    ):
        if value is None or value == "":
            continue
        if not (value.isascii() and value.isdigit()) or len(value) > 9:  # "¹".isdigit()
            raise BadRequest(
                f"bad segment number {value[:20]!r} in the {source}", "a whole number from 0"
            )
        return int(value)
    return None


def _session(request: web.Request) -> str | None:
    """The encoder session an upload belongs to (`X-Publish-Session`): a new value says the
    encoder restarted, so the stream goes on with a new timeline."""
    value = request.headers.get(SESSION_HEADER)
    if value is None:
        return None
    if not (0 < len(value) <= 64 and value.isascii() and value.isprintable()):
        raise BadRequest(f"bad {SESSION_HEADER} header", "1 to 64 printable ASCII characters")
    return value


async def accept(
    app: web.Application,
    video_id: str,
    number: int | None,
    received: Received,
    prefix_keys: tuple[str, ...] = (),
    encryption: str | None = None,
    *,
    session: str | None = None,
    names_restart: bool = False,
) -> web.Response:
    """Check a received upload and record it (or answer a retry); 202 once it is on disk.

    `number` counts within the encoder's `session`; with `names_restart` (ffmpeg's HLS PUT,
    whose names are the only sign of a restart) a number 0 with new bytes starts a session.
    """
    streams, store, config = app[STREAMS], app[STORE], app[CONFIG]
    arrived_wall_s = app[CLOCK].wall_s()  # the body is in: publish delays count from here
    runner = streams.for_upload(video_id, encryption)
    try:
        async with runner.lock:
            stream = runner.stream
            if (
                names_restart
                and number is not None
                and stream.counting_again(number, received.sha256)
            ):
                session = f"restart-{stream.highest_upload + 1}"
            number = stream.upload_number(session, number)
            existing = runner.existing_upload(number, received.sha256)
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
            limits = MediaLimits.of(config.upload)
            info = await app[JOBS].probe(source, config.upload.probe_timeout_s, limits)
            key = layout.upload_key(video_id, number, received.extension)
            try:
                await store.put_file(key, received.path)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise StorageError("the disk is full", "the upload was not kept") from exc
                raise
            upload = Upload(
                number,
                received.sha256,
                received.size_bytes,
                (*prefix_keys, key),
                arrived_wall_s,
                source=info.as_json(),
                session_start=number == stream.session_first,
            )
            await runner.add_upload(upload)
            app[METRICS].uploads.labels("accepted").inc()
            app[METRICS].upload_bytes.inc(received.size_bytes)
    except BaseException:
        streams.forget_if_empty(video_id)  # never keep a stream that got nothing
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
    """POST /upload/{videoId}: one segment per call (?encryption=aes-128 on the first), or
    (?mode=vod) a whole recording."""
    video_id = authorize(request)
    encryption = request.query.get(ENCRYPTION)
    request.app[STREAMS].refuse_if_ended(video_id)
    request.app[STREAMS].check_encryption(video_id, encryption)
    mode = request.query.get("mode", "live")
    if mode == "vod":
        return await recording.upload(request, video_id, encryption, incoming_dir(request.app))
    if mode != "live":
        raise BadRequest(f"unknown mode {mode[:20]!r}", "use live (segments) or vod")
    received = await receive_upload(request)
    try:
        number = segment_number(request, received)
        return await accept(
            request.app,
            video_id,
            number,
            received,
            encryption=encryption,
            session=_session(request),
        )
    finally:
        await discard(received.path)


async def end(request: web.Request) -> web.Response:
    """POST /upload/{videoId}/end: no more segments; playlists get EXT-X-ENDLIST."""
    runner = request.app[STREAMS].runner(authorize(request))
    await runner.end()
    stream = runner.stream
    return web.json_response(
        {
            "videoId": stream.video_id,
            "state": "ended" if stream.ended else "ending",
            "segments": len(stream.segments),
        },
        status=202,
    )


class UploadSlots:
    """How many uploads are being received and checked at once: past the limit, 503 with
    Retry-After, so a burst (or many slow senders) cannot hold the disk and the prober."""

    def __init__(self, limit: int) -> None:
        self.limit, self.busy = limit, 0

    @contextlib.contextmanager
    def take(self) -> Iterator[None]:
        if self.busy >= self.limit:
            raise Unavailable(
                "too many uploads at once",
                f"upload.max_concurrent is {self.limit}; try again shortly",
                retry_after_s=1,
            )
        self.busy += 1
        try:
            yield
        finally:
            self.busy -= 1


def counted(handler: Handler) -> Handler:
    """An upload route: within the upload slots, refusals counted by their error code
    (accepted uploads are counted in `accept`)."""

    async def counted(request: web.Request) -> web.StreamResponse:
        try:
            with request.app[UPLOAD_SLOTS].take():
                return await handler(request)
        except StreamdError as exc:
            request.app[METRICS].uploads.labels(exc.code).inc()
            raise

    return counted


async def resumable(request: web.Request) -> web.Response:
    """`/upload/{videoId}/recording`: a resumable recording (tus), as `streamd.ingest.recording`
    says: HEAD its offset, PATCH more of it, DELETE it; OPTIONS what the server speaks."""
    if request.method == "OPTIONS":
        return recording.options()
    video_id = authorize(request)
    directory = recording.resumable_dir(request.app)
    if request.method == "HEAD":
        return await recording.offset(request, video_id, directory)
    if request.method == "DELETE":
        return await recording.terminate(request, video_id, directory)
    return await recording.append(request, video_id, directory)


def routes() -> list[web.RouteDef]:
    return [
        web.post("/upload/{video_id}", counted(upload)),
        web.post("/upload/{video_id}/end", end),
        web.patch("/upload/{video_id}/recording", counted(resumable)),
        web.head("/upload/{video_id}/recording", resumable),
        web.delete("/upload/{video_id}/recording", resumable),
        web.options("/upload/{video_id}/recording", resumable),
    ]
