"""Published segments as one file that plays on its own (`/viewstream`, clips): the packets
copied into another container, never decoded, their times moved off the internal timeline
(which starts at TIMELINE_ORIGIN_S so B-frame DTS never go negative)."""

from __future__ import annotations

import io
import tempfile
from fractions import Fraction
from pathlib import Path

import av

from streamd.errors import UnsupportedMedia

# Container -> (FFmpeg muxer, its options). MP4 and MOV put their index first, so a browser
# plays the file while it downloads (which takes a second pass over a real file).
MUXERS: dict[str, tuple[str, dict[str, str]]] = {
    "mp4": ("mp4", {"movflags": "+faststart"}),
    "mov": ("mov", {"movflags": "+faststart"}),
    "ts": ("mpegts", {}),
}


def remux(data: bytes, container: str, start_s: float) -> bytes:
    """`data` (an fMP4 init and its fragments, or MPEG-TS segments, joined) as one file in
    `container` whose first picture is shown at `start_s`."""
    fmt, options = MUXERS[container]
    with tempfile.TemporaryDirectory(prefix="streamd-remux-") as tmp:
        path = Path(tmp) / f"out.{container}"
        _remux(data, fmt, options, start_s, path)
        return path.read_bytes()


def _remux(data: bytes, fmt: str, options: dict[str, str], start_s: float, path: Path) -> None:
    try:
        first = _first_pts(data)
        with (
            av.open(io.BytesIO(data), "r") as src,
            av.open(str(path), "w", format=fmt, options=options) as out,
        ):
            streams = [s for s in src.streams if s.type in ("video", "audio")]
            mapped = {s.index: out.add_stream_from_template(s) for s in streams}
            durations: dict[int, int] = {}
            for packet in src.demux(*streams):
                if packet.dts is None or packet.time_base is None:
                    continue  # a demuxer's flush packet
                index = packet.stream.index
                shift = round((first - Fraction(start_s)) / packet.time_base)
                if packet.pts is not None:
                    packet.pts -= shift
                packet.dts -= shift
                # A segment's last sample may come without a duration (the next segment's
                # time gives it); a file that ends there needs it.
                if packet.duration:
                    durations[index] = packet.duration
                else:
                    packet.duration = durations.get(index, 0)
                packet.stream = mapped[index]
                out.mux(packet)
    except av.FFmpegError as exc:
        raise UnsupportedMedia("the segments could not be remuxed", repr(exc)) from exc


def _first_pts(data: bytes) -> Fraction:
    """When the first picture is shown, in seconds: every segment starts with an IDR, whose
    time is the least of its closed GOP's."""
    with av.open(io.BytesIO(data), "r") as src:
        if not src.streams.video:
            raise UnsupportedMedia("the segments hold no video")
        for packet in src.demux(src.streams.video[0]):
            if packet.pts is not None and packet.time_base is not None:
                return packet.pts * packet.time_base
    raise UnsupportedMedia("the segments hold no video")


def encode_webm(data: bytes, video_bitrate_bps: int, audio_bitrate_bps: int) -> bytes:
    """`data` (an fMP4 init and fragments) encoded as WebM, VP9 and Opus, starting at 0: for
    players that want open codecs. VP9 at libvpx's realtime speed costs about what x264
    veryfast does (../shared/FACTS.md), so it is made once, when first asked for."""
    out_buf = io.BytesIO()
    try:
        first = _first_pts(data)
        with (
            av.open(io.BytesIO(data), "r") as src,
            av.open(out_buf, "w", format="webm") as out,
        ):
            vin = src.streams.video[0]
            ain = src.streams.audio[0] if src.streams.audio else None
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
                resampler = av.AudioResampler("s16", "stereo", 48_000, frame_size=960)
            streams = [vin] if ain is None else [vin, ain]
            audio_at = 0
            for frame in src.decode(*streams):
                if frame.pts is None or frame.time_base is None:
                    continue
                at = frame.pts * frame.time_base - first
                if isinstance(frame, av.VideoFrame):
                    frame.pts = round(at * 1000)
                    frame.time_base = Fraction(1, 1000)
                    frame.pict_type = av.video.frame.PictureType.NONE  # VP9 places its own
                    out.mux(vp9.encode(frame))
                elif opus is not None and resampler is not None and at >= 0:
                    frame.pts = None  # the resampler counts samples from here on
                    for chunk in resampler.resample(frame):
                        chunk.pts, audio_at = audio_at, audio_at + chunk.samples
                        out.mux(opus.encode(chunk))
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
