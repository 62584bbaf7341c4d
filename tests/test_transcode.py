"""Uploads in common containers/codecs come out as the ladder, continuous across uploads."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import m3u8
import numpy as np
import pytest
from aiohttp.test_utils import TestClient

from streamd.app import create_app
from streamd.config import Config, TranscodeConfig
from streamd.jobs.local import LocalJobQueue
from streamd.model.jobs import JobProgress, TranscodeJob, TranscodeResult
from tests.conftest import (
    AUTH,
    AppClient,
    MediaFactory,
    fetch,
    ffprobe,
    published,
    upload,
    wait_for,
)

FORMATS = [
    # (extension, video codec, audio codec, extra ffmpeg args)
    ("mp4", "libx264", "aac", ()),
    ("mov", "libx265", "aac", ("-tag:v", "hvc1", "-x265-params", "log-level=error")),
    ("webm", "libvpx-vp9", "libopus", ()),
    ("webm", "libvpx", "libvorbis", ()),
    ("mkv", "libsvtav1", "libopus", ()),
    ("ts", "libx264", "libmp3lame", ()),
    ("flv", "libx264", "aac", ()),
    ("mkv", "libx264", None, ()),
]


async def _segments(
    client: TestClient, video_id: str, packaging: str, rung: str, tmp_path: Path
) -> list[Path]:
    """Download a rung's media playlist and segments (fMP4: init prepended to each)."""
    text = (await fetch(client, f"/hls/{video_id}/{packaging}/{rung}/index.m3u8")).decode()
    playlist = m3u8.loads(text)
    out = []
    for seg in playlist.segments:
        data = await fetch(client, f"/hls/{video_id}/{packaging}/{rung}/{seg.uri}")
        if packaging == "fmp4":
            data = await fetch(client, f"/hls/{video_id}/fmp4/{rung}/{seg.init_section.uri}") + data
        path = tmp_path / f"{video_id}-{rung}-{seg.uri}.{'mp4' if packaging == 'fmp4' else 'ts'}"
        path.write_bytes(data)
        out.append(path)
    return out


def _frames(path: Path) -> list[tuple[float, bool]]:
    """(pts seconds, keyframe) of every video packet, decode order."""
    with av.open(str(path)) as c:
        return [
            (float(p.pts * p.time_base), p.is_keyframe)
            for p in c.demux(video=0)
            if p.pts is not None
        ]


@pytest.mark.parametrize(
    ("ext", "vcodec", "acodec", "extra"), FORMATS, ids=[f"{e}-{v}-{a}" for e, v, a, _ in FORMATS]
)
async def test_container_and_codec_matrix(
    client: TestClient,
    media: MediaFactory,
    tmp_path: Path,
    ext: str,
    vcodec: str,
    acodec: str | None,
    extra: tuple[str, ...],
) -> None:
    clip = media(ext, vcodec=vcodec, acodec=acodec, duration_s=1.0, extra=extra)
    vid = f"fmt-{ext}-{vcodec}-{acodec}".replace("lib", "")
    await upload(client, vid, clip, number=0)
    info = await wait_for(client, vid, published(1))
    assert info["uploads"]["published"] == 1, info["uploadList"]
    for packaging in ("ts", "fmp4"):
        for rung, size in (("240p", (320, 240)), ("144p", (192, 144))):
            (seg,) = await _segments(client, vid, packaging, rung, tmp_path)
            probe = ffprobe(seg, "-show_streams")
            streams = {s["codec_type"]: s for s in probe["streams"]}
            assert (streams["video"]["width"], streams["video"]["height"]) == size
            assert streams["video"]["codec_name"] == "h264"
            assert streams["video"]["profile"] == "High"
            frames = _frames(seg)
            assert frames[0][1], "segment must start with a keyframe"
            assert len(frames) == 30
            # TS carries the audio in every rung; fMP4 (CMAF) in a rendition of its own.
            assert ("audio" in streams) == (packaging == "ts")
            if packaging == "fmp4":
                (audio,) = await _segments(client, vid, packaging, "audio", tmp_path)
                streams = {s["codec_type"]: s for s in ffprobe(audio, "-show_streams")["streams"]}
                assert "video" not in streams
            # AAC-LC stereo 48 kHz, silent if the upload had no audio.
            assert streams["audio"]["codec_name"] == "aac"
            assert streams["audio"]["profile"] == "LC"
            assert streams["audio"]["sample_rate"] == "48000"
            assert streams["audio"]["channels"] == 2


