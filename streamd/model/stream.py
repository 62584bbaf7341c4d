"""A stream's record: its uploads, its published segments, where its timeline stands.

Plain data, owned by the event loop. How it is stored lives in `streamd.store`, how the API
shows it in `streamd.web.api`, who changes it in `streamd.streams`. Every question asked of
it on a hot path (the next upload to run, the segment at a time, a rung's bandwidth) costs
the same whatever the stream's length.
"""

from __future__ import annotations

import bisect
import itertools
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from typing import Any

from streamd.model import layout
from streamd.model.audio import AudioLanguage
from streamd.model.bandwidth import Bandwidth
from streamd.model.captions import CaptionTrack
from streamd.model.jobs import PublishedSegment, RungOutput
from streamd.model.ladder import Rung
from streamd.model.pipeline import PipelineState
from streamd.model.protection import Protection

HELD, QUEUED, TRANSCODING, PUBLISHED, FAILED = (
    "held",
    "queued",
    "transcoding",
    "published",
    "failed",
)
UPLOAD_STATES = (HELD, QUEUED, TRANSCODING, PUBLISHED, FAILED)
RECORDING = "vod"  # Upload.ingest of the pieces of a recording uploaded whole
DONE = (PUBLISHED, FAILED)
AAC_FRAME_S = 1024 / 48_000  # a segment shorter has no AAC frame of its own


@dataclass
class Upload:
    """One received upload (a source segment), by its number."""

    number: int
    sha256: str
    size_bytes: int
    keys: tuple[str, ...]
    received_wall_s: float
    state: str = QUEUED
    error: str | None = None
    source: dict[str, Any] | None = None
    percent: float = 0.0
    session_start: bool = False  # the first upload of a restarted encoder: a new timeline
    # A live session's protocol (rtmp, srt, http), RECORDING for a piece of a recording
    # uploaded whole (its plan in `source["piece"]`); "" for a segment upload.
    ingest: str = ""


@dataclass(frozen=True)
class Segment:
    """A published output segment, in the rungs it was made in (a rung it lacks, or all of
    them for a missing upload, is an EXT-X-GAP in that rung's playlist)."""

    sequence: int
    start_s: float
    duration_s: float
    upload: int
    published_wall_s: float
    rungs: tuple[RungOutput, ...]
    discontinuity: bool = False  # starts a new timeline (the encoder restarted)
    audio: tuple[RungOutput, ...] = ()  # audio renditions packaged apart (fMP4)

    @classmethod
    def published(cls, seg: PublishedSegment, wall_s: float, discontinuity: bool) -> Segment:
        return cls(
            seg.sequence,
            seg.start_s,
            seg.duration_s,
            seg.upload,
            wall_s,
            seg.rungs,
            discontinuity,
            seg.audio,
        )

    @property
    def gap(self) -> bool:
        """A stretch of the timeline with no media at all (its upload never came)."""
        return not self.rungs

    def rung(self, name: str) -> RungOutput | None:
        """A rung's output, or an audio rendition's."""
        return next((r for r in (*self.rungs, *self.audio) if r.name == name), None)

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    @property
    def size_bytes(self) -> int:
        """Its media's bytes on disk, every rung and packaging (what retention counts)."""
        return sum(sum(o.size_bytes.values()) for o in (*self.rungs, *self.audio))


@dataclass(frozen=True)
class StreamKey:
    """A publish key for one stream, made through the admin API; only its hash is kept."""

    key_id: str
    video_id: str
    key_sha256: str
    created_wall_s: float
    revoked_wall_s: float | None = None


