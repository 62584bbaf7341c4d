"""The RTMP core against a real publisher: ffmpeg streams into a small asyncio server around
`PublisherSession`; and a recording of such a session replayed however TCP might split it."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamd.ingest.rtmp.session import (
    AudioTag,
    Connect,
    DeleteStream,
    Event,
    FCUnpublish,
    Metadata,
    Publish,
    VideoTag,
)
from tests.rtmp_publisher import fixed_session, publish_with_ffmpeg, record_publish

FIXTURE = Path(__file__).parent / "fixtures" / "rtmp-ffmpeg-publish.bin"


def check_publish(events: list[Event], duration_s: float, offset_ms: int = 0) -> None:
    """What an ffmpeg publish of `duration_s` of 30 fps H.264 (-g 30) and AAC must show."""
    connect = next(e for e in events if isinstance(e, Connect))
    assert connect.app == "live"
    assert connect.tc_url.endswith("/live")
    publish = next(e for e in events if isinstance(e, Publish))
    assert (publish.name, publish.key) == ("cam", "abc")
    metadata = next(e for e in events if isinstance(e, Metadata))
    assert (metadata.values["width"], metadata.values["height"]) == (320.0, 240.0)
    assert metadata.flv_body.startswith(b"\x02\x00\x0aonMetaData\x08")

    video = [e for e in events if isinstance(e, VideoTag)]
    audio = [e for e in events if isinstance(e, AudioTag)]
    assert video[0].info.codec == "avc1"
    assert video[0].info.is_sequence_header
    assert audio[0].info.codec == "aac"
    assert audio[0].info.is_sequence_header
    frames = [v for v in video if v.info.packet == "coded_frames"]
    assert len(frames) == round(30 * duration_s)
    keyframes = [i for i, v in enumerate(frames) if v.info.is_keyframe]
    assert keyframes == list(range(0, len(frames), 30))
    assert all(v.info.composition_time_ms >= 0 for v in frames)  # x264 B-frames: pts >= dts
    for tags in (frames, [a for a in audio if a.info.packet == "coded_frames"]):
        stamps = [t.timestamp_ms for t in tags]
        assert stamps == sorted(stamps)
        assert stamps[0] - offset_ms < 50
        assert abs(stamps[-1] - stamps[0] - 1000 * duration_s) < 100
    assert isinstance(events[-1], DeleteStream)
    assert any(isinstance(e, FCUnpublish) for e in events)


@pytest.mark.slow
async def test_ffmpeg_publishes() -> None:
    recording = await publish_with_ffmpeg(3)
    assert recording.ffmpeg_returncode == 0, recording.ffmpeg_stderr
    check_publish(recording.events, 3)
    assert recording.ignored == {}


@pytest.mark.slow
async def test_ffmpeg_extended_timestamps() -> None:
    """-output_ts_offset 17000: every timestamp past 0xFFFFFF ms (4 h 40 min)."""
    recording = await publish_with_ffmpeg(1, extra=("-output_ts_offset", "17000"))
    assert recording.ffmpeg_returncode == 0, recording.ffmpeg_stderr
    check_publish(recording.events, 1, offset_ms=17_000_000)
    frames = [e for e in recording.events if isinstance(e, VideoTag) and e.timestamp_ms]
    assert min(f.timestamp_ms for f in frames) >= 17_000_000 > 0xFFFFFF


def replay(data: bytes, cuts: list[int]) -> tuple[list[Event], bytes]:
    session = fixed_session()
    events: list[Event] = []
    sent = bytearray()
    bounds = [0, *sorted(cuts), len(data)]
    for start, end in itertools.pairwise(bounds):
        for event in session.feed(data[start:end]):
            events.append(event)
            if isinstance(event, Connect):
                session.accept_connect()
            elif isinstance(event, Publish):
                session.accept_publish(event.stream_id)
        sent += session.data_to_send()
    return events, bytes(sent)


def test_recorded_ffmpeg_session() -> None:
    events, _ = replay(FIXTURE.read_bytes(), [])
    check_publish(events, 3)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_replay_split_anywhere(data: st.DataObject) -> None:
    """The decoder does not care how TCP split the bytes: same events, same replies."""
    recorded = FIXTURE.read_bytes()
    cuts = data.draw(st.lists(st.integers(0, len(recorded)), max_size=400))
    assert replay(recorded, cuts) == WHOLE


WHOLE = replay(FIXTURE.read_bytes(), [])


def test_replay_byte_by_byte_through_the_handshake() -> None:
    recorded = FIXTURE.read_bytes()
    assert replay(recorded, list(range(1, 6000))) == WHOLE


# PyAV's bundled FFmpeg (8.x) sends HEVC in FLV by Enhanced RTMP's FourCC, as OBS 29.1+ does.
HEVC_PUBLISHER = """
import sys, fractions, av
out = av.open(sys.argv[1], "w", format="flv")
stream = out.add_stream("libx265", rate=30)
stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
stream.options = {"x265-params": "keyint=15:bframes=0:log-level=error"}
for i in range(30):
    frame = av.VideoFrame(320, 240, "yuv420p")
    frame.pts, frame.time_base = i, fractions.Fraction(1, 30)
    for packet in stream.encode(frame):
        out.mux(packet)
for packet in stream.encode():
    out.mux(packet)
out.close()
"""


@pytest.mark.slow
async def test_enhanced_rtmp_hevc_from_ffmpeg_8() -> None:
    # In a process of its own: PyAV holds the GIL while its RTMP client waits for us.
    command = [sys.executable, "-c", HEVC_PUBLISHER]
    recording = await record_publish(command, "live/cam?key=abc", 60)
    assert recording.ffmpeg_returncode == 0, recording.ffmpeg_stderr
    metadata = next(e for e in recording.events if isinstance(e, Metadata))
    assert metadata.values["videocodecid"] == float(int.from_bytes(b"hvc1", "big"))
    video = [e for e in recording.events if isinstance(e, VideoTag)]
    assert {v.info.codec for v in video} == {"hvc1"}
    assert all(v.info.enhanced for v in video)
    assert video[0].info.is_sequence_header
    frames = [v for v in video if v.info.packet == "coded_frames"]
    assert len(frames) == 30
    assert [i for i, v in enumerate(frames) if v.info.is_keyframe] == [0, 15]
    stamps = [v.timestamp_ms for v in frames]
    assert stamps == sorted(stamps)
    assert recording.ignored == {}
