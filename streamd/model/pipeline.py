"""Where a stream's timeline stands, and how it is encoded: values the server keeps and hands
to worker jobs (PyAV-free, so the server never loads the media stack to hold them)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from streamd.model.ladder import Rung, RungSpec

VIDEO_HZ = 90_000
AUDIO_HZ = 48_000
AAC_FRAME = 1024  # samples per AAC-LC frame
TIMELINE_ORIGIN_S = 10  # output timestamps start here so B-frame DTS never go negative


@dataclass(frozen=True)
class EncodeSettings:
    """How a stream is encoded (from `[transcode]` in config.toml)."""

    ladder: tuple[RungSpec, ...]
    segment_duration_s: float
    preset: str
    audio_bitrate_bps: int
    encoder_threads: int = 0
    passthrough: bool = False  # live H.264 at the top rung's size: published as it came
    part_duration_s: float = 0.0  # live: LL-HLS parts about this long (0: none)
    live_preset: str = ""  # x264's for live sessions ("": `preset`)
    previews_window_s: float = 0.0  # retention: older previews leave the thumbnails track

    def x264_preset(self, live: bool) -> str:
        return self.live_preset if live and self.live_preset else self.preset

    def max_part_s(self, frame_s: float) -> float:
        """Longest segment we cut, so that EXTINF rounds to the target duration at most."""
        t = self.segment_duration_s
        return max(frame_s, min(t * 1.2, t + 0.5 - frame_s - 0.001))

    def segment_count(self, duration_s: float, frame_s: float) -> int:
        """How many segments an upload of this length is cut into (equal ones)."""
        return max(1, math.ceil(duration_s / self.max_part_s(frame_s) - 1e-9))


def audio_sample_at(pts_90k: int) -> int:
    """The audio sample (48 kHz) on the output timeline at a video time (90 kHz)."""
    offset = pts_90k - TIMELINE_ORIGIN_S * VIDEO_HZ
    return TIMELINE_ORIGIN_S * AUDIO_HZ + offset * AUDIO_HZ // VIDEO_HZ


def aac_frame_at(pts_90k: int) -> int:
    """The first sample of the AAC frame a stream's audio has at a video time: frames run
    every AAC_FRAME samples from the timeline's origin, so pieces of a recording encoded
    apart join frame for frame."""
    origin = TIMELINE_ORIGIN_S * AUDIO_HZ
    return origin + (audio_sample_at(pts_90k) - origin) // AAC_FRAME * AAC_FRAME


def part_frames(part_duration_s: float, frame_s: float) -> int:
    """Frames in an LL-HLS part: whole frames, as close to the configured length as may be."""
    return max(1, round(part_duration_s / frame_s))


def part_target_s(part_duration_s: float, frame_s: float) -> float:
    """EXT-X-PART-INF's PART-TARGET for parts of `part_frames`: their length rounded up to
    the millisecond, plus 2 ms for sources whose timestamps are whole milliseconds (FLV),
    so that no part is longer and every full part is well over the draft's 85%."""
    nominal = part_frames(part_duration_s, frame_s) * frame_s
    return (math.ceil(nominal * 1000 - 1e-6) + 2) / 1000


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