async def test_rungs_taller_than_the_source_are_dropped(
    make_client: AppClient, media: MediaFactory
) -> None:
    client = await make_client(
        transcode=TranscodeConfig(
            ladder=["1080p:5000k", "720p:2800k", "480p:1400k", "360p:800k"], workers=2
        )
    )
    await upload(client, "small", media("mp4", size="854x480", duration_s=1.0), number=0)
    info = await wait_for(client, "small", published(1))
    assert [(r["name"], r["width"], r["height"]) for r in info["rungs"]] == [
        ("480p", 854, 480),
        ("360p", 640, 360),
    ]


async def test_rotation_and_aspect_are_applied(
    client: TestClient, media: MediaFactory, tmp_path: Path
) -> None:
    src = media("mp4", duration_s=1.0)
    rotated = tmp_path / "rotated.mp4"
    with av.open(str(src)) as inp, av.open(str(rotated), "w") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream_from_template(vin, opaque=True)
        vout.set_display_rotation(90)  # a phone held upright
        for p in inp.demux(vin):
            if p.dts is not None:
                p.stream = vout
                out.mux(p)
    await upload(client, "rot", rotated, number=0)
    info = await wait_for(client, "rot", published(1))
    # 320x240 shown rotated is 240x320 portrait: "240p" is its short side.
    assert [(r["width"], r["height"]) for r in info["rungs"]] == [(240, 320), (144, 192)]
    (seg,) = await _segments(client, "rot", "ts", "240p", tmp_path)
    with av.open(str(seg)) as c:
        frame = next(c.decode(video=0))
        assert (frame.width, frame.height) == (240, 320)
        assert not frame.rotation

    anamorphic = media("mp4", size="240x240", duration_s=1.0, extra=("-vf", "setsar=4/3"))
    await upload(client, "sar", anamorphic, number=0)
    info = await wait_for(client, "sar", published(1))
    assert [(r["width"], r["height"]) for r in info["rungs"]] == [(320, 240), (192, 144)]


async def test_vfr_source(client: TestClient, media: MediaFactory, tmp_path: Path) -> None:
    # Frames at irregular times: the output keeps them (no frame-rate conversion).
    clip = media(
        "mkv",
        duration_s=2.0,
        rate=30,
        extra=("-vf", "setpts='N/30/TB+if(gt(N,20),0.2/TB,0)'", "-fps_mode", "vfr"),
    )
    await upload(client, "vfr", clip, number=0)
    await wait_for(client, "vfr", published(1))
    segs = await _segments(client, "vfr", "ts", "240p", tmp_path)
    pts = sorted(t for seg in segs for t, _ in _frames(seg))
    gaps = np.diff(pts)
    assert gaps.max() == pytest.approx(0.2 + 1 / 30, abs=0.01)
    assert len(pts) == 60


async def test_continuity_across_uploads(
    client: TestClient, media: MediaFactory, tmp_path: Path
) -> None:
    """Three 2 s uploads cut from one recording join seamlessly in every rung."""
    parts = media.split(media("mp4", duration_s=6, gop=30, sample_rate=44100), 2.0)
    for i, part in enumerate(parts):
        await upload(client, "cont", part, number=i)
    await wait_for(client, "cont", published(3))
    boundaries = {}
    for packaging in ("ts", "fmp4"):
        for rung in ("240p", "144p"):
            segs = await _segments(client, "cont", packaging, rung, tmp_path)
            assert len(segs) == 3
            frames = [_frames(s) for s in segs]
            assert all(f[0][1] for f in frames), "every segment starts with an IDR"
            starts = [min(t for t, _ in f) for f in frames]
            # Both packagings present each segment at its place on the timeline (10 s on):
            # fMP4 video was once shifted by its B-frame delay against its audio.
            assert starts == pytest.approx([10.0, 12.0, 14.0], abs=1e-6)
            boundaries[(packaging, rung)] = starts
            if packaging == "fmp4":  # decode times: a constant B-frame delay before that
                tfdts = [_tfdt(s, track=1) for s in segs]
                assert np.diff(tfdts).tolist() == [180_000, 180_000]
                assert 900_000 - 3 * 3000 <= tfdts[0] <= 900_000
            pts = sorted(t for f in frames for t, _ in f)
            steps = np.diff(pts)
            assert steps.max() == pytest.approx(1 / 30, abs=1e-3), "no gap between uploads"
            assert steps.min() == pytest.approx(1 / 30, abs=1e-3), "no overlap either"
            if packaging == "ts":
                joined = tmp_path / f"joined-{rung}.ts"
                joined.write_bytes(b"".join(s.read_bytes() for s in segs))
                _check_audio_joins(joined)
    assert len({tuple(round(s, 4) for s in v) for v in boundaries.values()}) == 1, (
        "all rungs share segment boundaries"
    )


