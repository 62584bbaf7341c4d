"""Published segments as one file that plays on its own (`/viewstream`, clips): the packets
copied into another container, never decoded, their times moved off the internal timeline
(which starts at TIMELINE_ORIGIN_S so B-frame DTS never go negative)."""

from __future__ import annotations

import contextlib
import heapq
import io
import struct
import tempfile
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.subtitles.codeccontext

from streamd.errors import UnsupportedMedia
from streamd.media.subtitles import long_language
from streamd.model.pipeline import TIMELINE_ORIGIN_S

# Container -> (FFmpeg muxer, its options). MP4 and MOV put their index first, so a browser
# plays the file while it downloads (which takes a second pass over a real file).
MUXERS: dict[str, tuple[str, dict[str, str]]] = {
    "mp4": ("mp4", {"movflags": "+faststart"}),
    "mov": ("mov", {"movflags": "+faststart"}),
    "ts": ("mpegts", {}),
}


Inputs = tuple[bytes, ...]  # segments joined, each a file: (video, audio) for CMAF track files
Captions = tuple[tuple[float, float, str], ...]  # (start_s, end_s, text) on the stream's timeline
SUBTITLE_CODECS = {"mp4": "mov_text", "mov": "mov_text", "webm": "webvtt"}  # text, by container
ASS_HEADER = (
    b"[Script Info]\nScriptType: v4.00+\nPlayResX: 384\nPlayResY: 288\n\n[V4+ Styles]\n"
    b"Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, "
    b"BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, "
    b"BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding\n"
    b"Style: Default,Arial,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,0"
    b"\n\n[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, "
    b"Effect, Text\n"
)


def remux(
    inputs: Inputs,
    container: str,
    start_s: float,
    captions: Captions = (),
    lang: str = "und",
    audio_lang: str | None = None,
) -> bytes:
    """`inputs` (an fMP4 init and its fragments, or MPEG-TS segments, joined: one per track
    file) as one file in `container` whose first picture is shown at `start_s`, with
    `captions` as a subtitle track in `lang` where the container has one (MP4, MOV).
    `audio_lang`: the last input is an alternate audio language, the file's only audio."""
    fmt, options = MUXERS[container]
    with tempfile.TemporaryDirectory(prefix="streamd-remux-") as tmp:
        path = Path(tmp) / f"out.{container}"
        text = SUBTITLE_CODECS.get(container) if captions else None
        _remux(inputs, fmt, options, start_s, path, (text, captions, lang), audio_lang)
        return path.read_bytes()


def _remux(
    inputs: Inputs,
    fmt: str,
    options: dict[str, str],
    start_s: float,
    path: Path,
    subtitles: tuple[str | None, Captions, str] = (None, (), "und"),
    audio_lang: str | None = None,
) -> None:
    try:
        with contextlib.ExitStack() as stack:
            first = _first_pts(inputs)
            sources = [stack.enter_context(av.open(io.BytesIO(d), "r")) for d in inputs]
            out = stack.enter_context(av.open(str(path), "w", format=fmt, options=options))
            streams = [s for src in sources for s in src.streams if s.type in ("video", "audio")]
            if audio_lang is not None:  # the alternate's audio only, tagged with its language
                streams = [s for s in streams if s.type == "video" or s.container is sources[-1]]
            mapped = {id(s): out.add_stream_from_template(s) for s in streams}
            for s in streams:
                if s.type == "audio" and audio_lang is not None:
                    mapped[id(s)].metadata["language"] = long_language(audio_lang)
            codec, captions, lang = subtitles
            if codec is not None:  # stream second t is internal t + origin, shown from `first`
                offset_s = TIMELINE_ORIGIN_S - float(first) + start_s
                _subtitle_track(out, codec, captions, lang, offset_s)
            durations: dict[int, int] = {}
            for packet in _in_time_order(sources):
                if id(packet.stream) not in mapped:
                    continue
                assert packet.dts is not None
                assert packet.time_base is not None
                stream = id(packet.stream)
                shift = round((first - Fraction(start_s)) / packet.time_base)
                if packet.pts is not None:
                    packet.pts -= shift
                packet.dts -= shift
                # A segment's last sample may come without a duration (the next segment's
                # time gives it); a file that ends there needs it.
                if packet.duration:
                    durations[stream] = packet.duration
                else:
                    packet.duration = durations.get(stream, 0)
                packet.stream = mapped[stream]
                out.mux(packet)
    except av.FFmpegError as exc:
        raise UnsupportedMedia("the segments could not be remuxed", repr(exc)) from exc


def _subtitle_track(
    out: av.container.OutputContainer, codec: str, captions: Captions, lang: str, offset_s: float
) -> None:
    """A text track, its cues moved by `offset_s`: mov_text (3GPP timed text: each sample
    its text after a 16-bit length; the muxer fills the time between cues with empty
    samples), or WebVTT in Matroska (each block a cue's text)."""
    stream = out.add_stream(codec)
    stream.time_base = Fraction(1, 1000)
    # Its encoder is opened with the file, and needs the ASS header it would convert from.
    assert isinstance(stream.codec_context, av.subtitles.codeccontext.SubtitleCodecContext)
    stream.codec_context.subtitle_header = ASS_HEADER
    stream.metadata["language"] = long_language(lang)
    for start_s, end_s, text in sorted(captions):
        data = text.encode()
        if codec == "mov_text":
            data = struct.pack(">H", len(data)) + data
        packet = av.Packet(data)
        packet.stream = stream
        packet.time_base = stream.time_base
        packet.pts = packet.dts = max(0, round((start_s + offset_s) * 1000))
        packet.duration = max(1, round((end_s - start_s) * 1000))
        out.mux(packet)


