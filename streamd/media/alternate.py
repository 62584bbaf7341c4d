"""Alternate audio languages (`streamd.model.audio`), in worker processes.

After an upload is published (`run_audio_job`): one audio stream decoded, put on the
stream's timeline, encoded once as AAC on the same frame grid as the main audio, cut at the
segments' boundaries and packaged as audio-only fMP4 (CMAF) and MPEG-TS. In a live session
(`LiveAlternates`): the source's further audio tracks go to the pipeline with its frames,
encoded alongside the main audio and published with each segment and part.
"""

from __future__ import annotations

import bisect
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import numpy as np

from streamd.errors import UnsupportedMedia
from streamd.media.codecs import aac
from streamd.media.codecs.aac import AUDIO_PREROLL_FRAMES, AudioTrack
from streamd.media.probe import open_media, stored_source
from streamd.media.subtitles import language
from streamd.model import layout
from streamd.model.audio import AudioJob, AudioResult, AudioSource, alternate_rendition
from streamd.model.formats import FMP4, TS
from streamd.model.jobs import RungOutput
from streamd.model.ladder import Rung
from streamd.model.pipeline import (
    AAC_FRAME,
    AUDIO_HZ,
    TIMELINE_ORIGIN_S,
    VIDEO_HZ,
    PipelineState,
    aac_frame_at,
    audio_sample_at,
)
from streamd.package import EncodedPacket, fmp4, ts
from streamd.package.base import init_name
from streamd.store import Store, open_store

if TYPE_CHECKING:
    from streamd.media.pipeline import StreamPipeline


# A live session's audio frames and video packets, of each track, kept until its first
# picture decodes and sets the timeline (a few seconds).
EARLY_KEPT = 256


class LiveAlternates:
    """A live session's audio tracks after the first: their streams, one resampler each,
    and the frames that came before the first picture (which sets the timeline)."""

    def __init__(
        self, pipeline: StreamPipeline, at_90k: Callable[[av.AudioFrame], int | None]
    ) -> None:
        self.pipeline, self.at_90k = pipeline, at_90k
        self.streams: list[Any] = []
        self.resamplers: list[av.AudioResampler] = []
        self.early: list[tuple[int, av.AudioFrame]] | None = []

    def open(self, streams: list[Any]) -> tuple[tuple[str, str, str], ...]:
        """The source's audio streams: every one after the first an alternate. Returns
        them all as (rendition, language, title), the main audio first."""
        names: list[str] = []
        for s in streams[1:]:
            name = alternate_rendition(language(s))
            names.append(name if name not in names else f"{name}-{s.index}")
        self.streams = streams[1:]
        self.resamplers = [
            av.AudioResampler(format="fltp", layout="stereo", rate=AUDIO_HZ) for _ in names
        ]
        if names:
            self.pipeline.add_alternates(names)
        renditions = [layout.AUDIO, *names]
        return tuple(
            (name, language(s), s.metadata.get("title") or "")
            for name, s in zip(renditions, streams, strict=False)
        )

    def begin(self) -> None:
        """The first picture came: the frames held until now go on."""
        early, self.early = self.early or [], None
        for k, frame in early:
            self._frame(k, frame)

    def packet(self, packet: av.Packet[Any]) -> None:
        k = self.streams.index(packet.stream)
        for frame in packet.decode():
            assert isinstance(frame, av.AudioFrame)
            self._frame(k, frame)

    def _frame(self, k: int, frame: av.AudioFrame) -> None:
        if self.early is not None:
            self.early = [*self.early[-EARLY_KEPT:], (k, frame)]
            return
        at = self.at_90k(frame)
        for out in self.resamplers[k].resample(frame):
            self.pipeline.push_alternate(k, out.to_ndarray(), at)
            at = None


def _at_90k(stream_s: float) -> int:
    return round((TIMELINE_ORIGIN_S + stream_s) * VIDEO_HZ)


class _Segments:
    """Packets cut at the segments' audio starts, each segment packaged once it is whole."""

    def __init__(self, job: AudioJob, store: Store) -> None:
        self.job, self.store = job, store
        self.segments = [span for piece in job.pieces for span in piece.segments]
        self.starts = [audio_sample_at(_at_90k(start)) for _, start, _ in self.segments]
        self.rung = Rung(job.rendition, 0, 0, 0, job.bitrate_bps)
        self.current = 0
        self.packets: list[EncodedPacket] = []
        self.outputs: list[tuple[int, RungOutput]] = []
        self.written_inits: set[str] = set()

    def add(self, packets: list[EncodedPacket]) -> None:
        for p in packets:
            i = max(0, bisect.bisect_right(self.starts, p.pts) - 1)
            while self.current < i:
                self._close()
            self.packets.append(p)

    def finish(self) -> AudioResult:
        while self.current < len(self.starts):
            self._close()
        return AudioResult(tuple(self.outputs))

    def _close(self) -> None:
        sequence = self.segments[self.current][0]
        packets, self.packets = tuple(self.packets), []
        self.current += 1
        if not packets:
            return  # shorter than an AAC frame: nothing of its own
        packaged = fmp4.package_audio(packets, self.rung)
        assert packaged.init is not None
        init = init_name(packaged.init)
        key = layout.init_key(self.job.video_id, FMP4.name, self.job.rendition, init)
        self._put(key, None, packaged.init)
        sizes = {
            FMP4.name: self._put_media(FMP4.name, sequence, packaged.media),
            TS.name: self._put_media(TS.name, sequence, ts.package_audio(packets, self.rung)),
        }
        self.outputs.append(
            (sequence, RungOutput(self.job.rendition, sizes, aac.CODECS, {FMP4.name: init}))
        )

    def _put_media(self, packaging: str, sequence: int, media: bytes) -> int:
        job = self.job
        if job.protection is not None:
            media = job.protection.encrypt(job.video_id, sequence, media)
        key = layout.segment_key(job.video_id, packaging, job.rendition, sequence)
        self._put(key, sequence, media)
        return len(media)

    def _put(self, key: str, sequence: int | None, data: bytes) -> None:
        if sequence is None:  # an init segment, named by its content: written once
            if key in self.written_inits:
                return
            self.written_inits.add(key)
        self.store.put(key, data)


