"""iter_segments cuts real (tiny, generated) recordings into standalone keyframe-led pieces."""

from __future__ import annotations

import io
import itertools
import logging
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.logging
import numpy as np
import pytest

from streamd.client.segmenter import (
    MATROSKA,
    MPEGTS,
    SourceSegment,
    _Cutter,
    container_for,
    iter_segments,
    media_duration_s,
)
from streamd.errors import UnsupportedMedia

FPS = 30
SECONDS = 5.0
AUDIO_RATE = 48_000
FRAME_S = 1 / FPS


def make_media(
    path: Path,
    *,
    video: str = "libx264",
    audio: str | None = "aac",
    seconds: float = SECONDS,
    gop: int = FPS,
    open_gop: bool = False,
) -> Path:
    """Encode a 320x240 test pattern (and a 440 Hz tone) with a keyframe every `gop` frames."""
    keyint = f"keyint={gop}:min-keyint={gop}:scenecut=0:log-level=error"
    options = {
        "libx264": {"preset": "ultrafast", "x264-params": f"{keyint}:bframes=2"},
        # x265 makes open GOPs unless told not to: their leading pictures need the segment
        # before, so a cut there loses them (iter_segments warns about it).
        "libx265": {"preset": "ultrafast", "x265-params": f"{keyint}:open-gop={int(open_gop)}"},
        "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8"},
    }[video]
    with av.open(str(path), "w") as out:
        video_stream = out.add_stream(video, rate=FPS, options=options)
        video_stream.width, video_stream.height, video_stream.pix_fmt = 320, 240, "yuv420p"
        video_stream.codec_context.gop_size = gop
        audio_stream = out.add_stream(audio, rate=AUDIO_RATE) if audio else None
        if audio_stream is not None:
            audio_stream.layout = "mono"
        ys, xs = np.mgrid[0:240, 0:320]
        for i in range(round(seconds * FPS)):
            image = np.stack(
                [(xs + 4 * i) % 256, (2 * ys + i) % 256, np.full_like(xs, 8 * i % 256)], -1
            )
            frame = av.VideoFrame.from_ndarray(image.astype(np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            out.mux(video_stream.encode(frame))
        out.mux(video_stream.encode(None))
        if audio_stream is not None:
            total = round(seconds * AUDIO_RATE)
            for start in range(0, total, 1024):
                t = np.arange(start, min(total, start + 1024)) / AUDIO_RATE
                tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
                chunk = av.AudioFrame.from_ndarray(tone, format="flt", layout="mono")
                chunk.sample_rate, chunk.pts = AUDIO_RATE, start
                chunk.time_base = Fraction(1, AUDIO_RATE)
                out.mux(audio_stream.encode(chunk))
            out.mux(audio_stream.encode(None))
    return path


def remux(source: Path, path: Path, *, audio: bool = True) -> Path:
    """Copy a recording's packets into another container (much cheaper than encoding)."""
    with av.open(str(source)) as src, av.open(str(path), "w") as out:
        streams = [src.streams.video[0], *(src.streams.audio[:1] if audio else [])]
        copies = {s.index: out.add_stream_from_template(s, opaque=True) for s in streams}
        for packet in src.demux(*streams):
            if packet.dts is not None:
                packet.stream = copies[packet.stream.index]
                out.mux(packet)
    return path


@dataclass(frozen=True)
class Decoded:
    """What decoding one segment on its own gave."""

    first_is_keyframe: bool
    first_packet_is_keyframe: bool
    first_pts_s: float
    frames: int
    audio_s: float
    errors: list[str]
    codecs: tuple[str, ...]


@pytest.fixture
def libav_errors() -> Iterator[None]:
    """Let FFmpeg's error messages reach av.logging.Capture (off by default in PyAV)."""
    previous = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    yield
    av.logging.set_level(previous)


def decode_alone(segment: SourceSegment) -> Decoded:
    with av.logging.Capture() as logs, av.open(io.BytesIO(segment.data)) as container:
        codecs = tuple(s.codec_context.codec.canonical_name for s in container.streams)
        video = container.streams.video[0]
        streams = [video, *container.streams.audio[:1]]
        first_packet_is_keyframe: bool | None = None
        frames: list[av.VideoFrame] = []
        audio_samples = 0
        for packet in container.demux(*streams):
            if packet.stream.type == "video" and packet.size and first_packet_is_keyframe is None:
                first_packet_is_keyframe = packet.is_keyframe
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    frames.append(frame)
                elif isinstance(frame, av.AudioFrame):
                    audio_samples += frame.samples
    assert frames, "segment decoded to no video"
    return Decoded(
        first_is_keyframe=frames[0].key_frame
        and frames[0].pict_type == av.video.frame.PictureType.I,
        first_packet_is_keyframe=bool(first_packet_is_keyframe),
        first_pts_s=float(frames[0].time),
        frames=len(frames),
        audio_s=audio_samples / AUDIO_RATE,
        errors=[f"{name}: {message.strip()}" for level, name, message in logs if level <= 16],
        codecs=codecs,
    )


def ffmpeg_errors(segment: SourceSegment, tmp_path: Path) -> str:
    """What the ffmpeg CLI says decoding the segment alone ('' when it's clean)."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return ""  # the PyAV decode above already checked it
    file = tmp_path / segment.filename
    file.write_bytes(segment.data)
    run = subprocess.run(
        [ffmpeg, "-nostdin", "-v", "error", "-i", str(file), "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return run.stderr.strip() or ("" if run.returncode == 0 else f"exit {run.returncode}")


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


# name -> (expected container, expected codecs in the segments)
CASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "h264_aac.mp4": ("ts", ("h264", "aac")),
    "h264_aac.mov": ("ts", ("h264", "aac")),
    "h264_aac.mkv": ("ts", ("h264", "aac")),
    "h264_aac.flv": ("ts", ("h264", "aac")),
    "h264_aac.ts": ("ts", ("h264", "aac")),
    "hevc_aac.mp4": ("ts", ("hevc", "aac")),
    "vp9_opus.webm": ("mkv", ("vp9", "opus")),
    "h264_only.mp4": ("ts", ("h264",)),
}


@pytest.fixture(scope="module")
def media(media_dir: Path) -> dict[str, Path]:
    """One recording per case; the H.264 ones are one encode, remuxed."""
    h264 = make_media(media_dir / "h264_aac.mp4")
    return {
        "h264_aac.mp4": h264,
        "h264_aac.mov": remux(h264, media_dir / "h264_aac.mov"),
        "h264_aac.mkv": remux(h264, media_dir / "h264_aac.mkv"),
        "h264_aac.flv": remux(h264, media_dir / "h264_aac.flv"),
        "h264_aac.ts": remux(h264, media_dir / "h264_aac.ts"),
        "hevc_aac.mp4": make_media(media_dir / "hevc_aac.mp4", video="libx265"),
        "vp9_opus.webm": make_media(
            media_dir / "vp9_opus.webm", video="libvpx-vp9", audio="libopus"
        ),
        "h264_only.mp4": remux(h264, media_dir / "h264_only.mp4", audio=False),
    }


@pytest.mark.usefixtures("libav_errors")
@pytest.mark.parametrize("name", list(CASES))
def test_segments_are_standalone_keyframe_aligned_and_cover_the_source(
    name: str, media: dict[str, Path], tmp_path: Path
) -> None:
    extension, codecs = CASES[name]
    segments = list(iter_segments(media[name], target_duration_s=2.0))

    assert [s.index for s in segments] == [0, 1, 2]
    assert {s.extension for s in segments} == {extension}
    # Keyframes every second, target 2 s: cut at 2 s and 4 s, the rest is the tail.
    assert [s.duration_s for s in segments] == pytest.approx([2.0, 2.0, 1.0], abs=FRAME_S / 2)
    assert sum(s.duration_s for s in segments) == pytest.approx(SECONDS, abs=FRAME_S)
    for before, after in itertools.pairwise(segments):
        assert after.start_s == pytest.approx(before.start_s + before.duration_s, abs=1e-6)

    total_frames = 0
    total_audio_s = 0.0
    for segment in segments:
        decoded = decode_alone(segment)
        assert decoded.errors == [], f"{segment.filename}: {decoded.errors}"
        assert ffmpeg_errors(segment, tmp_path) == ""
        assert decoded.first_packet_is_keyframe
        assert decoded.first_is_keyframe
        assert decoded.codecs == codecs
        # Source timestamps are kept: the segment's first picture is where start_s says.
        assert decoded.first_pts_s == pytest.approx(segment.start_s, abs=1e-3)
        assert decoded.frames == round(segment.duration_s * FPS)
        total_frames += decoded.frames
        total_audio_s += decoded.audio_s
    assert total_frames == round(SECONDS * FPS)
    if "aac" in codecs or "opus" in codecs:
        # Each audio packet lands in exactly one segment (give or take codec priming).
        assert total_audio_s == pytest.approx(SECONDS, abs=0.05)


@pytest.mark.usefixtures("libav_errors")
def test_sparse_keyframes_cut_at_the_first_keyframe_after_each_grid_point(
    media_dir: Path,
) -> None:
    path = make_media(media_dir / "gop45.mp4", gop=45)  # a keyframe every 1.5 s

    segments = list(iter_segments(path, target_duration_s=2.0))

    # Grid 2 s, 4 s: keyframes at 3 s and 4.5 s are the first at or after each.
    assert [s.duration_s for s in segments] == pytest.approx([3.0, 1.5, 0.5], abs=FRAME_S / 2)
    assert all(decode_alone(s).first_is_keyframe for s in segments)


def test_target_shorter_than_keyframe_interval_gives_one_segment_per_keyframe(
    media: dict[str, Path],
) -> None:
    segments = list(iter_segments(media["h264_aac.mp4"], target_duration_s=0.5))

    assert [s.duration_s for s in segments] == pytest.approx([1.0] * 5, abs=FRAME_S / 2)


def test_is_a_lazy_generator(media: dict[str, Path]) -> None:
    segments = iter_segments(media["h264_aac.mp4"])

    first = next(segments)
    segments.close()  # releases the source without reading the rest

    assert first.index == 0
    assert first.filename == "seg0.ts"
    assert first.size_bytes == len(first.data) > 0


def test_media_duration(media: dict[str, Path]) -> None:
    assert media_duration_s(media["h264_aac.mp4"]) == pytest.approx(SECONDS, abs=FRAME_S)


def test_audio_only_file_is_refused(media_dir: Path) -> None:
    path = media_dir / "tone.m4a"
    with av.open(str(path), "w", format="ipod") as out:
        stream = out.add_stream("aac", rate=AUDIO_RATE)
        stream.layout = "mono"
        tone = np.zeros((1, 1024), np.float32)
        chunk = av.AudioFrame.from_ndarray(tone, format="flt", layout="mono")
        chunk.sample_rate = AUDIO_RATE
        out.mux(stream.encode(chunk))
        out.mux(stream.encode(None))

    with pytest.raises(UnsupportedMedia, match="no video stream"):
        next(iter_segments(path))


def test_unreadable_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "noise.mp4"
    path.write_bytes(bytes(range(256)) * 64)

    with pytest.raises(UnsupportedMedia, match="cannot read"):
        next(iter_segments(path))


def test_text_file_is_refused(tmp_path: Path) -> None:
    # FFmpeg opens any text as "ansi" art video; it can't be copied into segments.
    path = tmp_path / "notes.txt"
    path.write_text("not a video\n" * 100)

    with pytest.raises(UnsupportedMedia, match="cannot copy ansi video"):
        next(iter_segments(path))


@pytest.mark.usefixtures("libav_errors")
def test_open_gop_source_warns_and_still_decodes(
    media_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = make_media(media_dir / "open_gop.mp4", video="libx265", audio=None, open_gop=True)

    with caplog.at_level(logging.WARNING, logger="streamd.segmenter"):
        segments = list(iter_segments(path))

    assert "open GOP" in caplog.text
    assert [s.duration_s for s in segments] == pytest.approx([2.0, 2.0, 1.0], abs=FRAME_S / 2)
    for segment in segments:
        decoded = decode_alone(segment)
        assert decoded.errors == []
        assert decoded.first_is_keyframe


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        next(iter_segments(tmp_path / "nope.mp4"))


def test_target_duration_must_be_positive(media: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="positive"):
        next(iter_segments(media["h264_aac.mp4"], target_duration_s=0))


@pytest.mark.parametrize(
    ("video", "audio", "expected"),
    [
        ("h264", "aac", MPEGTS),
        ("hevc", "mp3", MPEGTS),
        ("h264", "ac3", MPEGTS),
        ("h264", None, MPEGTS),
        ("hevc", None, MPEGTS),
        ("h264", "opus", MATROSKA),
        ("vp9", "opus", MATROSKA),
        ("vp8", "vorbis", MATROSKA),
        ("av1", "opus", MATROSKA),
        ("vp9", None, MATROSKA),
        ("av1", "aac", MATROSKA),
    ],
)
def test_container_choice_follows_codecs(video: str, audio: str | None, expected: object) -> None:
    assert container_for(video, audio) == expected


@dataclass
class FakeStream:
    type: str


@dataclass
class FakePacket:
    """Just what the cutting rules read of a demuxed packet."""

    stream: FakeStream
    pts: int
    time_base: Fraction
    is_keyframe: bool = False
    duration: int = 1
    size: int = 1


def interleaved(audio_offset_s: float) -> list[FakePacket]:
    """3 s of 10 fps video (keyframe every 0.5 s) and 0.1 s audio packets, with the audio
    muxed `audio_offset_s` ahead of (or, negative, behind) the video."""
    video_tb, audio_tb = Fraction(1, 10), Fraction(1, 100)
    packets = [
        (i / 10, FakePacket(FakeStream("video"), i, video_tb, is_keyframe=i % 5 == 0))
        for i in range(30)
    ]
    packets += [
        (t / 100 - audio_offset_s, FakePacket(FakeStream("audio"), t, audio_tb, duration=10))
        for t in range(0, 300, 10)
    ]
    return [packet for _, packet in sorted(packets, key=lambda item: item[0])]


@pytest.mark.parametrize("audio_offset_s", [0.0, 0.25, -0.25, 0.7, -0.7])
def test_audio_goes_to_the_segment_whose_range_holds_it(audio_offset_s: float) -> None:
    cutter = _Cutter(Fraction(1, 10), 1, 1.0, has_audio=True)

    segments = [s for p in interleaved(audio_offset_s) for s in cutter.feed(p)]
    segments += cutter.finish()

    assert [(s.start_pts, s.end_pts) for s in segments] == [(0, 10), (10, 20), (20, None)]
    assert [s.duration_ticks for s in segments] == [10, 10, 10]
    for k, segment in enumerate(segments):
        assert [p.pts for p in segment.video] == list(range(10 * k, 10 * k + 10))
        assert sorted(p.pts for p in segment.audio) == list(range(100 * k, 100 * k + 100, 10))


def test_video_only_segments_are_let_go_at_the_cut() -> None:
    cutter = _Cutter(Fraction(1, 10), 1, 1.0, has_audio=False)
    video = [p for p in interleaved(0.0) if p.stream.type == "video"]

    done_at = [len(cutter.feed(p)) for p in video]

    assert [i for i, n in enumerate(done_at) if n] == [10, 20]


def test_a_keyframe_rounded_just_before_the_grid_point_still_cuts_there() -> None:
    # Matroska's millisecond timestamps: at 30 fps frame 60 may land on 1999 ms, not 2000.
    cutter = _Cutter(Fraction(1, 1000), 33, 2.0, has_audio=False)
    video = FakeStream("video")
    cut: list[int] = []
    for i in range(90):
        pts = 1999 if i == 60 else round(i * 1000 / 30)
        packet = FakePacket(video, pts, Fraction(1, 1000), is_keyframe=i % 30 == 0, duration=33)
        cut += [s.end_pts or 0 for s in cutter.feed(packet)]

    assert cut == [1999]
