"""A finished segment packaged in every registered container for every rung (encrypted for a
protected stream), written to the store, and reported to the server."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING

from streamd.errors import UnsupportedMedia
from streamd.media.codecs import aac
from streamd.media.codecs.h264 import avc_codecs
from streamd.media.thumbs import ThumbnailTrack
from streamd.model import layout
from streamd.model.formats import FMP4, TS
from streamd.model.jobs import (
    JobProgress,
    PartOutput,
    PublishedPart,
    PublishedSegment,
    RungOutput,
    TranscodeJob,
)
from streamd.model.ladder import Rung
from streamd.model.pipeline import TIMELINE_ORIGIN_S, VIDEO_HZ
from streamd.package import (
    PACKAGERS,
    EncodedPacket,
    Packaged,
    PartMedia,
    SegmentMedia,
    cmaf,
    fmp4,
    ts,
)
from streamd.package.base import init_name
from streamd.store import Store

if TYPE_CHECKING:
    from streamd.media.pipeline import StreamPipeline as Pipeline

Report = Callable[[JobProgress], None]


class SegmentWriter:
    """Packages each finished segment in every container for every rung and stores it."""

    def __init__(
        self, job: TranscodeJob, store: Store, report: Report, pipeline: Callable[[], Pipeline]
    ) -> None:
        self.job, self.store, self.report, self.pipeline = job, store, report, pipeline
        self.written_inits: set[str] = set()
        self.rung_seconds: defaultdict[int, float] = defaultdict(float)  # scale + mux, by rung
        self.count = 0
        self.upload = -1  # the upload being decoded, and how far into it
        self.progress = 0.0
        # LL-HLS: the parts of the segment being made, by rung, and their init segments.
        self.parts_of = -1
        self.chunks: defaultdict[str, list[bytes]] = defaultdict(list)  # by rendition
        self.part_inits: dict[str, bytes] = {}
        # Seek-bar previews: not of an encrypted stream (its pictures are not kept in clear).
        self.thumbs = (
            None
            if job.protection
            else ThumbnailTrack(store, job.video_id, job.settings.previews_window_s)
        )

    def __call__(self, seg: SegmentMedia) -> None:
        self.count += 1
        pipeline = self.pipeline()
        state = pipeline.state
        start_s = seg.start_90k / VIDEO_HZ - TIMELINE_ORIGIN_S
        if seg.sequence < self.job.publish_from:
            return  # written before a restart; its bytes are already served
        outputs = []
        for i, (rung, packets) in enumerate(zip(state.rungs, seg.video, strict=True)):
            if i < seg.skip_rungs:
                continue  # left out: transcoding is behind real time
            if not packets:
                raise UnsupportedMedia(f"segment {seg.sequence} has no video for {rung.name}")
            sizes: dict[str, int] = {}
            inits: dict[str, str] = {}
            iframes: dict[str, tuple[int, int]] = {}
            for packaging, package in PACKAGERS.items():
                started = time.perf_counter()
                packaged = None
                if packaging == FMP4.name:
                    packaged = self._from_parts(seg.sequence, rung.name)
                packaged = packaged or package(packets, seg.audio, rung)
                self.rung_seconds[i] += time.perf_counter() - started
                sizes[packaging], init = self._write(seg.sequence, packaging, rung.name, packaged)
                if init:
                    inits[packaging] = init
                if packaged.iframe is not None and self.job.protection is None:
                    iframes[packaging] = packaged.iframe
            codecs = f"{avc_codecs(packets[0].data)},{aac.CODECS}"
            outputs.append(RungOutput(rung.name, sizes, codecs, inits, iframes))
        audio: tuple[RungOutput, ...] = ()
        if outputs and seg.audio and FMP4.audio_apart:
            packaged = self._from_parts(seg.sequence, layout.AUDIO) or fmp4.package_audio(
                seg.audio, state.rungs[0]
            )
            size, init = self._write(seg.sequence, FMP4.name, layout.AUDIO, packaged)
            audio = (RungOutput(layout.AUDIO, {FMP4.name: size}, aac.CODECS, {FMP4.name: init}),)
        names = pipeline.alternate_names
        for name, packets in zip(names, seg.alternates, strict=True):
            if outputs and packets:  # alone in fMP4 and in MPEG-TS
                audio += (self._alternate(seg.sequence, name, packets, state.rungs[0]),)
        if self.thumbs is not None and outputs:
            self.thumbs.cue(seg.sequence, start_s, seg.duration_s)
        published = PublishedSegment(
            seg.sequence,
            round(start_s, 6),
            seg.duration_s,
            seg.upload,
            tuple(outputs),
            state.rungs,
            state.frame_rate,
            seg.ready_wall_s,
            audio,
        )
        self.report(JobProgress(self.upload, self.progress, published))

    def _alternate(
        self, sequence: int, name: str, packets: tuple[EncodedPacket, ...], rung: Rung
    ) -> RungOutput:
        """An alternate audio language of a live segment, in both packagings."""
        packaged = self._from_parts(sequence, name) or fmp4.package_audio(packets, rung)
        size, init = self._write(sequence, FMP4.name, name, packaged)
        ts_size, _ = self._write(sequence, TS.name, name, Packaged(ts.package_audio(packets, rung)))
        return RungOutput(name, {FMP4.name: size, TS.name: ts_size}, aac.CODECS, {FMP4.name: init})

    def _from_parts(self, sequence: int, rendition: str) -> Packaged | None:
        """A live segment's fMP4 made of its parts, byte for byte: a segment and its parts
        agree (None when it had none)."""
        if self.parts_of != sequence or rendition not in self.chunks:
            return None
        return Packaged(b"".join(self.chunks[rendition]), self.part_inits[rendition])

    def _write(
        self, sequence: int, packaging: str, rendition: str, packaged: Packaged
    ) -> tuple[int, str]:
        """Store one rendition of a segment (encrypted for a protected stream; init segments
        stay in clear) and its init segment; returns (its size, the init's name or "")."""
        init = ""
        if packaged.init is not None:
            init = self._write_init(packaging, rendition, packaged.init)
        media = packaged.media
        if self.job.protection is not None:
            media = self.job.protection.encrypt(self.job.video_id, sequence, media)
        self.store.put(layout.segment_key(self.job.video_id, packaging, rendition, sequence), media)
        return len(media), init  # what crosses the wire: BANDWIDTH

    def part(self, part: PartMedia) -> None:
        """An LL-HLS part: a CMAF chunk per rung and one of the audio, reported with their
        bytes and kept to make up their segment's fMP4 media."""
        if part.sequence < self.job.publish_from or self.job.protection is not None:
            return  # parts are clear fMP4 only: an encrypted stream is served whole segments
        if part.sequence != self.parts_of:
            self.parts_of, self.chunks, self.part_inits = part.sequence, defaultdict(list), {}
        outputs = []
        rungs = self.pipeline().state.rungs
        for i, (rung, packets) in enumerate(zip(rungs, part.video, strict=True)):
            if not packets:
                continue  # left out
            started = time.perf_counter()
            outputs.append(
                self._part_output(
                    part, rung.name, packets, part.video_end_dts[i], fmp4.init_segment, rung
                )
            )
            self.rung_seconds[i] += time.perf_counter() - started
        audio = [(layout.AUDIO, part.audio, part.audio_end_pts)]
        names = self.pipeline().alternate_names
        audio += zip(names, part.alternates, part.alternate_end_pts, strict=True)
        for name, packets, end in audio:
            if outputs and packets:
                outputs.append(
                    self._part_output(part, name, packets, end, fmp4.audio_init_segment, rungs[0])
                )
        published = PublishedPart(
            part.sequence,
            part.index,
            part.duration_90k / VIDEO_HZ,
            round(part.segment_start_90k / VIDEO_HZ - TIMELINE_ORIGIN_S, 6),
            part.independent,
            part.target_s,
            part.next_begins_segment,
            tuple(outputs),
        )
        self.report(JobProgress(self.upload, self.progress, part=published))

    def _part_output(
        self,
        part: PartMedia,
        rendition: str,
        packets: tuple[EncodedPacket, ...],
        end: int | None,
        make_init: Callable[[tuple[EncodedPacket, ...], Rung], bytes],
        rung: Rung,
    ) -> PartOutput:
        init = ""
        if rendition not in self.part_inits:  # the segment's first part: its init segment
            self.part_inits[rendition] = make_init(packets, rung)
            init = self._write_init("fmp4", rendition, self.part_inits[rendition])
        video = not rendition.startswith(layout.AUDIO)  # the audio, or an alternate language
        data = cmaf.chunk(part.index + 1, packets, end, video=video)
        self.chunks[rendition].append(data)
        return PartOutput(rendition, data, init)

    def _write_init(self, packaging: str, rung: str, init: bytes) -> str:
        """Store an init segment once (it is named by its content); returns its name."""
        name = init_name(init)
        key = layout.init_key(self.job.video_id, packaging, rung, name)
        if key not in self.written_inits:
            try:
                self.store.size(key)
            except FileNotFoundError:
                self.store.put(key, init)
            self.written_inits.add(key)
        return name
