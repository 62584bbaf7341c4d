"""WebM DASH segments (VP9, Opus), encoded from a published segment's CMAF track files when
first asked for: the MPD's WebM adaptation sets, for players that want open codecs.

A segment is one track's Clusters on the stream's timeline (Matroska's millisecond clock,
the internal origin included, as the MPD's presentationTimeOffset expects); its init
segment is the header the muxer writes before them (EBML, Segment of unknown size, Info,
Tracks), the same bytes for every segment of a rendition since the muxer is bit-exact.

Opus frames are 20 ms on a grid from the timeline's origin, so the segments of the audio
join frame for frame: a segment's encoder is pre-rolled with the end of the segment before
and keeps only the frames that start within its own span.
"""

from __future__ import annotations

import io
from fractions import Fraction
from typing import Any

import av
import numpy as np

from streamd.errors import UnsupportedMedia
from streamd.media.remux import _rate
from streamd.model.pipeline import AUDIO_HZ, TIMELINE_ORIGIN_S

CLUSTER = bytes.fromhex("1F43B675")  # Matroska's Cluster element ID
OPUS_FRAME = 960  # 20 ms at 48 kHz
PREROLL_FRAMES = 3
MUXER_OPTIONS = {"live": "1", "fflags": "+bitexact"}  # unknown sizes; no random UIDs
MS = Fraction(1, 1000)


def _split(data: bytes) -> tuple[bytes, bytes]:
    at = data.find(CLUSTER)
    if at < 0:
        raise UnsupportedMedia("the WebM segment holds no media")
    return data[:at], data[at:]


def vp9_segment(video: bytes, bitrate_bps: int) -> tuple[bytes, bytes]:
    """A rung's segment (its fMP4 init and media) as VP9: (init, media)."""
    out_buf = io.BytesIO()
    try:
        with (
            av.open(io.BytesIO(video), "r") as src,
            av.open(out_buf, "w", format="webm", options=dict(MUXER_OPTIONS)) as out,
        ):
            vin = src.streams.video[0]
            vp9 = out.add_stream("libvpx-vp9", rate=_rate(vin))
            vp9.width, vp9.height, vp9.pix_fmt = vin.width, vin.height, "yuv420p"
            vp9.bit_rate = bitrate_bps
            vp9.time_base = MS
            vp9.options = {"deadline": "realtime", "cpu-used": "8", "row-mt": "1"}
            vp9.codec_context.flags |= av.codec.context.Flags.bitexact
            for frame in src.decode(vin):
                if frame.pts is None or frame.time_base is None:
                    continue
                frame.pts = round(frame.pts * frame.time_base / MS)
                frame.time_base = MS
                frame.pict_type = av.video.frame.PictureType.NONE
                out.mux(vp9.encode(frame))
            out.mux(vp9.encode(None))
    except av.FFmpegError as exc:
        raise UnsupportedMedia("the segment could not be encoded as VP9", repr(exc)) from exc
    return _split(out_buf.getvalue())


