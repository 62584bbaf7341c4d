"""A recording uploaded whole (`POST /upload/{videoId}?mode=vod`): in one request (raw or
multipart), or resumable with the tus protocol (https://tus.io/protocols/resumable-upload,
core and creation), which tus clients (tus-js-client, Uppy, tuspy) and `streamd push --vod`
speak: a multi-gigabyte file survives a dropped connection, and even a server restart.

Either way the file is streamed to disk (never held in RAM), checked by the prober with the
recording limits, indexed by keyframe, stored and planned as pieces
(`streamd.model.recording`) that every worker transcodes at once.

tus: `POST /upload/{videoId}?mode=vod` with `Tus-Resumable: 1.0.0`, `Upload-Length` and no
body creates the upload at `/upload/{videoId}/recording` (201, `Location`); `HEAD` there
says how much has arrived (`Upload-Offset`), `PATCH` appends at that offset; the `PATCH`
that completes it is answered once the recording is accepted. The bytes so far and the
upload's length wait in `.resumable/` in the data dir.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
from dataclasses import replace
from pathlib import Path

import aiofiles
import aiofiles.os
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from streamd.appkeys import CLOCK, CONFIG, JOBS, METRICS, STORE, STREAMS
from streamd.errors import BadRequest, Conflict, NotFound, StreamdError, UploadTooLarge
from streamd.ingest.receive import CHUNK, Received, discard, ensure_space, extension, receive
from streamd.model import layout
from streamd.model.jobs import MediaLimits
from streamd.model.recording import plan_pieces
from streamd.model.stream import RECORDING, Upload

log = logging.getLogger("streamd.ingest.recording")
TUS_VERSION = "1.0.0"
TUS_HEADERS = {"Tus-Resumable": TUS_VERSION, "Cache-Control": "no-store"}
OFFSET_TYPE = "application/offset+octet-stream"


class UnsupportedMediaType(StreamdError):
    status = 415
    code = "unsupported_media_type"


async def upload(
    request: web.Request, video_id: str, encryption: str | None, directory: Path
) -> web.Response:
    """`POST /upload/{videoId}?mode=vod`: the whole file in this request, or (tus) the
    creation of a resumable upload."""
    if TUS_VERSION == request.headers.get("Tus-Resumable"):
        return await _create(request, video_id, encryption, resumable_dir(request.app))
    config = request.app[CONFIG]
    up = config.upload
    await ensure_space(directory, config.min_free_bytes)
    received = await receive(
        request, directory, up.max_recording_bytes, up.idle_timeout_s, up.min_rate_bytes_per_s
    )
    try:
        return await accept(request.app, video_id, received, encryption)
    finally:
        await discard(received.path)


async def accept(
    app: web.Application, video_id: str, received: Received, encryption: str | None
) -> web.Response:
    """Check a received recording and plan its pieces; 202 once it is stored."""
    config, jobs, store, streams = app[CONFIG], app[JOBS], app[STORE], app[STREAMS]
    up = config.upload
    arrived_wall_s = app[CLOCK].wall_s()
    runner = streams.for_upload(video_id, encryption)
    try:
        async with runner.lock:
            if runner.stream.uploads:
                raise Conflict(
                    f"stream {video_id!r} has uploads already",
                    "a recording (?mode=vod) makes a stream of its own: use a new videoId",
                )
            limits = replace(MediaLimits.of(up), max_duration_s=up.max_recording_s)
            info = await jobs.probe(received.path, up.probe_timeout_s, limits)
            # Reading every packet of a long file: seconds per gigabyte.
            timeout_s = up.probe_timeout_s + received.size_bytes / 50e6
            index = await jobs.keyframes(received.path, timeout_s)
            key = layout.recording_key(video_id, received.extension)
            await store.put_file(key, received.path)
            planned = plan_pieces(
                index.times, index.end_s, info.frame_rate, runner.settings, jobs.transcoders
            )
            pieces = [
                Upload(
                    i,
                    received.sha256,
                    received.size_bytes if i == 0 else 0,
                    (key,),
                    arrived_wall_s,
                    source={**info.as_json(), "piece": plan.as_json()},
                    ingest=RECORDING,
                )
                for i, plan in enumerate(planned)
            ]
            await runner.add_recording(pieces)
    except BaseException:
        streams.forget_if_empty(video_id)
        raise
    app[METRICS].uploads.labels("accepted").inc()
    app[METRICS].upload_bytes.inc(received.size_bytes)
    duration_s = index.end_s - index.times[0]
    log.info(
        "%s recording accepted: %d bytes, %.1f s of %dx%d %s, %d pieces",
        video_id,
        received.size_bytes,
        duration_s,
        info.geometry.width,
        info.geometry.height,
        info.video_codec,
        len(pieces),
    )
    return web.json_response(
        {
            "videoId": video_id,
            "mode": "vod",
            "state": "transcoding",
            "pieces": len(pieces),
            "durationS": round(duration_s, 3),
            "source": info.as_json(),
        },
        status=202,
    )


# -- tus -----------------------------------------------------------------------------------
def resumable_dir(app: web.Application) -> Path:
    """Where resumable uploads wait for their next bytes: kept across restarts (unlike the
    incoming directory of bodies cut off)."""
    path: Path = app[CONFIG].data_dir / ".resumable"
    path.mkdir(parents=True, exist_ok=True)
    return path


def forget_stale(directory: Path, keep_s: float, now_s: float) -> list[str]:
    """Remove resumable uploads untouched for `keep_s` (at start-up); their video ids."""
    gone = []
    for meta in directory.glob("tus-*.json"):
        part = meta.with_suffix(".part")
        touched = max((p.stat().st_mtime for p in (meta, part) if p.exists()), default=0.0)
        if now_s - touched > keep_s:
            part.unlink(missing_ok=True)
            meta.unlink(missing_ok=True)
            gone.append(meta.stem.removeprefix("tus-"))
    return gone


def _paths(directory: Path, video_id: str) -> tuple[Path, Path]:
    """The bytes so far, and what the upload is (its length, name, encryption)."""
    return directory / f"tus-{video_id}.part", directory / f"tus-{video_id}.json"


def _length(request: web.Request, limit: int) -> int:
    value = request.headers.get("Upload-Length", "")
    if not (value.isascii() and value.isdigit()) or len(value) > 15:
        raise BadRequest("a tus creation needs Upload-Length", "the file's size in bytes")
    length = int(value)
    if length > limit:
        raise UploadTooLarge("the recording is too large", f"the limit is {limit} bytes")
    if length == 0:
        raise BadRequest("empty recording", "Upload-Length is 0")
    return length


def _filename(metadata: str) -> str | None:
    """The `filename` of tus Upload-Metadata (key and base64 value pairs)."""
    for pair in metadata.split(","):
        key, _, value = pair.strip().partition(" ")
        if key == "filename" and value:
            with contextlib.suppress(ValueError):
                return base64.b64decode(value, validate=True).decode("utf-8", "replace")
    return None


async def _create(
    request: web.Request, video_id: str, encryption: str | None, directory: Path
) -> web.Response:
    config = request.app[CONFIG]
    await ensure_space(directory, config.min_free_bytes)
    length = _length(request, config.upload.max_recording_bytes)
    if request.app[STREAMS].records.get(video_id) is not None:
        raise Conflict(
            f"stream {video_id!r} exists already",
            "a recording (?mode=vod) makes a stream of its own: use a new videoId",
        )
    part, meta = _paths(directory, video_id)
    about = {
        "length": length,
        "filename": _filename(request.headers.get("Upload-Metadata", "")),
        "encryption": encryption,
    }
    async with aiofiles.open(meta, "w") as f:
        await f.write(json.dumps(about))
    async with aiofiles.open(part, "wb"):
        pass  # a new upload starts empty (one made before for this id is replaced)
    location = f"/upload/{video_id}/recording"
    log.info("%s: resumable recording of %d bytes created", video_id, length)
    return web.Response(status=201, headers={**TUS_HEADERS, "Location": location})


async def _about(directory: Path, video_id: str) -> tuple[Path, dict[str, object], int]:
    part, meta = _paths(directory, video_id)
    try:
        async with aiofiles.open(meta) as f:
            about = json.loads(await f.read())
        offset = (await aiofiles.os.stat(part)).st_size
    except (FileNotFoundError, ValueError) as exc:
        raise NotFound(
            f"no resumable recording for {video_id!r}", "create one: POST ?mode=vod"
        ) from exc
    return part, about, offset


async def offset(request: web.Request, video_id: str, directory: Path) -> web.Response:
    """tus HEAD: how much of the upload has arrived."""
    _, about, at = await _about(directory, video_id)
    headers = {**TUS_HEADERS, "Upload-Offset": str(at), "Upload-Length": str(about["length"])}
    return web.Response(status=200, headers=headers)


async def append(request: web.Request, video_id: str, directory: Path) -> web.Response:
    """tus PATCH: bytes at the upload's offset; the last of them make it a recording."""
    if request.content_type != OFFSET_TYPE:
        raise UnsupportedMediaType(f"a tus PATCH is {OFFSET_TYPE}", f"got {request.content_type}")
    part, about, at = await _about(directory, video_id)
    length = int(str(about["length"]))
    claimed = request.headers.get("Upload-Offset", "")
    if claimed != str(at):
        raise Conflict(
            f"Upload-Offset {claimed[:20]!r} is not where the upload is",
            f"{at} bytes have arrived: HEAD tells, PATCH from there",
        )
    idle_s = request.app[CONFIG].upload.idle_timeout_s
    fd = await asyncio.to_thread(os.open, part, os.O_WRONLY | os.O_APPEND)
    try:
        async with aiofiles.open(fd, "ab") as out:
            while True:
                async with asyncio.timeout(idle_s):
                    chunk = await request.content.read(CHUNK)
                if not chunk:
                    break
                if at + len(chunk) > length:
                    raise BadRequest("more bytes than Upload-Length", f"it is {length}")
                await out.write(chunk)
                at += len(chunk)
    except (TimeoutError, ConnectionError, HttpProcessingError):
        pass  # what arrived is kept: the client asks HEAD and goes on from there
    headers = {**TUS_HEADERS, "Upload-Offset": str(at)}
    if at < length:
        return web.Response(status=204, headers=headers)
    received = await _received(part, about)
    try:
        await accept(request.app, video_id, received, _optional(about["encryption"]))
    finally:  # accepted, or refused for what it holds: nothing to resume either way
        await discard(part)
        await discard(_paths(directory, video_id)[1])
    return web.Response(status=204, headers=headers)


