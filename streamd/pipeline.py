"""A stream's transcode pipeline: decoded frames in, segment packets out, state kept between
uploads.

Every rung is encoded from the same frames and the same cut decisions, so all rungs share
segment boundaries and each segment starts with an IDR frame. Timestamps run on across
uploads: the state after one upload is where the next one begins.

Audio is encoded once (AAC-LC stereo 48 kHz) and muxed into every rung. Each upload gets a
fresh AAC encoder; to join them without a click, the next encoder is pre-rolled with the last
three frames the previous one saw and only its packets from the join onwards are kept (an
AAC packet's MDCT window spans two frames, and the encoder's window-shape decisions need a
frame or two to settle after the silent start).
"""

from __future__ import annotations

import base64
import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

import av
import numpy as np

from streamd.encoder import RungEncoder, encoded, open_x264
from streamd.ladder import Geometry, Rung, RungSpec, plan_ladder
from streamd.package import AUDIO_HZ, VIDEO_HZ, EncodedPacket, SegmentMedia

TIMELINE_ORIGIN_S = 10  # output timestamps start here so B-frame DTS never go negative
AAC_FRAME = 1024
AUDIO_PREROLL_FRAMES = 2
AUDIO_SYNC_TOLERANCE = 96  # samples (2 ms) of timestamp jitter tolerated before padding or trimming

# H.264 Annex A: level -> (max macroblocks/s, max frame size in MBs, max bitrate kbit/s, High).
_H264_LEVELS = [
    ("3.0", 40_500, 1_620, 12_500),
    ("3.1", 108_000, 3_600, 17_500),
    ("3.2", 216_000, 5_120, 25_000),
    ("4.0", 245_760, 8_192, 25_000),
    ("4.1", 245_760, 8_192, 62_500),
    ("4.2", 522_240, 8_704, 62_500),
    ("5.0", 589_824, 22_080, 168_750),
    ("5.1", 983_040, 36_864, 300_000),
    ("5.2", 2_073_600, 36_864, 300_000),
]


def h264_level(width: int, height: int, fps: float, maxrate_bps: int) -> str:
    """The smallest H.264 level for a rung, fixed per stream so its SPS never changes."""
    mbs = math.ceil(width / 16) * math.ceil(height / 16)
    for name, mbps, fs, kbps in _H264_LEVELS:
        if mbs <= fs and mbs * fps <= mbps and maxrate_bps <= kbps * 1000:
            return name
    return "5.2"


@dataclass(frozen=True)
class EncodeSettings:
    """How a stream is encoded (from `[transcode]` in config.toml)."""

    ladder: tuple[RungSpec, ...]
    segment_duration_s: float
    preset: str
    audio_bitrate_bps: int
    encoder_threads: int = 0

    def max_part_s(self, frame_s: float) -> float:
        """Longest segment we cut, so that EXTINF rounds to the target duration at most."""
        t = self.segment_duration_s
        return max(frame_s, min(t * 1.2, t + 0.5 - frame_s - 0.001))


