"""AAC-LC: one encoder per upload, joined without clicks across uploads.

Each upload gets a fresh AAC encoder; to join them without a click, the next encoder is
pre-rolled with the last three frames the previous one saw and only its packets from the
join onwards are kept (an AAC packet's MDCT window spans two frames, and the encoder's
window-shape decisions need a frame or two to settle after the silent start).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import av
import numpy as np

from streamd.media.codecs.h264 import encoded
from streamd.model.pipeline import AAC_FRAME, AUDIO_HZ, PipelineState
from streamd.package import EncodedPacket

CODECS = "mp4a.40.2"  # RFC 6381: AAC-LC
AUDIO_PREROLL_FRAMES = 2
TIME_BASE = Fraction(1, AUDIO_HZ)
AUDIO_SYNC_TOLERANCE = 96  # samples (2 ms) of timestamp jitter tolerated before padding or trimming


class AudioTrack:
    """Resampled stereo audio waiting to be AAC-encoded, kept in step with the video."""

    def __init__(self, state: PipelineState, bitrate_bps: int) -> None:
        carry = np.frombuffer(state.audio_carry, dtype=np.float32)
        self.buffer = carry.reshape(2, -1).copy() if carry.size else np.zeros((2, 0), np.float32)
        self.base = state.audio_base_sample
        self.emit_from = state.audio_emit_from
        self.emit_until: int | None = None  # a recording's piece: the next one's from there
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
        cc.time_base = TIME_BASE
        cc.open()
        return cc

    def encode_ready(self) -> list[EncodedPacket]:
        """Feed every whole frame beyond the pre-roll carry; return packets to keep."""
        if self.encoder is None and (self.end - self.base) // AAC_FRAME < AUDIO_PREROLL_FRAMES + 2:
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
            frame.time_base = TIME_BASE
            out += self._keep(self.encoder.encode(frame))
            self.last_fed_pts = self.fed_until
            self.fed_until += AAC_FRAME
        self._forget_fed()
        return out

    def _forget_fed(self) -> None:
        """Drop what was fed, but for the carry the next encoder would pre-roll with: a live
        session is one long upload, and the buffer must not grow with it (each `add` copies
        it)."""
        keep_from = self.fed_until - (AUDIO_PREROLL_FRAMES + 1) * AAC_FRAME - self.base
        if keep_from > 0:
            self.buffer = self.buffer[:, keep_from:]
            self.base += keep_from

    def _keep(self, packets: list[av.Packet[Any]]) -> list[EncodedPacket]:
        until = self.emit_until
        kept = [
            encoded(p)
            for p in packets
            if p.pts is not None and p.pts >= self.emit_from and (until is None or p.pts < until)
        ]
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
            self._forget_fed()
            self.encoder = None
        return out

    def state(self) -> dict[str, Any]:
        return {
            "audio_base_sample": self.base,
            "audio_emit_from": self.emit_from,
            "audio_carry": np.ascontiguousarray(self.buffer, np.float32).tobytes(),
        }