async def terminate(request: web.Request, video_id: str, directory: Path) -> web.Response:
    """tus DELETE: give up an upload (its bytes are removed)."""
    part, _, _ = await _about(directory, video_id)
    await discard(part)
    await discard(_paths(directory, video_id)[1])
    return web.Response(status=204, headers=TUS_HEADERS)


def options() -> web.Response:
    """tus OPTIONS: what this server speaks."""
    return web.Response(
        status=204,
        headers={
            "Tus-Resumable": TUS_VERSION,
            "Tus-Version": TUS_VERSION,
            "Tus-Extension": "creation,termination",
        },
    )


async def _received(part: Path, about: dict[str, object]) -> Received:
    """The finished upload, hashed (off the loop: a recording is gigabytes)."""

    def digest() -> tuple[str, bytes]:
        sha = hashlib.sha256()
        with part.open("rb") as f:
            head = f.read(16)
            sha.update(head)
            while chunk := f.read(1 << 20):
                sha.update(chunk)
        return sha.hexdigest(), head

    sha256, head = await asyncio.to_thread(digest)
    size = (await aiofiles.os.stat(part)).st_size
    return Received(part, sha256, size, extension(head, _optional(about.get("filename"))))


def _optional(value: object) -> str | None:
    return None if value is None else str(value)