@dataclass(frozen=True)
class PipelineState:
    """Where the stream's timeline stands between uploads; persisted with the stream."""

    next_segment: int = 0
    video_pts_90k: int = TIMELINE_ORIGIN_S * VIDEO_HZ
    audio_base_sample: int = TIMELINE_ORIGIN_S * AUDIO_HZ  # index of audio_carry's first sample
    audio_emit_from: int = TIMELINE_ORIGIN_S * AUDIO_HZ - AAC_FRAME  # next AAC pts to keep
    audio_carry: bytes = b""  # float32 planar stereo samples the next encoder starts from
    rungs: tuple[Rung, ...] = ()
    levels: tuple[str, ...] = ()
    frame_rate: float = 0.0
    # The previous upload's last AAC packet: decoded first, so this upload's first frame has
    # the overlap it needs instead of fading in (an AAC frame is half of an MDCT window).
    input_audio_tail: bytes = b""

    @property
    def time_s(self) -> float:
        return self.video_pts_90k / VIDEO_HZ - TIMELINE_ORIGIN_S

    def resumed_at(self, next_segment: int, time_s: float) -> PipelineState:
        """Where to go on after a failed upload whose first segments were published.

        Its audio carry is lost with it, so the next upload starts a fresh AAC encoder at the
        video's time: at worst a frame of audio gap or overlap at this one join.
        """
        return replace(
            self,
            next_segment=next_segment,
            video_pts_90k=round((TIMELINE_ORIGIN_S + time_s) * VIDEO_HZ),
            audio_base_sample=TIMELINE_ORIGIN_S * AUDIO_HZ + round(time_s * AUDIO_HZ),
            audio_emit_from=TIMELINE_ORIGIN_S * AUDIO_HZ + round(time_s * AUDIO_HZ),
            audio_carry=b"",
            input_audio_tail=b"",
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "nextSegment": self.next_segment,
            "videoPts90k": self.video_pts_90k,
            "audioBaseSample": self.audio_base_sample,
            "audioEmitFrom": self.audio_emit_from,
            "audioCarry": base64.b64encode(self.audio_carry).decode(),
            "rungs": [r.__dict__ for r in self.rungs],
            "levels": list(self.levels),
            "frameRate": self.frame_rate,
            "inputAudioTail": base64.b64encode(self.input_audio_tail).decode(),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PipelineState:
        return cls(
            next_segment=d["nextSegment"],
            video_pts_90k=d["videoPts90k"],
            audio_base_sample=d["audioBaseSample"],
            audio_emit_from=d["audioEmitFrom"],
            audio_carry=base64.b64decode(d["audioCarry"]),
            rungs=tuple(Rung(**r) for r in d["rungs"]),
            levels=tuple(d["levels"]),
            frame_rate=d["frameRate"],
            input_audio_tail=base64.b64decode(d.get("inputAudioTail", "")),
        )


class AudioTrack:
    """Resampled stereo audio waiting to be AAC-encoded, kept in step with the video."""

    def __init__(self, state: PipelineState, bitrate_bps: int) -> None:
        carry = np.frombuffer(state.audio_carry, dtype=np.float32)
        self.buffer = carry.reshape(2, -1).copy() if carry.size else np.zeros((2, 0), np.float32)
        self.base = state.audio_base_sample
        self.emit_from = state.audio_emit_from
        self.bitrate_bps = bitrate_bps
        self.encoder: av.audio.codeccontext.AudioCodecContext | None = None
        self.fed_until = self.base  # first sample not yet given to the encoder
        self.last_fed_pts: int | None = None

    @property
    def end(self) -> int:
        return self.base + self.buffer.shape[1]

    def add(self, samples: np.ndarray, expected_start: int) -> None:
        """Append samples that belong at `expected_start`, padding or trimming small drift."""
        gap = expected_start - self.end
        if gap > AUDIO_SYNC_TOLERANCE:
            self.pad_to(expected_start)
        elif gap < -AUDIO_SYNC_TOLERANCE:
            samples = samples[:, min(-gap, samples.shape[1]) :]
        self.buffer = np.concatenate([self.buffer, samples], axis=1)

    def pad_to(self, sample: int) -> None:
        """Silence up to `sample`, for uploads without audio or with audio gaps."""
        if sample > self.end:
            silence = np.zeros((2, sample - self.end), np.float32)
            self.buffer = np.concatenate([self.buffer, silence], axis=1)

    def _open(self) -> av.audio.codeccontext.AudioCodecContext:
        cc = av.CodecContext.create("aac", "w")
        cc.sample_rate = AUDIO_HZ
        cc.layout = "stereo"
        cc.format = "fltp"
        cc.bit_rate = self.bitrate_bps
        cc.time_base = Fraction(1, AUDIO_HZ)
        cc.open()
        return cc

    def encode_ready(self) -> list[EncodedPacket]:
        """Feed every whole frame beyond the pre-roll carry; return packets to keep."""
        if (self.end - self.base) // AAC_FRAME < AUDIO_PREROLL_FRAMES + 2:
            return []  # too little to encode yet; it all stays in the carry
        if self.encoder is None:
            self.encoder = self._open()
        out: list[EncodedPacket] = []
        while self.end - self.fed_until >= AAC_FRAME:
            i = self.fed_until - self.base
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(self.buffer[:, i : i + AAC_FRAME]),
                format="fltp",
                layout="stereo",
            )
            frame.sample_rate = AUDIO_HZ
            frame.pts = self.fed_until
            frame.time_base = Fraction(1, AUDIO_HZ)
            out += self._keep(self.encoder.encode(frame))
            self.last_fed_pts = self.fed_until
            self.fed_until += AAC_FRAME
        return out

    def _keep(self, packets: list[av.Packet[Any]]) -> list[EncodedPacket]:
        kept = [encoded(p) for p in packets if p.pts is not None and p.pts >= self.emit_from]
        if kept:
            self.emit_from = kept[-1].pts + AAC_FRAME
        return kept

    def finish(self) -> list[EncodedPacket]:
        """Drain the encoder, dropping its last packet (it saw silence after the upload)."""
        out = self.encode_ready()
        if self.encoder is not None and self.last_fed_pts is not None:
            last = self.last_fed_pts
            out += [p for p in self._keep(self.encoder.encode(None)) if p.pts < last]
            self.emit_from = last
            # The next encoder starts a few frames early so its packets join ours seamlessly.
            keep_from = last - AUDIO_PREROLL_FRAMES * AAC_FRAME - self.base
            self.buffer = self.buffer[:, max(0, keep_from) :]
            self.base += max(0, keep_from)
            self.encoder = None
        return out

    def state(self) -> dict[str, Any]:
        return {
            "audio_base_sample": self.base,
            "audio_emit_from": self.emit_from,
            "audio_carry": np.ascontiguousarray(self.buffer, np.float32).tobytes(),
        }