class _EncoderThread:
    """An AAC encoder on a thread of its own: `encode` hands frames over (in batches, so
    the queues cost little) and returns the packets done since (FFmpeg releases the GIL
    while it encodes, so this thread's Python, cutting frames and packaging segments, runs
    meanwhile); `encode(None)` drains it."""

    BATCH = 16

    def __init__(self, codec: av.audio.codeccontext.AudioCodecContext) -> None:
        self.codec = codec
        self.pending: list[av.AudioFrame] = []
        self.frames: queue.Queue[list[av.AudioFrame] | None] = queue.Queue(4)
        self.packets: queue.SimpleQueue[list[av.Packet[Any]] | BaseException] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="alternate-aac", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while (frames := self.frames.get()) is not None:
                done: list[av.Packet[Any]] = []
                for frame in frames:
                    done += self.codec.encode(frame)
                self.packets.put(done)
            self.packets.put(self.codec.encode(None))
        except BaseException as exc:  # raised on the job's thread
            self.packets.put(exc)

    def encode(self, frame: av.AudioFrame | None = None) -> list[av.Packet[Any]]:
        if frame is not None:
            self.pending.append(frame)
            if len(self.pending) < self.BATCH:
                return self._done()
        if self.pending:
            self.frames.put(self.pending)
            self.pending = []
        if frame is None:
            self.frames.put(None)
            self.thread.join()
        return self._done()

    def _done(self) -> list[av.Packet[Any]]:
        done: list[av.Packet[Any]] = []
        while not self.packets.empty():
            item = self.packets.get()
            if isinstance(item, BaseException):
                raise item
            done += item
        return done


class _Track(AudioTrack):
    """The AAC track of a piece, its encoder on a thread of its own."""

    def _open(self) -> Any:
        return _EncoderThread(super()._open())


def run_audio_job(job: AudioJob) -> AudioResult:
    """Encode and package the alternate for every segment of the job: each piece with an
    AAC encoder of its own, pre-rolled with silence, on the stream's frame grid."""
    store = open_store(job.store_spec)
    out = _Segments(job, store)
    for piece in job.pieces:
        start_90k = _at_90k(piece.segments[0][1])
        last = piece.segments[-1]
        first = aac_frame_at(start_90k)
        state = replace(
            PipelineState(),
            audio_base_sample=first - (AUDIO_PREROLL_FRAMES + 1) * AAC_FRAME,
            audio_emit_from=first,
            audio_carry=b"",
        )
        track = _Track(state, job.bitrate_bps)
        track.emit_until = aac_frame_at(_at_90k(last[1] + last[2]))
        source = _opened(store, piece.source)
        if source is not None:
            _decode(source, piece.source, track, out, audio_sample_at(start_90k))
        for _, start, duration in piece.segments:  # silence where the source has none
            track.pad_to(audio_sample_at(_at_90k(start + duration)))
            out.add(track.encode_ready())
        track.pad_to(track.end + 3 * AAC_FRAME)  # finish drops what saw the end
        out.add(track.finish())
    return out.finish()


def _opened(store: Store, source: AudioSource) -> Path | bytes | None:
    """The source's file (None: silence, or an optional commentary that did not come)."""
    if not source.keys:
        return None
    try:
        found = stored_source(store, source.keys)
    except FileNotFoundError:
        if source.optional:
            return None
        raise
    return None if isinstance(found, Path) and not found.exists() and source.optional else found


def _decode(
    file: Path | bytes, source: AudioSource, track: AudioTrack, out: _Segments, zero: int
) -> None:
    """The source's audio onto `track`: its time `origin_s` at sample `zero`, nothing
    after the track's end."""
    until = (track.emit_until or 0) + 3 * AAC_FRAME
    for samples, at in _samples(file, source, zero, until):
        track.add(samples, at)
        out.add(track.encode_ready())


def _samples(
    file: Path | bytes, source: AudioSource, zero: int, until: int
) -> Iterator[tuple[np.ndarray, int]]:
    """The source's samples (stereo float32 at 48 kHz) with the sample each starts at."""
    resampler = av.AudioResampler(format="fltp", layout="stereo", rate=AUDIO_HZ)
    with open_media(file) as c:
        streams = c.streams.audio
        if not streams:
            raise UnsupportedMedia("the audio upload has no audio stream")
        stream = next((s for s in streams if s.index == source.stream_index), streams[0])
        if source.origin_s is not None:
            origin = source.origin_s
        elif stream.start_time is not None and stream.time_base is not None:
            origin = float(stream.start_time * stream.time_base)
        else:
            origin = 0.0
        at = zero
        try:
            for frame in c.decode(stream):
                if frame.pts is not None and frame.time_base is not None:
                    at = zero + round((float(frame.pts * frame.time_base) - origin) * AUDIO_HZ)
                for resampled in resampler.resample(frame):
                    if at >= until:
                        return
                    samples = resampled.to_ndarray()
                    yield samples, at
                    at += samples.shape[1]
        except av.FFmpegError as exc:
            raise UnsupportedMedia("the audio stopped decoding", str(exc)) from exc
