"""CEA-608 captions in H.264 SEI (issue 14): what OBS's caption plugins and broadcast
encoders send. Test media is made here: x264's stream with an ATSC A/53 cc_data SEI written
before every picture (pop-on captions on CC1), as a caption inserter does."""

from __future__ import annotations

import asyncio
import io
import sys
from fractions import Fraction
from pathlib import Path

import av
import m3u8
import pytest
import webvtt
from aiohttp.test_utils import TestClient

from streamd.config import Config
from streamd.media.subtitles import ClosedCaptions
from tests.conftest import (
    FFMPEG,
    TEST_KEY,
    AppClient,
    cue_seconds,
    fetch,
    ffprobe,
    published,
    run,
    upload,
    wait_for,
)
from tests.test_rtmp_live import live_client, start_ffmpeg, until

RATE = 30
# (first frame shown, frame erased, text): pop-on captions, each loaded before it shows.
CAPTIONS = [(40, 90, "HELLO WORLD"), (130, 170, "SECOND LINE")]
AUD = b"\x00\x00\x00\x01\x09"


def _parity(byte: int) -> int:
    """CEA-608 bytes carry odd parity in their top bit."""
    byte &= 0x7F
    return byte | (0x80 if bin(byte).count("1") % 2 == 0 else 0)


def _pair(a: int, b: int) -> tuple[int, int]:
    return _parity(a), _parity(b)


def _schedule() -> dict[int, tuple[int, int]]:
    """The byte pair each frame carries: a caption is loaded (RCL, PAC, text) in the frames
    before it shows, shown by EOC at its first frame, cleared by EDM at its last."""
    frames: dict[int, tuple[int, int]] = {}
    for shown, erased, text in CAPTIONS:
        chars = [ord(c) for c in text] + [0] * (len(text) % 2)
        load = [_pair(0x14, 0x20)] * 2 + [_pair(0x14, 0x70)] * 2  # RCL, row 15 (twice)
        load += [_pair(chars[i], chars[i + 1] or 0x80) for i in range(0, len(chars), 2)]
        first = shown - len(load) - 1
        for i, pair in enumerate([*load, _pair(0x14, 0x2F)]):  # ... EOC
            frames[first + i] = pair
        frames[erased] = _pair(0x14, 0x2C)  # EDM
    return frames


def _sei(pair: tuple[int, int]) -> bytes:
    """An SEI NAL (user data registered by ITU-T T.35: ATSC A/53 "GA94" cc_data) with one
    CC1 byte pair, emulation prevention applied."""
    cc = bytes([0x40 | 1, 0xFF, 0xFC, *pair, 0xFF])
    payload = b"\xb5\x00\x31GA94\x03" + cc
    body = bytes([4, len(payload)]) + payload + b"\x80"
    out, zeros = bytearray(), 0
    for byte in body:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return b"\x00\x00\x00\x01\x06" + bytes(out)


def cea608_h264(tmp: Path, seconds: float) -> Path:
    """Raw H.264 (no B-frames, an AUD before each picture) with captions in its SEI."""
    plain = tmp / "plain.h264"
    source = f"testsrc2=s=320x240:r={RATE}:d={seconds}"
    run([FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", source,
         "-c:v", "libx264", "-preset", "ultrafast", "-g", str(RATE), "-bf", "0",
         "-x264-params", "aud=1", "-f", "h264", str(plain)])  # fmt: skip
    schedule = _schedule()
    head, *frames = plain.read_bytes().split(AUD)
    out = bytearray(head)
    for n, frame in enumerate(frames):  # the AUD's one byte, our SEI, then the picture
        out += AUD + frame[:1] + _sei(schedule.get(n, (0x80, 0x80))) + frame[1:]
    path = tmp / "cc.h264"
    path.write_bytes(bytes(out))
    return path


def _with_audio(h264: Path, seconds: float, *output: str) -> list[str]:
    return [FFMPEG, "-v", "error", "-y", "-f", "h264", "-framerate", str(RATE), "-i", str(h264),
            "-f", "lavfi", "-i", f"sine=f=440:d={seconds}", "-c:v", "copy", "-c:a", "aac",
            *output]  # fmt: skip


def _ffmpeg_reads(path: Path) -> list[str]:
    """The captions as FFmpeg's own extraction reads them (lavfi movie's subcc output)."""
    srt = run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", f"movie={path}[out0+subcc]",
               "-map", "0:s", "-f", "srt", "-"])  # fmt: skip
    return [line.split("}")[-1].split("<")[0] for line in srt.splitlines() if "}" in line]