def _tfdt(path: Path, track: int) -> int:
    """baseMediaDecodeTime of a track's first fragment, read from the boxes themselves."""
    data = path.read_bytes()

    def boxes(start: int, end: int) -> list[tuple[bytes, int, int]]:
        out = []
        while start < end:
            size = int.from_bytes(data[start : start + 4], "big")
            out.append((data[start + 4 : start + 8], start, size))
            start += size
        return out

    for kind, off, size in boxes(0, len(data)):
        if kind != b"moof":
            continue
        for kind2, off2, size2 in boxes(off + 8, off + size):
            if kind2 != b"traf":
                continue
            inner = dict((k, o) for k, o, _ in boxes(off2 + 8, off2 + size2))
            if int.from_bytes(data[inner[b"tfhd"] + 12 : inner[b"tfhd"] + 16], "big") == track:
                o = inner[b"tfdt"]
                width = 8 if data[o + 8] == 1 else 4
                return int.from_bytes(data[o + 12 : o + 12 + width], "big")
    raise AssertionError("no tfdt")


def _check_audio_joins(path: Path) -> None:
    with av.open(str(path)) as c:
        packets = [p for p in c.demux(audio=0) if p.pts is not None]
        tb = packets[0].time_base
        steps = {int((b.pts - a.pts) * tb * 48000) for a, b in itertools.pairwise(packets)}
        assert steps == {1024}, f"audio packets must follow each other exactly: {steps}"
    with av.open(str(path)) as c:
        x = np.concatenate([f.to_ndarray()[0] for f in c.decode(audio=0)])
    # A 440 Hz tone: any click at a join shows as a spike in the second difference.
    d2 = np.abs(np.diff(x[2048:], 2))
    assert d2.max() < 10 * np.percentile(d2, 99.9), "audible step at an upload join"


async def test_long_upload_is_cut_into_target_length_segments(
    client: TestClient, media: MediaFactory, tmp_path: Path
) -> None:
    await upload(client, "long", media("mp4", duration_s=7.0, gop=90), number=0)
    await wait_for(client, "long", published(1))
    playlist = m3u8.loads((await fetch(client, "/hls/long/ts/240p/index.m3u8")).decode())
    durations = [s.duration for s in playlist.segments]
    assert len(durations) == 3
    assert sum(durations) == pytest.approx(7.0, abs=0.01)
    assert all(round(d) <= playlist.target_duration for d in durations)
    segs = await _segments(client, "long", "ts", "144p", tmp_path)
    assert all(_frames(s)[0][1] for s in segs)
    assert Fraction(playlist.target_duration) == 2


class RecordingQueue(LocalJobQueue):
    """The real worker pool, noting which uploads each job carried."""

    def __init__(self) -> None:
        super().__init__(workers=1)
        self.jobs: list[list[int]] = []

    async def transcode(
        self, job: TranscodeJob, on_progress: Callable[[JobProgress], None]
    ) -> TranscodeResult:
        self.jobs.append([i.upload for i in job.inputs])
        return await super().transcode(job, on_progress)


async def test_a_backlog_runs_through_warm_encoders_and_joins_the_same(
    aiohttp_client: Any, config: Config, media: MediaFactory, tmp_path: Path
) -> None:
    jobs = RecordingQueue()
    client = await aiohttp_client(create_app(config, jobs=jobs), headers=AUTH)
    parts = media.split(media("mp4", duration_s=8, gop=30), 2.0)
    await upload(client, "backlog", parts[0], number=0)
    await wait_for(client, "backlog", published(1))
    for i in (2, 3, 1):  # 2 and 3 wait for 1, then all three are queued at once
        await upload(client, "backlog", parts[i], number=i)
    await wait_for(client, "backlog", published(4))
    assert jobs.jobs == [[0], [1, 2, 3]]
    segs = await _segments(client, "backlog", "ts", "240p", tmp_path)
    assert len(segs) == 4
    assert all(_frames(s)[0][1] for s in segs), "every segment starts with an IDR"
    pts = sorted(t for s in segs for t, _ in _frames(s))
    assert np.diff(pts).max() == pytest.approx(1 / 30, abs=1e-3)
    assert len(pts) == 240
    joined = tmp_path / "backlog.ts"
    joined.write_bytes(b"".join(s.read_bytes() for s in segs))
    _check_audio_joins(joined)
