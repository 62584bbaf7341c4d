"""Upload a finished recording whole (`streamd push FILE --vod`): resumable (tus, as
`streamd.ingest.recording` serves it), then follow its transcode, each with a progress bar.

A dropped connection costs only the chunk in flight: the client asks the server how much
it has (HEAD) and goes on from there.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiofiles
from tqdm import tqdm
from yarl import URL

from streamd.client.push import PushError, StreamdClient
from streamd.clock import Clock, SystemClock

log = logging.getLogger(__name__)
TUS = {"Tus-Resumable": "1.0.0"}
CHUNK_BYTES = 8 << 20
MAX_RESUMES = 20  # chunks that fail before the upload is given up
POLL_S = 0.5


@dataclass(frozen=True)
class RecordingReport:
    """What a recording's upload and transcode took."""

    bytes: int
    duration_s: float  # of media
    upload_s: float
    transcode_s: float
    pieces: int
    segments: int


def _bar(total: float, desc: str, unit: str, enabled: bool) -> tqdm[Any]:
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=unit == "B",
        disable=not enabled or not sys.stdout.isatty(),  # for a person watching only
    )


async def push_recording(
    path: str | Path,
    video_id: str,
    client: StreamdClient,
    *,
    progress: bool = True,
    chunk_bytes: int = CHUNK_BYTES,
    clock: Clock | None = None,
) -> RecordingReport:
    """Upload `path` as a recording and wait until it is transcoded; raises PushError."""
    clock = clock or SystemClock()
    path = Path(path)
    size = (await asyncio.to_thread(path.stat)).st_size
    name = base64.b64encode(path.name.encode()).decode()
    started = clock.monotonic_s()
    _, created = await client.send(
        "POST",
        client.upload_url(video_id).with_query(mode="vod"),
        f"creating the recording {video_id!r}",
        headers={**TUS, "Upload-Length": str(size), "Upload-Metadata": f"filename {name}"},
    )
    location = client.server.join(URL(created["Location"]))
    offset, resumes = 0, 0
    with _bar(size, f"upload {video_id}", "B", progress) as bar:
        async with aiofiles.open(path, "rb") as f:
            while offset < size:
                await f.seek(offset)
                chunk = await f.read(chunk_bytes)
                headers = {
                    **TUS,
                    "Upload-Offset": str(offset),
                    "Content-Type": "application/offset+octet-stream",
                }
                what = f"uploading {video_id!r} at byte {offset}"
                try:
                    _, answer = await client.send(
                        "PATCH", location, what, data=chunk, headers=headers
                    )
                except PushError as exc:
                    if exc.status is not None and exc.status < 500 and exc.status != 409:
                        raise  # refused for what it is: resuming would not help
                    resumes += 1
                    if resumes > MAX_RESUMES:
                        raise
                    log.warning("%s; resuming", exc.message)
                    _, answer = await client.send(
                        "HEAD", location, f"resuming {video_id!r}", headers=TUS
                    )
                new = int(answer["Upload-Offset"])
                bar.update(new - offset)
                offset = new
    uploaded = clock.monotonic_s()
    view = await _transcoded(client, video_id, progress, clock)
    recording = view["recording"] or {}
    return RecordingReport(
        bytes=size,
        duration_s=recording.get("durationS") or view["durationS"],
        upload_s=uploaded - started,
        transcode_s=clock.monotonic_s() - uploaded,
        pieces=recording.get("pieces", 0),
        segments=view["segments"],
    )


async def _transcoded(
    client: StreamdClient, video_id: str, progress: bool, clock: Clock
) -> dict[str, Any]:
    """Follow the transcode through the stream's API until it is done."""
    url = client.server / "api" / "videos" / video_id
    with _bar(100.0, f"transcode {video_id}", "%", progress) as bar:
        while True:
            view, _ = await client.send("GET", url, f"following {video_id!r}")
            recording = view.get("recording") or {}
            bar.update(recording.get("percent", 0.0) - bar.n)
            if speed := recording.get("speed"):
                bar.set_postfix_str(f"{speed:.1f}x realtime", refresh=False)
            if view.get("state") == "ended":
                return view
            await clock.sleep(POLL_S)
