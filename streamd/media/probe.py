"""Opening uploads safely and saying what is inside them.

An upload is only ever opened as a media file: the demuxer must be one of the containers we
accept, and no protocol but plain files may be reached from inside it, so FFmpeg never
follows a playlist, concat list, image sequence or URL that a hostile upload carries, and a
MOV/MP4 never reads its samples from another file (a `dref` alias). Runs in worker
processes only (PyAV), never on the event loop.
"""

from __future__ import annotations

import contextlib
import io
import socket
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.container

from streamd.errors import UnsupportedMedia
from streamd.model.jobs import KeyframeIndex, MediaLimits, SourceInfo
from streamd.model.ladder import Geometry
from streamd.store import Store

# Demuxer names as FFmpeg matches them (mov covers mp4/m4a/3gp, matroska covers webm).
# Audio-only ones too, for commentary uploads (a video upload without video is refused).
ALLOWED_DEMUXERS = "mov,mp4,matroska,webm,mpegts,flv,avi,wav,mp3,aac,ogg,flac"
SAFE_OPTIONS = {
    "format_whitelist": ALLOWED_DEMUXERS,
    "protocol_whitelist": "file",
    # mov's defaults, pinned: with drefs on, an alias atom makes FFmpeg read a track's samples
    # from a file next to the upload (another stream's upload), whatever the whitelists say.
    "enable_drefs": "0",
    "use_absolute_path": "0",
}
ACCEPTED = (
    "accepted containers: MP4/MOV, MKV/WebM, MPEG-TS, FLV, AVI (audio: also WAV, MP3, AAC,"
    " Ogg, FLAC)"
)


def _accepted(format_name: str) -> bool:
    return bool(set(format_name.split(",")) & set(ALLOWED_DEMUXERS.split(",")))


def open_media(source: Path | bytes) -> av.container.InputContainer:
    """Open an upload (a path, or bytes held in RAM) as a media file and nothing else."""
    target: Any = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    try:
        container = av.open(target, mode="r", container_options=dict(SAFE_OPTIONS))
    except av.FFmpegError as exc:
        # exc.strerror, not str(exc), which names the temp file's path on this machine.
        raise UnsupportedMedia(
            "not a media file streamd accepts", f"{exc.strerror}; {ACCEPTED}"
        ) from exc
    assert isinstance(container, av.container.InputContainer)
    if not _accepted(container.format.name):  # the whitelist again, should FFmpeg not apply it
        container.close()
        raise UnsupportedMedia(
            "not a media file streamd accepts", f"FFmpeg found {container.format.name}; {ACCEPTED}"
        )
    return container


@contextlib.contextmanager
def open_live(socket_path: str, container: str) -> Iterator[av.container.InputContainer]:
    """Connect to a live session's feed and open it with the one demuxer its protocol
    speaks, probing nothing: FFmpeg's default probe waits 5-15 s of a live stream before
    the first frame. Read through `pipe:FD`, unbuffered (a Python file object adds ~350 ms)."""
    if container not in ("flv", "mpegts"):
        raise UnsupportedMedia(f"no live demuxer {container!r}", "flv or mpegts")
    options = {
        **SAFE_OPTIONS,
        "protocol_whitelist": "pipe",
        "probesize": "32",
        "analyzeduration": "0",
    }
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(socket_path)
        try:
            opened = av.open(
                f"pipe:{sock.fileno()}", mode="r", format=container, container_options=options
            )
        except av.FFmpegError as exc:
            raise UnsupportedMedia("the live source does not open", exc.strerror or "") from exc
        assert isinstance(opened, av.container.InputContainer)
        with opened:
            yield opened


def frame_geometry(frame: av.VideoFrame, stream_sar: Fraction | None) -> Geometry:
    """Geometry of a decoded frame, with the rotation its display matrix asks for."""
    sar = stream_sar if stream_sar else Fraction(1)
    return Geometry(frame.width, frame.height, Fraction(sar), int(frame.rotation or 0) % 360)


def stream_sar(stream: av.VideoStream) -> Fraction | None:
    sar = stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio
    return Fraction(sar) if sar else None