def _in_time_order(sources: list[av.container.InputContainer]) -> Iterator[av.Packet[Any]]:
    """The video and audio packets of every source, merged by decode time (interleaved, as a
    muxer writes best), flush packets left out."""

    def packets(src: av.container.InputContainer) -> Iterator[av.Packet[Any]]:
        streams = [s for s in src.streams if s.type in ("video", "audio")]
        for packet in src.demux(*streams):
            if packet.dts is not None and packet.time_base is not None:
                yield packet

    def when(packet: av.Packet[Any]) -> Fraction:
        assert packet.dts is not None
        assert packet.time_base is not None
        return packet.dts * packet.time_base

    return heapq.merge(*(packets(src) for src in sources), key=when)


def _first_pts(inputs: Inputs) -> Fraction:
    """When the first picture is shown, in seconds: every segment starts with an IDR, whose
    time is the least of its closed GOP's."""
    for data in inputs:
        with av.open(io.BytesIO(data), "r") as src:
            if not src.streams.video:
                continue
            for packet in src.demux(src.streams.video[0]):
                if packet.pts is not None and packet.time_base is not None:
                    return packet.pts * packet.time_base
    raise UnsupportedMedia("the segments hold no video")


def encode_webm(
    inputs: Inputs,
    video_bitrate_bps: int,
    audio_bitrate_bps: int,
    captions: Captions = (),
    lang: str = "und",
    audio_lang: str | None = None,
) -> bytes:
    """`inputs` (fMP4 inits and fragments) encoded as WebM, VP9 and Opus, starting at 0: for
    players that want open codecs. VP9 at libvpx's realtime speed costs about what x264
    veryfast does (../shared/FACTS.md), so it is made once, when first asked for. With
    `captions`, a WebVTT track in `lang`; `audio_lang` tags the audio (an alternate's)."""
    out_buf = io.BytesIO()
    try:
        with contextlib.ExitStack() as stack:
            first = _first_pts(inputs)
            sources = [stack.enter_context(av.open(io.BytesIO(d), "r")) for d in inputs]
            out = stack.enter_context(av.open(out_buf, "w", format="webm"))
            vin = next(s for src in sources for s in src.streams.video)
            ain = next((s for src in sources for s in src.streams.audio), None)
            vp9 = out.add_stream("libvpx-vp9", rate=_rate(vin))
            vp9.width, vp9.height, vp9.pix_fmt = vin.width, vin.height, "yuv420p"
            vp9.bit_rate = video_bitrate_bps
            vp9.time_base = Fraction(1, 1000)  # Matroska's millisecond clock
            vp9.options = {"deadline": "realtime", "cpu-used": "8", "row-mt": "1"}
            opus = resampler = None
            if ain is not None:
                opus = out.add_stream("libopus", rate=48_000, layout="stereo")
                opus.bit_rate = audio_bitrate_bps
                opus.time_base = Fraction(1, 48_000)
                if audio_lang is not None:
                    opus.metadata["language"] = long_language(audio_lang)
                resampler = av.AudioResampler("s16", "stereo", 48_000, frame_size=960)
            if captions:  # stream second t is internal t + origin; the file's 0 is `first`
                _subtitle_track(out, "webvtt", captions, lang, TIMELINE_ORIGIN_S - float(first))
            audio_at = 0

            def picture(frame: av.VideoFrame) -> None:
                assert frame.pts is not None
                time_base = frame.time_base or vin.time_base  # unset on a flushed picture
                assert time_base is not None
                frame.pts = round((frame.pts * time_base - first) * 1000)
                frame.time_base = Fraction(1, 1000)
                frame.pict_type = av.video.frame.PictureType.NONE  # VP9 places its own
                out.mux(vp9.encode(frame))

            for packet in _in_time_order(sources):
                for frame in packet.decode():
                    if frame.pts is None or frame.time_base is None:
                        continue
                    if isinstance(frame, av.VideoFrame):
                        picture(frame)
                    elif opus is not None and resampler is not None:
                        assert isinstance(frame, av.AudioFrame)
                        if frame.pts * frame.time_base < first:
                            continue
                        frame.pts = None  # the resampler counts samples from here on
                        for chunk in resampler.resample(frame):
                            chunk.pts, audio_at = audio_at, audio_at + chunk.samples
                            out.mux(opus.encode(chunk))
            for frame in vin.codec_context.decode(None):  # the decoder's delayed pictures
                if frame.pts is not None:
                    picture(frame)
            out.mux(vp9.encode(None))
            if opus is not None and resampler is not None:
                for chunk in resampler.resample(None):
                    chunk.pts, audio_at = audio_at, audio_at + chunk.samples
                    out.mux(opus.encode(chunk))
                out.mux(opus.encode(None))
    except av.FFmpegError as exc:
        raise UnsupportedMedia("the segments could not be encoded as WebM", repr(exc)) from exc
    return out_buf.getvalue()


def _rate(stream: av.video.stream.VideoStream) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate
    return Fraction(rate) if rate else Fraction(30)
