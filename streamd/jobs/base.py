"""Where the server sends media work: the job-queue interface.

`LocalJobQueue` (worker processes on this machine) is the first implementation; a networked
queue feeding `streamd worker` processes elsewhere is meant to implement the same protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from streamd.model.audio import AudioJob, AudioResult
from streamd.model.jobs import (
    JobProgress,
    KeyframeIndex,
    MediaLimits,
    SourceInfo,
    TranscodeJob,
    TranscodeResult,
)


class JobQueue(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def transcode(
        self, job: TranscodeJob, on_progress: Callable[[JobProgress], None]
    ) -> TranscodeResult:
        """Run a job to the end, calling `on_progress` on the loop as segments appear."""

    async def probe(
        self, source: Path | bytes, timeout_s: float, limits: MediaLimits | None = None
    ) -> SourceInfo:
        """Inspect an upload in a worker, within `limits`; raises UnsupportedMedia."""

    async def webm_video(
        self, video: bytes, bitrate_bps: int, timeout_s: float
    ) -> tuple[bytes, bytes]:
        """A rung's segment (fMP4 init + media) as a VP9 WebM DASH segment: (init, media)."""

    async def webm_audio(
        self,
        audio: bytes,
        before: bytes | None,
        after: bytes | None,
        bitrate_bps: int,
        last: bool,
        timeout_s: float,
    ) -> tuple[bytes, bytes]:
        """A segment's audio (with its neighbours') as an Opus WebM DASH segment."""

    async def keyframes(self, source: Path, timeout_s: float) -> KeyframeIndex:
        """A recording's keyframes, from its packets, in a worker."""

    @property
    def transcoders(self) -> int:
        """How many transcode jobs of recordings run at once (one per worker)."""

    async def probe_audio(
        self, source: Path | bytes, timeout_s: float, limits: MediaLimits
    ) -> float | None:
        """Check an audio upload decodes; its duration (None when unknown). Raises
        UnsupportedMedia."""

    async def audio(self, job: AudioJob, timeout_s: float) -> AudioResult:
        """An alternate audio rendition of some published segments, encoded and written
        to the store (streamd.media.alternate); raises UnsupportedMedia."""

    async def remux(
        self,
        inputs: tuple[bytes, ...],
        container: str,
        start_s: float,
        timeout_s: float,
        captions: tuple[tuple[float, float, str], ...] = (),
        lang: str = "und",
        audio_lang: str | None = None,
    ) -> bytes:
        """Published segments (joined, one input per track file) as one file in
        `container`, its first picture at `start_s`, with `captions` (stream seconds) as a
        subtitle track in `lang` where the container has one, and (`audio_lang`) the last
        input as its only audio (streamd.media.remux); raises UnsupportedMedia."""

    async def encode_webm(
        self,
        inputs: tuple[bytes, ...],
        video_bitrate_bps: int,
        audio_bitrate_bps: int,
        timeout_s: float,
        captions: tuple[tuple[float, float, str], ...] = (),
        lang: str = "und",
        audio_lang: str | None = None,
    ) -> bytes:
        """fMP4 segments (joined, one input per track file) as WebM, VP9 and Opus, starting at 0."""

    def process_ids(self) -> dict[str, list[int]]:
        """The processes running jobs on this machine, by kind (worker, recording, prober,
        files): what /metrics reports the memory of, with the primary's, the edges' and the
        forkserver's."""

    def healthy(self) -> bool:
        """Whether the workers can take jobs."""
