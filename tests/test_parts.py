"""LL-HLS parts from the live pipeline: cut in decode order, every packet of a segment in
exactly one of its parts, CMAF chunks that decode as the segment does."""

from __future__ import annotations

import io
import itertools

import av
import numpy as np
import pytest

from streamd.media.pipeline import StreamPipeline
from streamd.model.ladder import Geometry, parse_ladder
from streamd.model.pipeline import (
    VIDEO_HZ,
    EncodeSettings,
    PipelineState,
    part_frames,
    part_target_s,
)
from streamd.package import PartMedia, SegmentMedia, cmaf, fmp4

LADDER = ["240p:300k", "144p:100k"]


def run_live(
    seconds: float,
    part_s: float,
    fps: float = 30.0,
    jitter: bool = False,
    audio_lead: int = 0,
    held: list[int] | None = None,
):
    """A live session through the pipeline; `audio_lead`: frames of audio pushed ahead of
    the video (as FLV interleaves them), so audio past a cut can come before the cut."""
    settings = EncodeSettings(
        tuple(parse_ladder(LADDER)), 1.0, "veryfast", 64_000, part_duration_s=part_s
    )
    segments: list[SegmentMedia] = []
    parts: list[PartMedia] = []
    pipeline = StreamPipeline(PipelineState(), settings, segments.append, on_part=parts.append)
    pipeline.begin_upload(0, None, Geometry(320, 240), fps)
    start = PipelineState().video_pts_90k
    rng = np.random.default_rng(1)
    samples = round(48_000 / fps)
    for _ in range(audio_lead):
        pipeline.push_audio(np.zeros((2, samples), np.float32), None)
    for i in range(round(seconds * fps)):
        pts = start + round(i * VIDEO_HZ / fps)
        if jitter:  # FLV: whole milliseconds
            pts = start + round(i * 1000 / fps) * 90
        pipeline.plan_frame(pts)
        frames = []
        for r in pipeline.active_rungs:
            picture = rng.integers(0, 255, (r.height, r.width, 3), dtype=np.uint8)
            frames.append(
                av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
            )
        pipeline.push_video(frames, pts)
        pipeline.push_audio(np.zeros((2, samples), np.float32), None)
        if held is not None:
            held.append(pipeline.audio.buffer.shape[1])
    pipeline.end_upload()
    pipeline.finish()
    return pipeline, segments, parts


@pytest.mark.parametrize(
    ("fps", "jitter", "audio_lead"),
    [(30.0, False, 0), (30.0, True, 0), (25.0, False, 0), (30.0, False, 5)],
)
def test_parts_hold_their_segment_exactly(fps: float, jitter: bool, audio_lead: int) -> None:
    part_s = 0.2
    _, segments, parts = run_live(3.0, part_s, fps, jitter, audio_lead)
    assert len(segments) == 3
    target = part_target_s(part_s, 1 / fps)
    assert target == pytest.approx(part_frames(part_s, 1 / fps) / fps, abs=0.003)
    for seg in segments:
        mine = [p for p in parts if p.sequence == seg.sequence]
        assert [p.index for p in mine] == list(range(len(mine)))
        assert len(mine) >= 4
        assert mine[0].independent
        # Every packet of the segment in exactly one part, in decode order.
        for rung in range(len(seg.video)):
            joined = [pkt for p in mine for pkt in p.video[rung]]
            assert joined == list(seg.video[rung])
        assert [pkt for p in mine for pkt in p.audio] == list(seg.audio)
        assert sum(p.duration_90k for p in mine) == seg.duration_90k
        for p in mine:
            assert p.duration_90k / VIDEO_HZ <= target  # the draft: never above PART-TARGET
            if p is not mine[-1] and not p.independent:
                assert p.duration_90k / VIDEO_HZ >= 0.85 * target
        assert [p.next_begins_segment for p in mine][-1]
    # Every chunk's last sample lasts until the next chunk's first: no hole, no overlap
    # (Chromium stalls over 13 ms audio holes).
    for before, after in itertools.pairwise(parts):
        assert before.audio_end_pts == after.audio[0].pts
        for rung, packets in enumerate(after.video):
            assert before.video_end_dts[rung] == packets[0].dts


def test_a_live_session_holds_the_same_audio_at_its_end_as_at_its_start() -> None:
    """A live session is one long upload: the audio waiting to be encoded must not grow with
    it (it did: every frame's audio copied all the session's audio so far)."""
    held: list[int] = []
    _, segments, _ = run_live(6.0, 0.2, held=held)
    assert len(segments) == 6
    assert max(held[30:]) <= 6 * 1024  # the encoder's pre-roll and a frame or two
    assert max(held[-30:]) <= max(held[30:60])


def test_chunks_decode_as_the_segment() -> None:
    """init + the parts' CMAF chunks (a track file for the video, one for the audio) decode
    to the same pictures and sounds at the same times as the packets do (no offset between
    the two)."""
    pipeline, segments, parts = run_live(2.0, 0.2)
    rung = pipeline.state.rungs[0]
    seg = segments[1]
    mine = [p for p in parts if p.sequence == seg.sequence]
    video = fmp4.init_segment(mine[0].video[0], rung) + b"".join(
        cmaf.chunk(p.index + 1, p.video[0], p.video_end_dts[0]) for p in mine
    )
    audio = fmp4.audio_init_segment(mine[0].audio, rung) + b"".join(
        cmaf.chunk(p.index + 1, p.audio, p.audio_end_pts, video=False) for p in mine
    )
    with av.open(io.BytesIO(video)) as c:
        assert not c.streams.audio
        video_pts = [f.pts for f in c.decode(video=0)]
    with av.open(io.BytesIO(audio)) as c:
        assert not c.streams.video
        audio_pts = [f.pts for f in c.decode(audio=0)]
    assert video_pts == sorted(p.pts for p in seg.video[0])
    assert audio_pts == [p.pts for p in seg.audio]
    # The whole-segment packaging is the same chunks' samples: same times.
    whole = fmp4.package(seg.video[0], seg.audio, rung)
    with av.open(io.BytesIO(whole.init + whole.media)) as c:
        assert [f.pts for f in c.decode(video=0)] == video_pts
