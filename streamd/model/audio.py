"""A stream's audio languages: the main audio (encoded with the video, in every TS rung and
the `audio` rendition) and the alternates beside it, each an AAC rendition of its own.

An alternate comes from a further audio track of an upload (an MKV with eng and spa) or from
a commentary uploaded apart (`POST /upload/ID/audio?lang=fr`, upload N covering the time of
video upload N). It is encoded after the video of each upload is published (`AudioJob`), on
the same AAC frame grid and cut at the same segment boundaries; an upload that has nothing
in that language gets silence, so every rendition of the group spans the same timeline.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamd.model import layout
from streamd.model.jobs import RungOutput
from streamd.model.protection import Protection

ALTERNATE_PREFIX = f"{layout.AUDIO}-"  # hls/ID/fmp4/audio-es/, hls/ID/ts/audio-es/


@dataclass(frozen=True)
class AudioLanguage:
    """One audio rendition of a stream, as EXT-X-MEDIA and the MPD name it."""

    rendition: str  # its folder: `audio` for the main, `audio-LANG` for an alternate
    lang: str  # BCP 47 (`und` when the source did not say)
    name: str  # what players list (EXT-X-MEDIA's NAME)
    init: str = ""  # an alternate's fMP4 init segment (one for all its segments)

    @property
    def main(self) -> bool:
        return self.rendition == layout.AUDIO


def alternate_rendition(lang: str) -> str:
    return ALTERNATE_PREFIX + lang


def commentary_key(video_id: str, lang: str, upload: int) -> str:
    """Where an audio upload for the time of video upload `upload` is kept, as it came."""
    return f"ingest/{video_id}/audio/{lang}/{upload:06d}"


@dataclass(frozen=True)
class AudioSource:
    """Where an alternate's audio for one upload comes from: an audio stream of a file in
    the store (`keys`, `stream_index`: the file's first audio stream when None), or silence
    (no keys)."""

    keys: tuple[str, ...] = ()
    stream_index: int | None = None
    # The source time at the first segment's start: the upload's first video frame for a
    # further track of an upload; None, the stream's own start, for a commentary file.
    origin_s: float | None = None
    optional: bool = False  # a commentary that may not have come: silence if absent


@dataclass(frozen=True)
class AudioPiece:
    """One upload's segments, (sequence, start_s, duration_s) on the stream's timeline, in
    order, and where their audio comes from."""

    upload: int
    source: AudioSource
    segments: tuple[tuple[int, float, float], ...]


@dataclass(frozen=True)
class AudioJob:
    """Encode one alternate for some published segments, piece by piece."""

    video_id: str
    store_spec: str
    rendition: str
    pieces: tuple[AudioPiece, ...]
    bitrate_bps: int
    protection: Protection | None = None


@dataclass(frozen=True)
class AudioResult:
    """The alternate's output for each segment, by sequence, in the job's order."""

    outputs: tuple[tuple[int, RungOutput], ...]