def describe(
    container: av.container.InputContainer, frame: av.VideoFrame, duration_s: float | None
) -> SourceInfo:
    """What an opened upload holds, given its first decoded picture."""
    vs = container.streams.video[0]
    ac = container.streams.audio[0].codec_context if container.streams.audio else None
    return SourceInfo(
        container=container.format.name,
        video_codec=vs.codec_context.name,
        geometry=frame_geometry(frame, stream_sar(vs)),
        frame_rate=float(vs.average_rate or vs.guessed_rate or 30),
        duration_s=duration_s,
        audio_codec=ac.name if ac else None,
        audio_sample_rate_hz=ac.sample_rate if ac else None,
        audio_channels=ac.channels if ac else None,
        bitrate_bps=vs.bit_rate or vs.codec_context.bit_rate or None,
    )


def probe(source: Path | bytes, limits: MediaLimits) -> SourceInfo:
    """Check an upload is within `limits` and decodes, and describe it; raises
    UnsupportedMedia otherwise. What the headers declare is checked before any decoding."""
    with open_media(source) as container:
        if not container.streams.video:
            raise UnsupportedMedia("the upload has no video stream")
        limits.check_streams(len(container.streams))
        vstream = container.streams.video[0]
        cc = vstream.codec_context
        limits.check_frame(cc.width or 0, cc.height or 0)
        limits.check_rate(float(vstream.average_rate or 0))
        duration = container.duration / 1_000_000 if container.duration else None
        limits.check_duration(duration)
        try:
            frame = next(container.decode(vstream), None)
        except av.FFmpegError as exc:
            raise UnsupportedMedia("the video does not decode", str(exc)) from exc
        if frame is None:
            raise UnsupportedMedia("the upload holds no video frames")
        limits.check_frame(frame.width, frame.height)
        return describe(container, frame, duration)


def probe_audio(source: Path | bytes, limits: MediaLimits) -> float | None:
    """Check an audio upload (commentary) holds audio that decodes; its duration."""
    with open_media(source) as container:
        if not container.streams.audio:
            raise UnsupportedMedia("the audio upload has no audio stream")
        limits.check_streams(len(container.streams))
        duration = container.duration / 1_000_000 if container.duration else None
        limits.check_duration(duration)
        try:
            frame = next(container.decode(container.streams.audio[0]), None)
        except av.FFmpegError as exc:
            raise UnsupportedMedia("the audio does not decode", str(exc)) from exc
        if frame is None:
            raise UnsupportedMedia("the audio upload holds no audio")
        return duration


def keyframes(source: Path) -> KeyframeIndex:
    """Where a recording's video can be cut without decoding across the cut: its
    keyframes' presentation times, and where its video ends (packets only, no decoding)."""
    with open_media(source) as container:
        if not container.streams.video:
            raise UnsupportedMedia("the recording has no video stream")
        vs = container.streams.video[0]
        rate = vs.average_rate or vs.guessed_rate or Fraction(30)
        keys: list[float] = []
        end = Fraction(0)
        for packet in container.demux(vs):
            if packet.pts is None or packet.time_base is None:
                continue
            t = packet.pts * packet.time_base
            duration = packet.duration * packet.time_base if packet.duration else 1 / rate
            end = max(end, t + duration)
            if packet.is_keyframe:
                keys.append(float(t))
        if not keys:
            raise UnsupportedMedia("the recording holds no keyframe")
        keys.sort()
        return KeyframeIndex(tuple(k for k in keys if k < end), float(end))


def time_s(ts: int | None, tb: Fraction | None) -> Fraction | None:
    return None if ts is None or tb is None else ts * tb


def video_span(source: Path | bytes) -> tuple[Fraction, Fraction]:
    """First presentation time and end time of the video, from packets alone (no decoding)."""
    with open_media(source) as c:
        if not c.streams.video:
            raise UnsupportedMedia("the upload has no video stream")
        vs = c.streams.video[0]
        rate = vs.average_rate or vs.guessed_rate or Fraction(30)
        first = last = None
        last_dur = Fraction(1) / rate
        for pkt in c.demux(vs):
            t = time_s(pkt.pts if pkt.pts is not None else pkt.dts, pkt.time_base)
            if t is None:
                continue
            first = t if first is None else min(first, t)
            if last is None or t >= last:
                last = t
                if pkt.duration and pkt.time_base:
                    last_dur = pkt.duration * pkt.time_base
        if first is None or last is None:
            raise UnsupportedMedia("the upload holds no video frames")
        return first, last + last_dur


def stored_source(store: Store, keys: tuple[str, ...]) -> Path | bytes:
    """An upload in the store as PyAV opens it: its file where the store has files (one
    key), else its pieces' bytes joined."""
    if len(keys) == 1 and (path := store.local_path(keys[0])) is not None:
        return path
    return b"".join(store.get(k) for k in keys)
