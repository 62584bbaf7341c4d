"""Test helper: a minimal RTMP server on asyncio around `PublisherSession`, accepting every
connect and publish, that an ffmpeg publisher streams into; it records the events and the
client's bytes. Run as a script to rewrite the replay fixture:

    PYTHONPATH=. python -m tests.rtmp_publisher tests/fixtures/rtmp-ffmpeg-publish.bin
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from streamd.ingest.rtmp.handshake import PACKET_BYTES, Handshake
from streamd.ingest.rtmp.session import Connect, Event, Publish, PublisherSession

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"
FIXED_S1_RANDOM = bytes(PACKET_BYTES - 8)  # a replayed recording then sees the same S1
FIXTURE_ARGS = ("-crf", "40")  # low quality: the fixture stays near 100 KB


def fixed_session() -> PublisherSession:
    """A session whose S1 is always the same, as when the fixture was recorded."""
    return PublisherSession(handshake=Handshake(random_bytes=FIXED_S1_RANDOM))


@dataclass
class Recording:
    events: list[Event] = field(default_factory=list)
    client_bytes: bytearray = field(default_factory=bytearray)
    ignored: dict[str, int] = field(default_factory=dict)
    ffmpeg_returncode: int | None = None
    ffmpeg_stderr: str = ""


async def _serve(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, recording: Recording
) -> None:
    session = fixed_session()
    try:
        while data := await reader.read(65536):
            recording.client_bytes += data
            for event in session.feed(data):
                recording.events.append(event)
                if isinstance(event, Connect):
                    session.accept_connect()
                elif isinstance(event, Publish):
                    session.accept_publish(event.stream_id)
            if out := session.data_to_send():
                writer.write(out)
                await writer.drain()
    finally:
        recording.ignored = dict(session.ignored)
        writer.close()


async def record_publish(command: list[str], path: str, timeout_s: float) -> Recording:
    """Run a publisher `command` (with the URL appended) into our session; record it."""
    recording = Recording()
    done = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _serve(reader, writer, recording)
        finally:
            done.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        proc = await asyncio.create_subprocess_exec(
            *command,
            f"rtmp://127.0.0.1:{port}/{path}",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await asyncio.wait_for(proc.communicate(), timeout=timeout_s)
        recording.ffmpeg_returncode = proc.returncode
        recording.ffmpeg_stderr = stderr.decode(errors="replace")
        await asyncio.wait_for(done.wait(), timeout=10)
    return recording


async def publish_with_ffmpeg(
    duration_s: float = 3, path: str = "live/cam?key=abc", extra: tuple[str, ...] = ()
) -> Recording:
    """ffmpeg publishing `duration_s` of test video (H.264, -g 30) and audio (AAC), at -re."""
    command = [
        FFMPEG, "-hide_banner", "-loglevel", "error", "-re",
        "-f", "lavfi", "-i", f"testsrc2=s=320x240:r=30:d={duration_s}",
        "-f", "lavfi", "-i", f"sine=d={duration_s}",
        "-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-c:a", "aac",
        *extra, "-f", "flv",
    ]  # fmt: skip
    return await record_publish(command, path, duration_s + 30)


if __name__ == "__main__":
    rec = asyncio.run(publish_with_ffmpeg(extra=FIXTURE_ARGS))
    Path(sys.argv[1]).write_bytes(bytes(rec.client_bytes))
    print(f"{len(rec.client_bytes)} bytes, {len(rec.events)} events, rc {rec.ffmpeg_returncode}")