def opus_segment(
    audio: bytes, before: bytes | None, after: bytes | None, bitrate_bps: int, last: bool
) -> tuple[bytes, bytes]:
    """The audio of a segment (its fMP4 init and media) as Opus: (init, media). `before`
    and `after`: the init and media of the segments either side, when they are published:
    decoded in one pass with it (a fresh AAC decoder's first frame is not the audio), the
    one before to pre-roll the encoder, the one after for the frame that straddles the
    join and the encoder's look-ahead. `last`: the stream's last (its final frame padded)."""
    start = _first_sample(audio)
    end = start + _sample_count(audio)
    joined = audio if before is None else before + audio[_media_at(audio) :]
    if after is not None:
        joined += after[_media_at(after) :]
    decoded_from, samples = _decode(joined)
    origin = TIMELINE_ORIGIN_S * AUDIO_HZ
    first = origin + -(-(start - origin) // OPUS_FRAME) * OPUS_FRAME  # the first frame it keeps
    until = origin + -(-(end - origin) // OPUS_FRAME) * OPUS_FRAME  # the next segment's first
    feed_from = first - PREROLL_FRAMES * OPUS_FRAME
    if decoded_from > feed_from:  # nothing before it (the stream's first): silence
        pad = np.zeros((2, decoded_from - feed_from), np.float32)
        samples = np.concatenate([pad, samples], axis=1)
        decoded_from = feed_from
    samples = samples[:, feed_from - decoded_from :]
    if not last:  # its look-ahead, then the frames that are the next segment's
        samples = samples[:, : until + PREROLL_FRAMES * OPUS_FRAME - feed_from]
    frames = -(-samples.shape[1] // OPUS_FRAME)
    samples = np.pad(samples, ((0, 0), (0, frames * OPUS_FRAME - samples.shape[1])))
    out_buf = io.BytesIO()
    try:
        with av.open(out_buf, "w", format="webm", options=dict(MUXER_OPTIONS)) as out:
            opus = out.add_stream("libopus", rate=AUDIO_HZ, layout="stereo")
            opus.bit_rate = bitrate_bps
            opus.time_base = Fraction(1, AUDIO_HZ)
            opus.codec_context.flags |= av.codec.context.Flags.bitexact
            packets: list[Any] = []
            pts = [feed_from + i * OPUS_FRAME for i in range(frames)]
            for i, at in enumerate(pts):
                chunk = samples[:, i * OPUS_FRAME : (i + 1) * OPUS_FRAME]
                frame = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(chunk), format="fltp", layout="stereo"
                )
                frame.sample_rate, frame.pts, frame.time_base = AUDIO_HZ, at, opus.time_base
                packets += opus.encode(frame)
            packets += opus.encode(None)
            # One packet per frame, in order: each takes its frame's time on the grid.
            for packet, at in zip(packets, pts, strict=False):
                if first <= at < until or (last and at >= first):
                    packet.pts = packet.dts = at
                    packet.duration = OPUS_FRAME
                    out.mux(packet)
    except av.FFmpegError as exc:
        raise UnsupportedMedia("the segment could not be encoded as Opus", repr(exc)) from exc
    return _split(out_buf.getvalue())


def _media_at(data: bytes) -> int:
    """Where a CMAF track file's media (its first moof) begins, after the init segment."""
    at = data.find(b"moof")
    if at < 4:
        raise UnsupportedMedia("the segment holds no fragment")
    return at - 4


def _first_sample(data: bytes) -> int:
    """The first audio sample's index of a CMAF audio track file (from its packets)."""
    with av.open(io.BytesIO(data), "r") as src:
        for packet in src.demux(src.streams.audio[0]):
            if packet.pts is not None and packet.time_base is not None:
                return round(packet.pts * packet.time_base * AUDIO_HZ)
    raise UnsupportedMedia("the segment holds no audio")


def _sample_count(data: bytes) -> int:
    """How many samples a CMAF audio track file's packets hold (AAC: 1024 each)."""
    with av.open(io.BytesIO(data), "r") as src:
        stream = src.streams.audio[0]
        return sum(1024 for packet in src.demux(stream) if packet.size)


def _decode(data: bytes) -> tuple[int, np.ndarray]:
    """A CMAF audio track file as float samples (2, n), and its first sample's index."""
    try:
        with av.open(io.BytesIO(data), "r") as src:
            stream = src.streams.audio[0]
            start: int | None = None
            chunks = []
            for frame in src.decode(stream):
                if start is None and frame.pts is not None and frame.time_base is not None:
                    start = round(frame.pts * frame.time_base * AUDIO_HZ)
                chunks.append(frame.to_ndarray().reshape(2, -1).astype(np.float32))
    except av.FFmpegError as exc:
        raise UnsupportedMedia("the audio could not be decoded", repr(exc)) from exc
    if start is None or not chunks:
        raise UnsupportedMedia("the segment holds no audio")
    return start, np.concatenate(chunks, axis=1)