@dataclass
class Stream:
    """A stream's record."""

    video_id: str
    created_wall_s: float
    next_upload: int | None = None  # the upload number to transcode next
    uploads: dict[int, Upload] = field(default_factory=dict)
    # The segments its playlists name, from `first_sequence` on (retention moves it on).
    segments: list[Segment] = field(default_factory=list)
    first_sequence: int = 0
    discontinuity_sequence: int = 0  # new timelines among the segments before it
    pipeline: PipelineState = field(default_factory=PipelineState)
    ending: bool = False
    ended: bool = False
    end_after: int | None = None  # end once this upload arrives (ffmpeg's last playlist)
    start_wall_s: float | None = None  # wall-clock time of the stream's second 0
    ingest_init: str | None = None  # fMP4 init segment ffmpeg pushed, for its .m4s uploads
    rungs: tuple[Rung, ...] = ()  # the published ladder
    frame_rate: float = 0.0
    protection: Protection | None = None  # AES-128, chosen when the stream is made
    realtime_factor: float | None = None  # of the last upload's transcode (not persisted)
    publish_delay_s: float | None = None  # of the last segment (not persisted)
    transcode_wall_s: tuple[float, float | None] | None = None  # a recording's (not persisted)
    solo_until: int = -1  # uploads up to this number go one per job (after a failed run)
    # The provider's encoder session (X-Publish-Session, or a restart ffmpeg's segment names
    # show): upload numbers of a session are offset by its base, so a restart counting from
    # 0 again goes on after everything received before it.
    session: str | None = None
    session_base: int = 0
    session_first: int | None = None  # the upload that starts the current session's timeline
    discontinuity_due: bool = False  # the next published segment starts a new timeline
    updated_wall_s: float = 0.0
    # Kept as uploads and segments come, so no question needs a walk over the history.
    pending: dict[int, Upload] = field(default_factory=dict, repr=False)  # not yet done
    counts: Counter[str] = field(default_factory=Counter, repr=False)  # uploads by state
    highest_upload: int = -1
    bandwidth: dict[tuple[str, str], Bandwidth] = field(default_factory=dict, repr=False)
    codecs: dict[str, str] = field(default_factory=dict, repr=False)  # by rung, the latest
    audio_codecs: dict[str, str] = field(default_factory=dict, repr=False)  # by rendition
    # Overload (not persisted: a restarted server starts from the whole ladder again).
    dropped_rungs: int = 0  # the tallest rungs left out of new segments: transcoding fell behind
    calm_jobs: int = 0  # jobs in a row that would have kept up with one more rung
    rung_cost: dict[str, float] = field(default_factory=dict, repr=False)  # worker s per media s
    arrivals: deque[tuple[float, float]] = field(  # (received_wall_s, duration_s), latest few
        default_factory=lambda: deque(maxlen=6), repr=False
    )
    # Retention: bytes of `segments`; segments that left the playlists, each with the time
    # its files may go (RFC 8216 6.2.2: they stay available a while), oldest first.
    kept_bytes: int = 0
    retired: deque[tuple[float, Segment]] = field(default_factory=deque, repr=False)
    captions: dict[str, CaptionTrack] = field(default_factory=dict, repr=False)  # by language
    # Audio renditions by folder, the main first (streamd.model.audio); alternates are
    # added to segments after they are published (`add_audio`).
    audio_languages: dict[str, AudioLanguage] = field(default_factory=dict, repr=False)
    # Every segment before this one has the alternate (or needs none), by rendition.
    audio_made: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def state(self) -> str:
        if self.ended:
            return "ended"
        return "live" if self.segments else "waiting"

    @property
    def vod(self) -> bool:
        """Made from one recording uploaded whole (?mode=vod): a VOD playlist once done."""
        first = next(iter(self.uploads.values()), None)
        return first is not None and first.ingest == RECORDING

    @property
    def recording(self) -> bool:
        """Whether uploads come faster than real time (a recording pushed whole, not a live
        event): its transcode may take longer than its duration without anyone waiting."""
        if len(self.arrivals) < 3:
            return False
        span_s = self.arrivals[-1][0] - self.arrivals[0][0]
        media_s = sum(d for _, d in itertools.islice(self.arrivals, 1, None))
        return media_s > 2 * span_s

    @property
    def duration_s(self) -> float:
        return round(self.segments[-1].end_s, 3) if self.segments else 0.0

    @property
    def next_sequence(self) -> int:
        """The sequence number the next published segment gets."""
        return self.first_sequence + len(self.segments)

    def segment(self, sequence: int) -> Segment | None:
        """A segment the playlists name, by its sequence number."""
        i = sequence - self.first_sequence
        return self.segments[i] if 0 <= i < len(self.segments) else None

    # -- uploads ---------------------------------------------------------------------------
    def add_upload(self, upload: Upload) -> None:
        """A new upload (or one loaded back from the store)."""
        self.uploads[upload.number] = upload
        self.highest_upload = max(self.highest_upload, upload.number)
        self.arrivals.append((upload.received_wall_s, (upload.source or {}).get("durationS") or 0))
        self.counts[upload.state] += 1
        if upload.state not in DONE:
            self.pending[upload.number] = upload

    def set_state(self, upload: Upload, state: str) -> None:
        self.counts[upload.state] -= 1
        self.counts[state] += 1
        upload.state = state
        if state in DONE:
            self.pending.pop(upload.number, None)
        else:
            self.pending[upload.number] = upload

    def drop_upload(self, number: int) -> None:
        """Forget a done upload (retention deleted what it made)."""
        upload = self.uploads.pop(number)
        self.counts[upload.state] -= 1
        self.pending.pop(number, None)

    def next_number(self) -> int:
        """The number of an upload that came without one: the one after the highest seen."""
        return self.highest_upload + 1

    def upload_number(self, session: str | None, number: int | None) -> int:
        """An upload's number in the stream, given its encoder session and its number there.

        A session other than the current one starts after the highest upload received (its
        first upload then starts a new timeline); a retry within a session keeps its number,
        so the usual duplicate and conflict rules apply.
        """
        if session is not None and session != self.session:
            self.session = session
            if self.uploads:
                self.session_first = self.highest_upload + 1
                self.session_base = self.session_first - (number or 0)
        return self.next_number() if number is None else self.session_base + number

    def counting_again(self, number: int, sha256: str) -> bool:
        """Whether an encoder that numbers its uploads by name (ffmpeg's HLS PUT) started
        again from 0: a restart, not a retry, when the bytes differ."""
        first = self.uploads.get(self.session_base)
        return number == 0 and first is not None and first.sha256 != sha256

    def refresh_states(self) -> None:
        """Uploads waiting in an unbroken run from `next_upload` are queued; the rest held."""
        n = self.next_upload
        if n is None:
            return
        while (up := self.pending.get(n)) is not None:
            if up.state == HELD:
                self.set_state(up, QUEUED)
            n += 1
        for number, up in list(self.pending.items()):
            if number > n and up.state == QUEUED:
                self.set_state(up, HELD)

    def next_jobs(self, limit: int) -> list[Upload]:
        """The queued uploads from `next_upload` on, in an unbroken run of at most `limit`."""
        run: list[Upload] = []
        n = self.next_upload
        while n is not None and len(run) < limit:
            up = self.pending.get(n)
            if up is None or up.state not in (QUEUED, TRANSCODING):
                break
            if run and up.session_start:  # a new timeline starts a job of its own
                break
            run.append(up)
            n += 1
        return run

    def skip_gap(self) -> bool:
        """Jump over missing uploads to the first held one (on end, or after a timeout)."""
        held = [n for n, u in self.pending.items() if u.state == HELD]
        if not held:
            return False
        self.next_upload = min(held)
        self.refresh_states()
        return True

    # -- segments --------------------------------------------------------------------------
    def add_segment(self, seg: Segment) -> None:
        if not self.segments:  # the first, or the first kept (loaded back)
            self.first_sequence = seg.sequence
        self.segments.append(seg)
        self.kept_bytes += seg.size_bytes
        for out in seg.rungs:
            self.codecs[out.name] = out.codecs
        for out in seg.audio:
            self.audio_codecs[out.name] = out.codecs
            self._alternate_made(out)
        for out in (*seg.rungs, *seg.audio):
            self._tally(out, seg.duration_s)

    def _tally(self, out: RungOutput, duration_s: float) -> None:
        """A rendition's segment in its bit rates, in each packaging (and its I-frames')."""
        for packaging, size in out.size_bytes.items():
            self.bandwidth.setdefault((out.name, packaging), Bandwidth()).add(size, duration_s)
        for packaging, (_, length) in out.iframes.items():
            tally = self.bandwidth.setdefault((out.name, f"{packaging}-iframes"), Bandwidth())
            tally.add(length, duration_s)

    def add_audio(self, sequence: int, out: RungOutput) -> bool:
        """An alternate audio rendition of a published segment; False if the segment left
        (retention)."""
        i = sequence - self.first_sequence
        if not 0 <= i < len(self.segments):
            return False
        seg = self.segments[i] = replace(self.segments[i], audio=(*self.segments[i].audio, out))
        self._alternate_made(out)
        self.kept_bytes += sum(out.size_bytes.values())
        self._tally(out, seg.duration_s)
        return True

    def _alternate_made(self, out: RungOutput) -> None:
        """An alternate's output: its mark moves on; its first names its init segment (one
        for all: the encoder's settings never change)."""
        self.advance_audio(out.name)
        track = self.audio_languages.get(out.name)
        if track is not None and not track.init and not track.main:
            self.audio_languages[out.name] = replace(track, init=out.inits.get("fmp4", ""))

    def audio_from(self, rendition: str) -> int:
        """The first segment an alternate is not made for yet (those after it may be: a
        live session's alternates come with its segments, the silence before them later)."""
        return max(self.audio_made.get(rendition, 0), self.first_sequence)

    def advance_audio(self, rendition: str) -> None:
        """Move the alternate's mark over the segments that have it, or need none (a gap,
        or one shorter than an AAC frame, which is silent)."""
        n = self.audio_from(rendition)
        while (seg := self.segment(n)) is not None and (
            seg.gap or seg.duration_s < AAC_FRAME_S or seg.rung(rendition) is not None
        ):
            n += 1
        self.audio_made[rendition] = n

    def audio_position(self, rendition: str) -> int:
        """Where an audio rendition is among the stream's: the main first, then the
        alternates in the order they came (the rows of a segment's outputs keep it)."""
        if rendition == layout.AUDIO:
            return 0
        names = [a.rendition for a in self.alternates]
        return 1 + (names.index(rendition) if rendition in names else len(names))

    @property
    def alternates(self) -> list[AudioLanguage]:
        return [a for a in self.audio_languages.values() if not a.main]

    def retire(self, first_sequence: int, due_wall_s: float) -> list[Segment]:
        """Segments before `first_sequence` leave the playlists; their files may go at
        `due_wall_s`. The last segment always stays."""
        count = min(first_sequence - self.first_sequence, len(self.segments) - 1)
        if count <= 0:
            return []
        gone, self.segments = self.segments[:count], self.segments[count:]
        self.first_sequence += count
        for seg in gone:
            self.kept_bytes -= seg.size_bytes
            self.discontinuity_sequence += seg.discontinuity
            self.retired.append((due_wall_s, seg))
        return gone

    def segment_at(self, time_s: float) -> Segment | None:
        i = bisect.bisect_right(self.segments, time_s, key=lambda s: s.start_s) - 1
        if i < 0:
            return None
        seg = self.segments[i]
        return seg if time_s < seg.end_s and not seg.gap else None

    def segments_between(self, from_s: float, to_s: float) -> list[Segment]:
        """The segments that overlap from_s..to_s, found by bisection (a clip of a long
        stream costs what it holds, not the stream's length)."""
        first = max(0, bisect.bisect_right(self.segments, from_s, key=lambda s: s.start_s) - 1)
        last = bisect.bisect_left(self.segments, to_s, key=lambda s: s.start_s)
        return [s for s in self.segments[first:last] if s.end_s > from_s]

    def rates(self, rung: str, packaging: str) -> tuple[int, int]:
        """(peak, average) bit rate of a rung's published segments, audio included."""
        tally = self.bandwidth.get((rung, packaging))
        return tally.rates() if tally else (0, 0)
