"""Where stream state is kept: the small interface the server writes every change through.

SQLite under the data dir is the first implementation (`streamd.store.sqlite`); a server
database for several origins is meant to implement the same calls. Each write is one
transaction, and what it writes is proportional to the change, never to the stream's length.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from streamd.model.audio import AudioLanguage
from streamd.model.captions import CaptionTrack, Cue
from streamd.model.jobs import RungOutput
from streamd.model.stream import Segment, Stream, StreamKey, Upload


class StateStore(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def load(self) -> list[Stream]:
        """Every stream, with its uploads and segments, as last recorded."""

    async def record(
        self,
        stream: Stream,
        *,
        uploads: Sequence[Upload] = (),
        segments: Sequence[Segment] = (),
        pipeline: bool = False,
    ) -> None:
        """One transaction: the stream's own fields (where its playlists start among
        them), these uploads (inserted or updated), these new segments, and its pipeline
        state when `pipeline` is set."""

    async def forget(
        self,
        video_id: str,
        segments: Sequence[int],
        uploads: Sequence[int],
        cues_before_s: float = 0.0,
    ) -> None:
        """One transaction: these segments and uploads are gone, and the cues that ended
        before `cues_before_s` (retention deleted them)."""

    async def add_cues(self, video_id: str, track: CaptionTrack, cues: Sequence[Cue]) -> None:
        """One transaction: a caption track (made if new, in the stream's order) and cues."""

    async def add_audio(
        self,
        video_id: str,
        language: AudioLanguage,
        position: int,
        outputs: Sequence[tuple[int, RungOutput]] = (),
    ) -> None:
        """One transaction: an audio language (made, or its fields changed) and its
        outputs for published segments, by sequence (`position`: the language's among
        the stream's, the main's 0)."""

    async def delete_stream(self, video_id: str) -> None:
        """Forget a stream: its record, uploads, segments and keys."""

    async def load_keys(self) -> list[StreamKey]:
        """Every per-stream publish key, revoked ones included."""

    async def save_key(self, key: StreamKey) -> None:
        """Record a new key, or a key's revocation."""