@dataclass
class _Assembly:
    """Packets of the segments of one job, released as soon as each is complete."""

    first_sequence: int
    starts_90k: list[int] = field(default_factory=list)
    uploads: list[int] = field(default_factory=list)  # the upload each segment comes from
    audio_starts: list[int] = field(default_factory=list)
    video: list[list[list[EncodedPacket]]] = field(default_factory=list)  # [segment][rung]
    audio: list[list[EncodedPacket]] = field(default_factory=list)
    seen_pts: list[int] = field(default_factory=list)  # highest video pts out of each rung
    seen_audio: int = -1
    released: int = 0


class StreamPipeline:
    """Encode one stream's frames into every rung and hand out finished segments."""

    def __init__(
        self,
        state: PipelineState,
        settings: EncodeSettings,
        on_segment: Callable[[SegmentMedia], None],
    ) -> None:
        self.state = state
        self.settings = settings
        self.on_segment = on_segment
        self.audio = AudioTrack(state, settings.audio_bitrate_bps)
        self.encoders: list[RungEncoder] = []
        self.assembly = _Assembly(state.next_segment)
        self.cuts_90k: list[int] = []
        self.upload_end_90k = state.video_pts_90k
        self.first_frame = False
        self.audio_seen = False
        self.rung_seconds: list[float] = []
        self.upload = -1
        self.upload_first_segment = 0

    # -- an upload's life: begin, frames and audio, finish ------------------------------
    def begin_upload(
        self, upload: int, duration_s: float, geometry: Geometry, frame_rate: float
    ) -> None:
        """Plan the cuts of an upload of this length (and, on the stream's first, the ladder).

        Uploads given to one pipeline one after another share warm encoders: their segments
        join exactly as when they arrive alone, without the encoders' start and drain.
        """
        if not self.state.rungs:
            rungs = plan_ladder(
                list(self.settings.ladder), geometry, self.settings.audio_bitrate_bps
            )
            levels = tuple(
                h264_level(r.width, r.height, frame_rate, int(r.video_bitrate_bps * 1.2))
                for r in rungs
            )
            self.state = replace(
                self.state, rungs=tuple(rungs), levels=levels, frame_rate=round(frame_rate, 3)
            )
        frame_s = 1 / frame_rate if frame_rate > 0 else 1 / 30
        parts = max(1, math.ceil(duration_s / self.settings.max_part_s(frame_s) - 1e-9))
        start, total = self.state.video_pts_90k, round(duration_s * VIDEO_HZ)
        self.cuts_90k = [start + total * i // parts for i in range(1, parts)]
        self.upload_end_90k = start + total
        if not self.encoders:  # warm from the previous upload of this job otherwise
            self.encoders = [
                RungEncoder(open_x264(r, level, frame_rate, self.settings.preset, self.threads(i)))
                for i, (r, level) in enumerate(
                    zip(self.state.rungs, self.state.levels, strict=True)
                )
            ]
            self.assembly.seen_pts = [-1] * len(self.encoders)
            self.rung_seconds = [0.0] * len(self.encoders)
        self.upload = upload
        self.upload_first_segment = len(self.assembly.starts_90k)
        self._open_segment(start)
        self.first_frame = True

    def push_video(self, frames: list[av.VideoFrame], pts_90k: int) -> None:
        """One source frame, already scaled to every rung, at its output time."""
        opened = len(self.assembly.starts_90k) - self.upload_first_segment
        cut = opened <= len(self.cuts_90k) and pts_90k >= self.cuts_90k[opened - 1]
        if cut:
            self._open_segment(pts_90k)
        new_segment, self.first_frame = cut or self.first_frame, False
        picture = av.video.frame.PictureType.I if new_segment else av.video.frame.PictureType.NONE
        for frame, enc in zip(frames, self.encoders, strict=True):
            frame.pts = pts_90k
            frame.time_base = Fraction(1, VIDEO_HZ)
            frame.pict_type = picture
            enc.put(frame)
        for rung, enc in enumerate(self.encoders):
            for p in enc.take():
                self._add_video(rung, p)
        self._encode_audio()

    def _encode_audio(self) -> None:
        for p in self.audio.encode_ready():
            self._add_audio(p)
        self._release()

    def push_audio(self, samples: np.ndarray, at_90k: int | None) -> None:
        """Stereo float32 samples (2, n) starting at output time `at_90k` (None: right after
        the previous ones)."""
        self.audio_seen = True
        self.audio.add(samples, self.audio.end if at_90k is None else self._audio_at(at_90k))
        if self.encoders:  # before the first frame, audio only waits
            self._encode_audio()

    def end_upload(self) -> None:
        """The upload's frames are all in; the timeline moves to its end."""
        if not self.audio_seen:
            # A silent track keeps every segment's tracks the same; audio that merely ends
            # early is left alone, since the next upload's audio picks up from its timestamps.
            self.audio.pad_to(self._audio_at(self.upload_end_90k))
        self.audio_seen = False
        self.state = replace(self.state, video_pts_90k=self.upload_end_90k)
        self._encode_audio()

    def finish(self) -> PipelineState:
        """Drain the encoders, release the last segments, return the state to carry."""
        for enc in self.encoders:
            enc.put(None)  # all drain at once
        for rung, enc in enumerate(self.encoders):
            for p in enc.finish():
                self._add_video(rung, p)
            self.rung_seconds[rung] += enc.busy_s
        self.encoders = []
        for p in self.audio.finish():
            self._add_audio(p)
        self._release(final=True)
        self.state = replace(
            self.state,
            next_segment=self.assembly.first_sequence + self.assembly.released,
            **self.audio.state(),
        )
        self.assembly = _Assembly(self.state.next_segment)
        return self.state

    def threads(self, rung: int) -> int:
        """x264 threads for a rung: as configured, or (0) two for the tallest and one for the
        rest. Every rung already encodes on its own thread, so frame threads only need to
        split the tallest rung, over half the work; each frame thread holds frames of its
        own (x264's auto, 1.5 per core each, cost 135 MB more on the 1080p ladder)."""
        if self.settings.encoder_threads:
            return self.settings.encoder_threads
        return 2 if rung == 0 else 1

    # -- bookkeeping -------------------------------------------------------------------
    def _audio_at(self, pts_90k: int) -> int:
        offset = pts_90k - TIMELINE_ORIGIN_S * VIDEO_HZ
        return TIMELINE_ORIGIN_S * AUDIO_HZ + offset * AUDIO_HZ // VIDEO_HZ

    def _open_segment(self, start_90k: int) -> None:
        a = self.assembly
        a.uploads.append(self.upload)
        a.starts_90k.append(start_90k)
        a.audio_starts.append(self._audio_at(start_90k))
        a.video.append([[] for _ in self.encoders])
        a.audio.append([])

    def _add_video(self, rung: int, p: EncodedPacket) -> None:
        a = self.assembly
        i = max(0, bisect.bisect_right(a.starts_90k, p.pts) - 1)
        a.video[i][rung].append(p)
        a.seen_pts[rung] = max(a.seen_pts[rung], p.pts)

    def _add_audio(self, p: EncodedPacket) -> None:
        a = self.assembly
        i = max(0, bisect.bisect_right(a.audio_starts, p.pts) - 1)
        a.audio[i].append(p)
        a.seen_audio = max(a.seen_audio, p.pts)

    def _release(self, final: bool = False) -> None:
        a = self.assembly
        while a.released < len(a.starts_90k):
            i = a.released
            last = i == len(a.starts_90k) - 1
            if not final:
                if last:
                    return
                nxt, nxt_audio = a.starts_90k[i + 1], a.audio_starts[i + 1]
                if min(a.seen_pts) < nxt or a.seen_audio < nxt_audio:
                    return
            end = self.upload_end_90k if last else a.starts_90k[i + 1]
            self.on_segment(
                SegmentMedia(
                    sequence=a.first_sequence + i,
                    upload=a.uploads[i],
                    start_90k=a.starts_90k[i],
                    duration_90k=end - a.starts_90k[i],
                    video=tuple(tuple(v) for v in a.video[i]),
                    audio=tuple(a.audio[i]),
                )
            )
            a.video[i], a.audio[i] = [], []
            a.released += 1
