"""push_file and StreamdClient against a small in-test upload server, on a manual clock."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from streamd.client.push import PushError, RetryPolicy, StreamdClient, push_file
from streamd.client.segmenter import iter_segments
from streamd.clock import ManualClock
from streamd.errors import UnsupportedMedia

# Retries wait for real, so keep them tiny.
FAST_RETRY = RetryPolicy(attempts=3, initial_backoff_s=0.001, max_backoff_s=0.005)
SECONDS = 5.0


def make_recording(path: Path, *, seconds: float = SECONDS, fps: int = 30) -> Path:
    """A 320x240 H.264/AAC MP4 with a keyframe every second."""
    rate = 48_000
    with av.open(str(path), "w") as out:
        video = out.add_stream(
            "libx264",
            rate=fps,
            options={"preset": "ultrafast", "x264-params": f"keyint={fps}:scenecut=0"},
        )
        video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
        audio = out.add_stream("aac", rate=rate)
        audio.layout = "mono"
        for i in range(round(seconds * fps)):
            image = np.full((240, 320, 3), (i * 8) % 256, np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        for start in range(0, round(seconds * rate), 1024):
            silence = np.zeros((1, 1024), np.float32)
            chunk = av.AudioFrame.from_ndarray(silence, format="flt", layout="mono")
            chunk.sample_rate, chunk.pts, chunk.time_base = rate, start, Fraction(1, rate)
            out.mux(audio.encode(chunk))
        out.mux(audio.encode(None))
    return path


@dataclass(frozen=True)
class Arrival:
    """One upload request as the server saw it."""

    video_id: str
    number: int
    filename: str | None
    content_type: str
    authorization: str | None
    body: bytes
    at_s: float


@dataclass
class FakeStreamd:
    """The upload API, recording what comes in; `answers` scripts failures per segment."""

    clock: ManualClock
    arrivals: list[Arrival] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    stored: dict[tuple[str, int], bytes] = field(default_factory=dict)
    ended: set[str] = field(default_factory=set)
    # segment number -> statuses to answer, one per attempt, before accepting it
    answers: dict[int, list[int]] = field(default_factory=dict)
    upload_takes_s: float = 0.0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/upload/{video_id}", self.upload)
        app.router.add_post("/upload/{video_id}/end", self.end)
        return app

    def attempts(self, number: int) -> int:
        return sum(1 for a in self.arrivals if a.number == number)

    async def upload(self, request: web.Request) -> web.Response:
        video_id = request.match_info["video_id"]
        number = int(request.headers["X-Segment-Number"])
        body = await request.read()
        self.arrivals.append(
            Arrival(
                video_id=video_id,
                number=number,
                filename=request.headers.get("X-Segment-Filename"),
                content_type=request.content_type,
                authorization=request.headers.get("Authorization"),
                body=body,
                at_s=self.clock.monotonic_s(),
            )
        )
        self.events.append(f"upload {number}")
        self.clock.now_s += self.upload_takes_s
        scripted = self.answers.get(number)
        if scripted:
            status = scripted.pop(0)
            code = {503: "unavailable", 422: "unsupported_media"}.get(status, "error")
            return error(status, code, f"scripted {status}", "from the test")
        if video_id in self.ended:
            return error(409, "stream_ended", "the stream has ended")
        key = (video_id, number)
        if key in self.stored:
            if self.stored[key] != body:
                return error(409, "segment_conflict", f"segment {number} holds other bytes")
            return web.json_response({"videoId": video_id, "segment": number, "state": "live"})
        self.stored[key] = body
        return web.json_response(
            {"videoId": video_id, "segment": number, "state": "live"}, status=202
        )

    async def end(self, request: web.Request) -> web.Response:
        video_id = request.match_info["video_id"]
        self.events.append(f"end {video_id}")
        if video_id in self.ended:
            return error(409, "stream_ended", "the stream has ended")
        self.ended.add(video_id)
        return web.json_response({"videoId": video_id, "state": "ended"})


def error(status: int, code: str, message: str, detail: str | None = None) -> web.Response:
    body = json.dumps({"error": code, "message": message, "detail": detail})
    return web.Response(status=status, text=body, content_type="application/json")


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_recording(tmp_path_factory.mktemp("media") / "cam.mp4")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start_s=1000.0)


@pytest.fixture
def fake(clock: ManualClock) -> FakeStreamd:
    return FakeStreamd(clock)


@pytest.fixture
async def server_url(fake: FakeStreamd, aiohttp_server: AiohttpServer) -> str:
    server = await aiohttp_server(fake.app())
    return str(server.make_url("/"))


async def test_uploads_every_segment_in_order_then_ends(
    recording: Path, fake: FakeStreamd, server_url: str, clock: ManualClock
) -> None:
    expected = list(iter_segments(recording, 2.0))

    report = await push_file(
        recording,
        server_url,
        "cam1",
        first_number=5,
        clock=clock,
        progress=False,
        headers={"Authorization": "Bearer secret"},
        retry=FAST_RETRY,
    )

    assert [a.number for a in fake.arrivals] == [5, 6, 7]
    assert [a.filename for a in fake.arrivals] == ["seg5.ts", "seg6.ts", "seg7.ts"]
    assert [a.body for a in fake.arrivals] == [s.data for s in expected]
    assert {a.video_id for a in fake.arrivals} == {"cam1"}
    assert {a.content_type for a in fake.arrivals} == {"application/octet-stream"}
    assert {a.authorization for a in fake.arrivals} == {"Bearer secret"}
    assert fake.events == ["upload 5", "upload 6", "upload 7", "end cam1"]
    assert report.segments == 3
    assert report.bytes == sum(len(s.data) for s in expected)
    assert report.duration_s == pytest.approx(SECONDS, abs=0.04)
    assert clock.slept_s == []  # not realtime: as fast as the server takes them
    assert report.elapsed_s == 0.0


async def test_realtime_sends_each_segment_when_a_live_encoder_would_have_it(
    recording: Path, fake: FakeStreamd, server_url: str, clock: ManualClock
) -> None:
    started_s = clock.monotonic_s()

    report = await push_file(
        recording, server_url, "live", realtime=True, clock=clock, progress=False
    )

    # Segments of 2 s, 2 s and 1 s go out as each one's last frame would be captured.
    assert [a.at_s - started_s for a in fake.arrivals] == pytest.approx([2.0, 4.0, 5.0])
    assert sum(clock.slept_s) == pytest.approx(SECONDS, abs=0.04)
    assert report.elapsed_s == pytest.approx(SECONDS, abs=0.04)
    assert fake.events[-1] == "end live"


async def test_realtime_does_not_wait_when_uploads_fall_behind(
    recording: Path, fake: FakeStreamd, server_url: str, clock: ManualClock
) -> None:
    fake.upload_takes_s = 3.0  # slower than the media plays
    started_s = clock.monotonic_s()

    await push_file(recording, server_url, "slow", realtime=True, clock=clock, progress=False)

    # Due at 2, 4, 5 s; each upload takes 3 s, so only the first one waits.
    assert clock.slept_s == pytest.approx([2.0])
    assert [a.at_s - started_s for a in fake.arrivals] == pytest.approx([2.0, 5.0, 8.0])


async def test_a_503_is_retried_and_the_push_goes_on(
    recording: Path, fake: FakeStreamd, server_url: str, clock: ManualClock
) -> None:
    fake.answers = {1: [503]}

    report = await push_file(
        recording, server_url, "flaky", clock=clock, progress=False, retry=FAST_RETRY
    )

    assert [a.number for a in fake.arrivals] == [0, 1, 1, 2]
    assert fake.arrivals[1].body == fake.arrivals[2].body
    assert report.segments == 3
    assert fake.ended == {"flaky"}


async def test_a_422_is_a_hard_error_with_the_servers_words(
    recording: Path, fake: FakeStreamd, server_url: str, clock: ManualClock
) -> None:
    fake.answers = {1: [422]}

    with pytest.raises(PushError, match=r"HTTP 422 unsupported_media: scripted 422") as caught:
        await push_file(recording, server_url, "bad", clock=clock, progress=False, retry=FAST_RETRY)

    assert caught.value.status == 422
    assert caught.value.server_error == "unsupported_media"
    assert caught.value.detail == "from the test"
    assert isinstance(caught.value, RuntimeError)
    assert fake.attempts(1) == 1  # not retried
    assert fake.attempts(2) == 0  # and nothing after it
    assert fake.ended == set()  # a failed push leaves the stream open to resume


async def test_a_conflicting_segment_is_a_hard_error(
    recording: Path, fake: FakeStreamd, server_url: str, clock: ManualClock
) -> None:
    fake.stored[("taken", 0)] = b"someone else's bytes"

    with pytest.raises(PushError, match="segment_conflict") as caught:
        await push_file(
            recording, server_url, "taken", clock=clock, progress=False, retry=FAST_RETRY
        )

    assert caught.value.status == 409
    assert fake.attempts(0) == 1


async def test_gives_up_after_the_configured_attempts(
    recording: Path, fake: FakeStreamd, server_url: str, clock: ManualClock
) -> None:
    fake.answers = {0: [503] * 10}

    with pytest.raises(PushError, match="gave up after 3 attempts") as caught:
        await push_file(
            recording, server_url, "down", clock=clock, progress=False, retry=FAST_RETRY
        )

    assert caught.value.status == 503
    assert fake.attempts(0) == 3


async def test_unreachable_server_is_retried_then_a_push_error() -> None:
    with socket.socket() as probe:  # a free loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async with StreamdClient(f"http://127.0.0.1:{port}", retry=FAST_RETRY) as client:
        with pytest.raises(PushError, match="gave up after 3 attempts") as caught:
            await client.upload_segment("cam", 0, b"data")

    assert caught.value.status is None


async def test_identical_reupload_counts_as_success(fake: FakeStreamd, server_url: str) -> None:
    async with StreamdClient(server_url, retry=FAST_RETRY) as client:
        first = await client.upload_segment("cam", 0, b"same", "seg0.ts")
        again = await client.upload_segment("cam", 0, b"same", "seg0.ts")

    assert first == {"videoId": "cam", "segment": 0, "state": "live"}
    assert again == first


async def test_ending_an_ended_stream_is_not_an_error(fake: FakeStreamd, server_url: str) -> None:
    async with StreamdClient(server_url) as client:
        await client.end_stream("cam")
        answer = await client.end_stream("cam")  # as a retry after a lost answer would

    assert answer["state"] == "ended"
    assert fake.events == ["end cam", "end cam"]


async def test_a_shared_client_is_left_open(
    recording: Path, fake: FakeStreamd, server_url: str, clock: ManualClock
) -> None:
    async with StreamdClient(server_url, retry=FAST_RETRY) as client:
        await push_file(recording, "unused", "a", clock=clock, progress=False, client=client)
        await push_file(recording, "unused", "b", clock=clock, progress=False, client=client)

    assert fake.ended == {"a", "b"}
    assert len(fake.arrivals) == 6


async def test_a_file_without_video_fails_before_uploading(
    tmp_path: Path, fake: FakeStreamd, server_url: str, clock: ManualClock
) -> None:
    path = tmp_path / "tone.m4a"
    with av.open(str(path), "w", format="ipod") as out:
        stream = out.add_stream("aac", rate=48_000)
        chunk = av.AudioFrame.from_ndarray(
            np.zeros((1, 1024), np.float32), format="flt", layout="mono"
        )
        chunk.sample_rate = 48_000
        out.mux(stream.encode(chunk))
        out.mux(stream.encode(None))

    with pytest.raises(UnsupportedMedia, match="no video"):
        await push_file(path, server_url, "cam", clock=clock, progress=False)

    assert fake.events == []


async def test_progress_bar_counts_media_seconds(
    recording: Path,
    server_url: str,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)

    await push_file(recording, server_url, "cam", clock=clock)

    shown = capsys.readouterr().err
    assert "push cam" in shown
    assert "5.0/5.0 s" in shown


def test_upload_url_quotes_the_video_id() -> None:
    client = StreamdClient("http://127.0.0.1:8080/streamd/")

    assert str(client.upload_url("cam 1/a")) == "http://127.0.0.1:8080/streamd/upload/cam%201%2Fa"


async def test_cancelling_a_push_stops_cleanly(
    recording: Path, aiohttp_server: AiohttpServer, clock: ManualClock
) -> None:
    arrived, released = asyncio.Event(), asyncio.Event()

    async def stall(request: web.Request) -> web.Response:
        arrived.set()
        await released.wait()  # no answer while the push runs
        return web.Response(status=503)

    app = web.Application()
    app.router.add_post("/upload/{video_id}", stall)
    server = await aiohttp_server(app)
    push = asyncio.create_task(
        push_file(recording, str(server.make_url("/")), "cam", clock=clock, progress=False)
    )
    await asyncio.wait_for(arrived.wait(), timeout=10)

    push.cancel()

    with pytest.raises(asyncio.CancelledError):
        await push
    # Let the handler finish: the server's teardown waits for it (it once took 121 s of the
    # suite's time there).
    released.set()
