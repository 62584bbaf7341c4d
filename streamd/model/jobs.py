"""What crosses between the server and its workers: a job, its progress, its result, and
what an upload holds. Plain values (no PyAV), since the next boundary is a network queue."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from streamd.config import UploadConfig
from streamd.errors import UnsupportedMedia
from streamd.model.ladder import Geometry, Rung
from streamd.model.pipeline import EncodeSettings, PipelineState
from streamd.model.protection import Protection


@dataclass(frozen=True)
class SourceInfo:
    """What an upload holds, as far as the server cares."""

    container: str
    video_codec: str
    geometry: Geometry
    frame_rate: float
    duration_s: float | None
    audio_codec: str | None
    audio_sample_rate_hz: int | None
    audio_channels: int | None
    bitrate_bps: int | None = None  # the video's, where the container says
    # A live session's audio tracks: (rendition, language, title), the main audio first.
    audio_tracks: tuple[tuple[str, str, str], ...] = ()

    def as_json(self) -> dict[str, Any]:
        g = self.geometry
        return {
            "container": self.container,
            "videoCodec": self.video_codec,
            "width": g.width,
            "height": g.height,
            "rotation": g.rotation_deg,
            "frameRate": round(self.frame_rate, 3),
            "durationS": None if self.duration_s is None else round(self.duration_s, 3),
            "audioCodec": self.audio_codec,
            "audioSampleRateHz": self.audio_sample_rate_hz,
            "audioChannels": self.audio_channels,
            "bitrateBps": self.bitrate_bps,
        }


@dataclass(frozen=True)
class MediaLimits:
    """What an upload may hold (from `[upload]`): checked from its headers before a frame is
    decoded, and on every frame while it is transcoded, so a decompression bomb costs nothing.
    """

    max_pixels: int = 7680 * 4320
    max_frame_rate: float = 120.0
    max_duration_s: float = 600.0
    max_streams: int = 16

    @classmethod
    def of(cls, upload: UploadConfig) -> MediaLimits:
        return cls(
            upload.max_pixels, upload.max_frame_rate, upload.max_duration_s, upload.max_streams
        )

    def check_streams(self, count: int) -> None:
        if count > self.max_streams:
            raise UnsupportedMedia(
                f"the upload has {count} streams", f"upload.max_streams is {self.max_streams}"
            )

    def check_frame(self, width: int, height: int) -> None:
        if width * height > self.max_pixels:
            raise UnsupportedMedia(
                f"the video is {width}x{height}", f"upload.max_pixels is {self.max_pixels}"
            )

    def check_rate(self, frame_rate: float) -> None:
        if frame_rate > self.max_frame_rate:
            raise UnsupportedMedia(
                f"the video runs at {frame_rate:g} fps",
                f"upload.max_frame_rate is {self.max_frame_rate:g}",
            )

    def check_duration(self, duration_s: float | None) -> None:
        if duration_s is not None and duration_s > self.max_duration_s:
            raise UnsupportedMedia(
                f"the upload is {duration_s:g} s long",
                f"upload.max_duration_s is {self.max_duration_s:g}",
            )


@dataclass(frozen=True)
class LiveSource:
    """A live session's bytes, as the server receives them: a Unix socket the worker
    connects to and reads to the end of the session (one long upload, no probe pass)."""

    socket_path: str
    container: str  # the demuxer: "flv" (RTMP) or "mpegts" (SRT, chunked HTTP)
    lag_path: str = ""  # LAG: how long the bytes handed to the worker now waited for it


LAG = struct.Struct("<d")  # seconds, in the file at LiveSource.lag_path


@dataclass(frozen=True)
class KeyframeIndex:
    """Where a recording's video may be cut: its keyframes' times, and its end (seconds)."""

    times: tuple[float, ...]
    end_s: float


@dataclass(frozen=True)
class Piece:
    """A stretch of a recording, from one of its keyframes to the next piece's, transcoded
    on its own so that the pieces of one recording run on every worker at once. Where it
    sits on the output timeline is its job's state; where it ends and how many segments it
    is cut into were planned beforehand, so that the pieces join exactly."""

    from_s: float  # the source's time of its first keyframe
    to_s: float  # the source's time where the next piece begins (or the end)
    end_90k: int  # the output time it ends at: the next piece's start
    segments: int
    last: bool  # the recording's last piece (its audio runs to the end)


@dataclass(frozen=True)
class JobInput:
    """One upload of the job: its number and the objects that make it, concatenated
    ((fMP4 init, fragment), or just the file), or a live session's pipe, or a piece of a
    recording."""

    upload: int
    keys: tuple[str, ...]
    received_wall_s: float = 0.0  # when it arrived: how far behind real time its segments are
    live: LiveSource | None = None
    piece: Piece | None = None


@dataclass(frozen=True)
class TranscodeJob:
    """Transcode consecutive uploads of a stream, starting from `state`."""

    video_id: str
    inputs: tuple[JobInput, ...]
    state: PipelineState
    settings: EncodeSettings
    store_spec: str
    publish_from: int = 0  # segments below this were published before a restart
    limits: MediaLimits = field(default_factory=MediaLimits)
    timeout_s: float | None = None  # the worker is killed and the job fails after this
    skip_rungs: int = 0  # the tallest rungs left out (the stream is behind real time)
    overload_delay_s: float = 0.0  # leave out one more at a cut this far behind (0: never)
    background: bool = False  # a recording: yields the CPU to live streams
    protection: Protection | None = None  # segments are written encrypted when set


@dataclass(frozen=True)
class RungOutput:
    """One rung of a published segment: its size in each packaging, and what it needs."""

    name: str
    size_bytes: dict[str, int]  # by packaging name
    codecs: str  # RFC 6381, video and audio
    inits: dict[str, str] = field(default_factory=dict)  # init segment name, by packaging
    # (offset, length) of the first picture in the segment, by packaging: I-frame playlists
    iframes: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class PublishedSegment:
    """A segment a worker wrote to the store for every rung and packaging."""

    sequence: int
    start_s: float
    duration_s: float
    upload: int
    rungs: tuple[RungOutput, ...]
    ladder: tuple[Rung, ...]  # the stream's rungs, fixed by its first upload
    frame_rate: float
    ready_wall_s: float = 0.0  # live: when its last frame reached the worker
    audio: tuple[RungOutput, ...] = ()  # audio renditions packaged apart (fMP4), by name


@dataclass(frozen=True)
class PartOutput:
    """One rendition (a rung's video, or the audio) of a published LL-HLS part: its CMAF
    chunk, and the init segment it needs (named for a segment's first part)."""

    name: str
    data: bytes
    init: str = ""


@dataclass(frozen=True)
class PublishedPart:
    """An LL-HLS part a worker made: its bytes travel with it (parts live in RAM)."""

    sequence: int  # of the parent segment
    index: int
    duration_s: float
    segment_start_s: float
    independent: bool
    target_s: float  # PART-TARGET
    next_begins_segment: bool
    rungs: tuple[PartOutput, ...]  # the rungs' video, then the audio renditions


@dataclass(frozen=True)
class TranscodeResult:
    state: PipelineState
    media_duration_s: float
    elapsed_s: float
    segments: int
    rung_seconds: dict[str, float]  # worker time per rung: scale + encode + mux
    skip_rungs: int = 0  # the tallest rungs left out at the end (more than asked: it fell behind)
    # Text subtitles the uploads carried: (language, start_s, end_s, text), stream time.
    captions: tuple[tuple[str, float, float, str], ...] = ()
    # Every audio track of each upload: (upload, stream index, language, title, the source
    # time at the upload's start); the first of an upload is its main audio, the others
    # alternates (streamd.model.audio).
    audio_streams: tuple[tuple[int, int, str, str, float], ...] = ()


@dataclass(frozen=True)
class JobProgress:
    """Sent while a job runs: how far into which upload, and each segment once written."""

    upload: int
    percent: float
    segment: PublishedSegment | None = None
    part: PublishedPart | None = None
    source: SourceInfo | None = None  # live: what the session holds, once its first frame came
    # Live: captions the video carried (CEA-608), as TranscodeResult.captions, as they come.
    cues: tuple[tuple[str, float, float, str], ...] = ()
