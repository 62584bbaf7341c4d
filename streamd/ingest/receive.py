"""Receiving an upload's body: streamed to a temp file (raw, or the `file` part of a
multipart form) with its hash, size and a sniffed extension, within the size and idle
limits. Nothing is kept in RAM whole."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiofiles
import aiofiles.os
from aiohttp import BodyPartReader, web

from streamd.errors import BadRequest, RequestTimeout, StorageError, UploadTooLarge

CHUNK = 256 * 1024
_SNIFF = [(b"\x1a\x45\xdf\xa3", "mkv"), (b"FLV", "flv"), (b"RIFF", "avi"), (b"G", "ts")]


@dataclass(frozen=True)
class Received:
    """An upload body on local disk, with what the request said about it."""

    path: Path
    sha256: str
    size_bytes: int
    extension: str
    segment_field: str | None = None


def extension(head: bytes, filename: str | None) -> str:
    """A file's extension: from its name if it has one, else sniffed from its first bytes."""
    if filename and "." in filename:
        ext = filename.rsplit(".", 1)[1].lower()
        if re.fullmatch(r"[a-z0-9]{1,5}", ext):
            return ext
    if head[4:8] in (b"ftyp", b"styp", b"moov", b"moof"):
        return "mp4"
    return next((ext for magic, ext in _SNIFF if head.startswith(magic)), "bin")


async def receive(
    request: web.Request,
    directory: Path,
    max_bytes: int,
    idle_s: float,
    min_rate_bytes_per_s: float = 0.0,
) -> Received:
    """Stream the body (raw, or the `file` part of a multipart form) to a temp file.

    A body that stalls for `idle_s` is cut; so is one that, after its first `idle_s`, comes
    slower than `min_rate_bytes_per_s` on average (a trickle of a byte per idle timeout
    would otherwise hold an upload slot until `max_bytes`)."""
    started = time.monotonic()

    def wait_s() -> float:
        if not min_rate_bytes_per_s:
            return idle_s
        due = started + idle_s + size / min_rate_bytes_per_s  # moves on with every byte
        return max(0.0, min(idle_s, due - time.monotonic()))

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
                            async with asyncio.timeout(wait_s()):
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
                    async with asyncio.timeout(wait_s()):
                        chunk = await request.content.read(CHUNK)
                    if not chunk:
                        break
                    await write(chunk)
    except TimeoutError as exc:
        await discard(path)
        if time.monotonic() - started >= idle_s and min_rate_bytes_per_s:
            raise RequestTimeout(
                "the upload is too slow",
                f"{size} bytes in {time.monotonic() - started:.0f} s; "
                f"upload.min_rate_bytes_per_s is {min_rate_bytes_per_s:g}",
            ) from exc
        raise RequestTimeout("the upload stalled", f"no data for {idle_s:g} s") from exc
    except ConnectionResetError as exc:
        await discard(path)
        raise BadRequest("the upload was cut off", str(exc)) from exc
    except OSError as exc:
        await discard(path)
        if exc.errno == errno.ENOSPC:
            raise StorageError("the disk is full", "nothing of this upload was kept") from exc
        raise
    except BaseException:
        await discard(path)
        raise
    if size == 0:
        await discard(path)
        raise BadRequest("empty upload", "send the segment's bytes as the request body")
    return Received(path, digest.hexdigest(), size, extension(head, filename), segment_field)


async def ensure_space(directory: Path, min_free_bytes: int) -> None:
    """Refuse an upload while the disk is below its low mark (the one /readyz uses), so
    what is published stays readable and nothing is cut off half-written."""
    free = (await asyncio.to_thread(shutil.disk_usage, directory)).free
    if free < min_free_bytes:
        raise StorageError(
            "the disk is nearly full: uploads are refused",
            f"{free} bytes free, the low mark (min_free_bytes) is {min_free_bytes}",
        )


async def discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        await aiofiles.os.remove(path)