def test_reading_captions_keeps_no_reference_to_the_frame(tmp_path: Path) -> None:
    """Each decoded picture must go when the pipeline lets go of it: PyAV's
    `frame.side_data` keeps a container on the frame that holds the frame (a cycle left to
    the cyclic GC, which let a 1080p upload's worker grow to 1.4 GB)."""
    reader = ClosedCaptions(float)
    with av.open(str(cea608_h264(tmp_path, 6)), format="h264") as c:
        for n, frame in enumerate(c.decode(video=0)):
            frame.pts, frame.time_base = n, Fraction(1, RATE)
            before = sys.getrefcount(frame)
            reader.frame(frame)
            assert sys.getrefcount(frame) == before
    reader.finish()
    assert [text for _, _, _, text in reader.cues] == ["HELLO WORLD", "SECOND LINE"]


async def _cues(client: TestClient, video_id: str) -> dict[str, tuple[float, float]]:
    playlist = m3u8.loads((await fetch(client, f"/hls/{video_id}/subs/en/index.m3u8")).decode())
    cues = {}
    for seg in playlist.segments:
        body = await fetch(client, f"/hls/{video_id}/subs/en/{seg.uri}")
        for cue in webvtt.from_buffer(io.StringIO(body.decode())).captions:
            cues[cue.text] = (cue_seconds(cue.start), cue_seconds(cue.end))
    return cues


async def test_cea608_in_an_upload_is_a_subtitle_track_and_stays_in_the_video(
    client: TestClient, tmp_path: Path
) -> None:
    source = tmp_path / "cc.mp4"
    run(_with_audio(cea608_h264(tmp_path, 6), 6, str(source)))
    assert _ffmpeg_reads(source) == ["HELLO WORLD", "SECOND LINE"]
    await upload(client, "cc608", source, number=0)
    await wait_for(client, "cc608", published(1))
    for _ in range(100):
        if (await client.get("/hls/cc608/subs/en/index.m3u8")).status == 200:
            break
        await asyncio.sleep(0.05)
    cues = await _cues(client, "cc608")
    assert list(cues) == ["HELLO WORLD", "SECOND LINE"]
    for (shown, erased, _), (start, end) in zip(CAPTIONS, cues.values(), strict=True):
        assert start == pytest.approx(shown / RATE, abs=0.04)
        assert end == pytest.approx(erased / RATE, abs=0.04)
    # The transcoded video carries them on: FFmpeg reads the same captions from a rung.
    playlist = m3u8.loads((await fetch(client, "/hls/cc608/ts/240p/index.m3u8")).decode())
    joined = tmp_path / "out.ts"
    joined.write_bytes(
        b"".join([await fetch(client, f"/hls/cc608/ts/240p/{s.uri}") for s in playlist.segments])
    )
    assert _ffmpeg_reads(joined) == ["HELLO WORLD", "SECOND LINE"]
    frames = ffprobe(joined, "-show_frames", "-select_streams", "v", "-read_intervals", "%+#5")
    assert any(
        "A53" in d.get("side_data_type", "")
        for f in frames["frames"]
        for d in f.get("side_data_list", [])
    )


@pytest.mark.slow
async def test_cea608_over_rtmp_shows_while_live(
    make_client: AppClient, config: Config, tmp_path: Path
) -> None:
    client = await live_client(make_client, config, reconnect_window_s=1.0)
    url = f"{client.rtmp_url}/cclive?key={TEST_KEY}"  # type: ignore[attr-defined]
    h264 = cea608_h264(tmp_path, 8)
    ffmpeg = await start_ffmpeg([FFMPEG, "-re", *_with_audio(h264, 8, "-f", "flv", url)[1:]])
    for _ in range(200):  # the first caption, while the publisher still sends
        if (await client.get("/hls/cclive/subs/en/index.m3u8")).status == 200:
            break
        await asyncio.sleep(0.05)
    assert ffmpeg.returncode is None, "the captions came only after the publisher finished"
    await ffmpeg.wait()
    await until(client, "cclive", lambda v: v["state"] == "ended")
    cues = await _cues(client, "cclive")
    assert list(cues) == ["HELLO WORLD", "SECOND LINE"]
    for (shown, erased, _), (start, end) in zip(CAPTIONS, cues.values(), strict=True):
        assert start == pytest.approx(shown / RATE, abs=0.1)
        assert end == pytest.approx(erased / RATE, abs=0.1)
