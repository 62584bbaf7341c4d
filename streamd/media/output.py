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
from streamd.model.jobs import (
    JobProgress,
    PartOutput,
    PublishedPart,
    PublishedSegment,
    RungOutput,
    TranscodeJob,
)
from streamd.model.pipeline import TIMELINE_ORIGIN_S, VIDEO_HZ
from streamd.package import PACKAGERS, PartMedia, SegmentMedia, cmaf, fmp4
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
        self.chunks: defaultdict[int, list[bytes]] = defaultdict(list)
        self.part_inits: dict[int, str] = {}
        # Seek-bar previews: not of an encrypted stream (its pictures are not kept in clear).
        self.thumbs = None if job.protection else ThumbnailTrack(store, job.video_id)

    def __call__(self, seg: SegmentMedia) -> None:
        self.count += 1
        pipeline = self.pipeline()
        state = pipeline.state
        vid = self.job.video_id
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
                if packaging == "fmp4" and self.parts_of == seg.sequence and i in self.chunks:
                    # Made of its parts, byte for byte: a segment and its parts agree.
                    media, inits[packaging] = b"".join(self.chunks[i]), self.part_inits[i]
                else:
                    started = time.perf_counter()
                    packaged = package(packets, seg.audio, rung)
                    self.rung_seconds[i] += time.perf_counter() - started
                    if packaged.init is not None:
                        inits[packaging] = self._write_init(packaging, rung.name, packaged.init)
                    if packaged.iframe is not None and self.job.protection is None:
                        iframes[packaging] = packaged.iframe
                    media = packaged.media
                if self.job.protection is not None:  # init segments stay in clear
                    media = self.job.protection.encrypt(vid, seg.sequence, media)
                key = layout.segment_key(vid, packaging, rung.name, seg.sequence)
                self.store.put(key, media)
                sizes[packaging] = len(media)  # what crosses the wire: BANDWIDTH
            codecs = f"{avc_codecs(packets[0].data)},{aac.CODECS}"
            outputs.append(RungOutput(rung.name, sizes, codecs, inits, iframes))
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
        )
        self.report(JobProgress(self.upload, self.progress, published))

    def part(self, part: PartMedia) -> None:
        """An LL-HLS part: a CMAF chunk per rung, reported with its bytes and kept to make
        up its segment's fMP4 media."""
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
            init = ""
            if i not in self.part_inits:  # the segment's first part of this rung: its IDR
                init_bytes = fmp4.init_segment(packets, part.audio, rung)
                init = self.part_inits[i] = self._write_init("fmp4", rung.name, init_bytes)
            data = cmaf.chunk(
                part.index + 1, packets, part.audio, part.video_end_dts[i], part.audio_end_pts
            )
            self.rung_seconds[i] += time.perf_counter() - started
            self.chunks[i].append(data)
            outputs.append(PartOutput(rung.name, data, init))
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
