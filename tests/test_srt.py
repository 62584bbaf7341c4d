"""SRT ingest: the stream id parser (pure), then the listener over Debian's libsrt with
Debian's ffmpeg as the real publisher."""

from __future__ import annotations

import asyncio
import io
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import av
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamd.ingest.srt import SrtError, SrtUnavailable, StreamIdError, UnsupportedMode
from streamd.ingest.srt.connection import SrtConnection
from streamd.ingest.srt.libsrt import LibSrt, load
from streamd.ingest.srt.server import SrtListener
from streamd.ingest.srt.streamid import StreamId, parse_stream_id

FFMPEG = Path("/usr/bin/ffmpeg")  # Debian's: PyAV's FFmpeg has no srt protocol
KEYS = {"cam1": "abc", "cam2": "def"}

# -- stream id ---------------------------------------------------------------------------


def test_stream_id_parses() -> None:
    assert parse_stream_id("#!::r=cam1,m=publish,s=abc") == StreamId("cam1", "publish", "abc")


def test_stream_id_keys_in_any_order_with_user_and_unknown_keys() -> None:
    sid = parse_stream_id("#!::s=k3y,u=alice,t=stream,m=publish,r=cam-2,h=example.com")
    assert sid == StreamId("cam-2", "publish", "k3y", user="alice")


def test_stream_id_percent_encoded() -> None:
    encoded = "%23%21%3A%3Ar%3Dcam1%2Cm%3Dpublish%2Cs%3Da%25b"
    assert parse_stream_id(encoded) == StreamId("cam1", "publish", "a%b")
    assert parse_stream_id("%23!::r=cam1,m=publish,s=abc").key == "abc"


def test_stream_id_round_trips_through_str() -> None:
    sid = StreamId("cam1", "publish", "abc", user="bob")
    assert parse_stream_id(str(sid)) == sid


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "must start with"),
        ("cam1", "must start with"),
        ("#!:{r=cam1,m=publish,s=abc}", "must start with"),
        ("#!::", "key=value"),
        ("#!::r=cam1,,m=publish,s=abc", "key=value"),
        ("#!::r=cam1,=x,m=publish,s=abc", "key=value"),
        ("#!::r=cam1,r=cam2,m=publish,s=abc", "repeats 'r'"),
        ("#!::r=cam1,m=publish", "lacks s="),
        ("#!::r=,m=publish,s=abc", "lacks r="),
        ("#!::u=x", "lacks r=, m=, s="),
        ("#!::r=cam1,m=publish,s=a\nb", "control characters"),
        ("%23%21%3A%3Ar%3D%ff,m=publish,s=abc", "not UTF-8"),
        ("#!::r=cam1,m=publish,s=" + "k" * 500, "longer than 512"),
    ],
)
def test_stream_id_malformed(text: str, message: str) -> None:
    with pytest.raises(StreamIdError, match=message) as info:
        parse_stream_id(text)
    assert not isinstance(info.value, UnsupportedMode)


@pytest.mark.parametrize("mode", ["request", "bidirectional", "Publish"])
def test_stream_id_other_modes_refused(mode: str) -> None:
    with pytest.raises(UnsupportedMode, match="only publish"):
        parse_stream_id(f"#!::r=cam1,m={mode},s=abc")


def test_stream_id_errors_never_repeat_the_key() -> None:
    for text in ("#!::r=cam1,m=request,s=SECRET", "#!::r=cam1,r=x,s=SECRET,m=publish"):
        with pytest.raises(StreamIdError) as info:
            parse_stream_id(text)
        assert "SECRET" not in str(info.value)


@given(st.text(max_size=600))
def test_stream_id_any_text_parses_or_raises_its_own_error(text: str) -> None:
    try:
        parse_stream_id(text)
    except StreamIdError:
        pass


@given(st.text(alphabet="#!:%=,rmsu23ADFabcpublish\x00\xff", max_size=80))
def test_stream_id_near_misses_parse_or_raise_its_own_error(text: str) -> None:
    try:
        sid = parse_stream_id(text)
    except StreamIdError:
        return
    assert (sid.mode, bool(sid.resource), bool(sid.key)) == ("publish", True, True)


VALUE = st.text(
    alphabet=st.characters(blacklist_characters=",=", blacklist_categories=("Cc", "Cs")),
    min_size=1,
    max_size=40,
)


@given(VALUE, VALUE, st.none() | VALUE)
def test_stream_id_round_trips(resource: str, key: str, user: str | None) -> None:
    sid = StreamId(resource, "publish", key, user)
    assert parse_stream_id(str(sid)) == sid


# -- the listener, with Debian's ffmpeg publishing ---------------------------------------


@pytest.fixture(scope="module")
def libsrt() -> LibSrt:
    """libsrt, or a skip saying what is missing for the SRT tests."""
    try:
        srt = load()
    except SrtUnavailable as exc:
        pytest.skip(f"libsrt missing ({exc.message}): apt-get install libsrt1.5-gnutls")
    if not FFMPEG.exists():
        pytest.skip(f"{FFMPEG} missing: apt-get install ffmpeg (Debian's has srt)")
    protocols = subprocess.run(
        [FFMPEG, "-hide_banner", "-protocols"], capture_output=True, text=True, check=False
    ).stdout
    if "srt" not in protocols.split():
        pytest.skip(f"{FFMPEG} has no srt protocol")
    return srt


@dataclass
class Publishers:
    """An `authorize` (keys in KEYS) and an `on_publish` that reads each publisher to the end."""

    reading: Callable[[SrtConnection], bool] = lambda conn: True  # read now, or wait
    # (stream id, peer, whether it ran off the loop's thread) for each authorize call
    asked: list[tuple[StreamId, str, bool]] = field(default_factory=list)
    conns: list[SrtConnection] = field(default_factory=list)
    data: dict[str, bytearray] = field(default_factory=dict)
    ended: dict[str, asyncio.Event] = field(default_factory=dict)
    loop_thread: int = field(default_factory=threading.get_ident)

    def authorize(self, stream_id: StreamId, peer: str) -> str | None:
        self.asked.append((stream_id, peer, threading.get_ident() != self.loop_thread))
        return None if KEYS.get(stream_id.resource) == stream_id.key else "wrong key"

    async def on_publish(self, conn: SrtConnection) -> None:
        name = conn.stream_id.resource
        self.conns.append(conn)
        self.data[name] = bytearray()
        ended = self.ended.setdefault(name, asyncio.Event())
        await until(lambda: self.reading(conn))
        while chunk := await conn.read():
            self.data[name] += chunk
        ended.set()

    async def wait_end(self, name: str, timeout_s: float = 10) -> bytes:
        ended = self.ended.setdefault(name, asyncio.Event())
        await asyncio.wait_for(ended.wait(), timeout_s)
        return bytes(self.data[name])


async def until(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    """Poll `condition` until it holds (or fail after `timeout_s`)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


@pytest.fixture
async def publishers(libsrt: LibSrt) -> AsyncIterator[tuple[SrtListener, Publishers]]:
    record = Publishers()
    async with SrtListener(
        "127.0.0.1", 0, record.authorize, record.on_publish, library=libsrt
    ) as listener:
        yield listener, record


async def ffmpeg_srt(
    port: int, stream_id: str, duration_s: float = 2, *, linger: bool = True
) -> asyncio.subprocess.Process:
    """Debian's ffmpeg publishing `duration_s` of testsrc (H.264, 30 fps) and a sine (AAC)
    as MPEG-TS, in real time, to our listener."""
    url = f"srt://127.0.0.1:{port}?streamid={stream_id}" + ("&linger=2" if linger else "")
    return await asyncio.create_subprocess_exec(
        FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-re",
        "-f", "lavfi", "-i", f"testsrc=s=320x240:r=30:d={duration_s}",
        "-f", "lavfi", "-i", f"sine=d={duration_s}",
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "30",
        "-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "mpegts", url,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def finished(proc: asyncio.subprocess.Process, timeout_s: float = 20) -> int:
    """ffmpeg's exit status (its stderr in the failure message if it is not 0)."""
    _, stderr = await asyncio.wait_for(proc.communicate(), timeout_s)
    assert proc.returncode is not None
    if proc.returncode:
        print(stderr.decode(errors="replace")[-1000:])
    return proc.returncode


def check_mpegts(data: bytes, duration_s: float, lost_s: float = 0) -> None:
    """Whole MPEG-TS packets, and all of the video and audio ffmpeg sent (but `lost_s`)."""
    assert len(data) % 188 == 0
    assert data[::188] == b"\x47" * (len(data) // 188)
    frames, samples, rate = 0, 0, 0
    with av.open(io.BytesIO(data), format="mpegts") as container:
        for packet in container.demux():
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    frames += 1
                elif isinstance(frame, av.AudioFrame):
                    samples, rate = samples + frame.samples, frame.sample_rate
    assert round(30 * (duration_s - lost_s)) <= frames <= round(30 * duration_s)
    assert duration_s - lost_s <= samples / rate < duration_s + 0.1  # AAC priming: + a frame


@pytest.mark.slow
async def test_ffmpeg_publishes_mpegts(
    publishers: tuple[SrtListener, Publishers],
) -> None:
    listener, record = publishers
    proc = await ffmpeg_srt(listener.port, "#!::r=cam1,m=publish,s=abc", duration_s=3)
    assert await finished(proc) == 0
    data = await record.wait_end("cam1")
    check_mpegts(data, 3)
    [conn] = record.conns
    assert conn.stream_id == StreamId("cam1", "publish", "abc")
    assert conn.peer.startswith("127.0.0.1:")
    assert conn.bytes_received == conn.bytes_read == len(data)
    assert conn.pauses == 0
    [(stream_id, peer, off_loop)] = record.asked
    assert (stream_id, peer, off_loop) == (conn.stream_id, conn.peer, True)
    await until(lambda: not listener.connections)


@pytest.mark.slow
async def test_two_publishers_at_once_one_percent_encoded(
    publishers: tuple[SrtListener, Publishers],
) -> None:
    listener, record = publishers
    # ffmpeg sends the streamid as written: this one arrives %-encoded.
    encoded = "%23%21%3A%3Ar%3Dcam2%2Cm%3Dpublish%2Cs%3Ddef"
    procs = [
        await ffmpeg_srt(listener.port, "#!::m=publish,s=abc,r=cam1"),
        await ffmpeg_srt(listener.port, encoded),
    ]
    assert await asyncio.gather(*map(finished, procs)) == [0, 0]
    await until(lambda: len(record.conns) == 2)
    assert {c.stream_id.resource for c in record.conns} == {"cam1", "cam2"}
    for name in ("cam1", "cam2"):
        check_mpegts(await record.wait_end(name), 2)


@pytest.mark.slow
async def test_without_linger_the_held_back_tail_is_still_read(
    publishers: tuple[SrtListener, Publishers],
) -> None:
    """Without `linger` ffmpeg hangs up as soon as it has sent. libsrt then still holds the
    last latency's worth of packets (TSBPD), readable only after the hang-up: a reader that
    stops at the hang-up lost ~7 of 90 frames here; draining loses at most what ffmpeg itself
    had not sent yet (0 or 1 frame in our runs)."""
    listener, record = publishers
    proc = await ffmpeg_srt(listener.port, "#!::r=cam1,m=publish,s=abc", linger=False)
    assert await finished(proc) == 0
    check_mpegts(await record.wait_end("cam1"), 2, lost_s=0.1)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stream_id", "authorize_asked"),
    [
        ("#!::r=cam1,m=publish,s=wrong", True),
        ("#!::r=cam9,m=publish,s=abc", True),
        ("#!::r=cam1,m=request,s=abc", False),  # not a publisher: refused before authorize
        ("cam1", False),  # no access-control syntax
    ],
)
async def test_refused_in_the_listen_callback(
    publishers: tuple[SrtListener, Publishers], stream_id: str, authorize_asked: bool
) -> None:
    listener, record = publishers
    proc = await ffmpeg_srt(listener.port, stream_id, duration_s=1)
    assert await finished(proc) != 0
    assert record.conns == []
    assert record.data == {}
    assert not listener.connections
    assert len(record.asked) == authorize_asked


@pytest.mark.slow
@pytest.mark.parametrize("until_publisher_left", [False, True])
async def test_slow_consumer_pauses_the_socket_and_loses_nothing(
    libsrt: LibSrt, until_publisher_left: bool
) -> None:
    """The consumer lags 4 chunks behind: the socket is paused and libsrt buffers. Reading
    then starts at once, or only after the publisher hung up (the socket broke while paused:
    resuming must still read all libsrt held)."""
    left = asyncio.Event()
    record = Publishers(
        reading=lambda conn: conn.pauses > 0 and (left.is_set() or not until_publisher_left)
    )
    async with SrtListener(
        "127.0.0.1", 0, record.authorize, record.on_publish, queue_chunks=4, library=libsrt
    ) as listener:
        proc = await ffmpeg_srt(listener.port, "#!::r=cam1,m=publish,s=abc")
        assert await finished(proc) == 0
        left.set()
        check_mpegts(await record.wait_end("cam1"), 2)
        [conn] = record.conns
        assert conn.pauses >= 1


@pytest.mark.slow
async def test_consumer_close_hangs_up_on_the_publisher(libsrt: LibSrt) -> None:
    got: list[bytes] = []

    async def first_chunk_only(conn: SrtConnection) -> None:
        got.append(await conn.read())  # returning closes the connection

    async with SrtListener(
        "127.0.0.1", 0, Publishers().authorize, first_chunk_only, library=libsrt
    ) as listener:
        proc = await ffmpeg_srt(listener.port, "#!::r=cam1,m=publish,s=abc", duration_s=30)
        assert await finished(proc, timeout_s=10) != 0
        [chunk] = got
        assert chunk[:1] == b"\x47"
        await until(lambda: not listener.connections)


@pytest.mark.slow
async def test_close_while_publishing_ends_read(libsrt: LibSrt) -> None:
    record = Publishers()
    listener = SrtListener("127.0.0.1", 0, record.authorize, record.on_publish, library=libsrt)
    await listener.start()
    proc = await ffmpeg_srt(listener.port, "#!::r=cam1,m=publish,s=abc", duration_s=30)
    try:
        await until(lambda: len(record.data.get("cam1", b"")) > 0)
        started = time.monotonic()
        await listener.close()
        assert time.monotonic() - started < 1.5
        assert record.ended["cam1"].is_set()  # read() returned b""
        [conn] = record.conns
        assert conn.closed
        assert await conn.read() == b""
        assert await finished(proc, timeout_s=10) != 0  # ffmpeg saw the hang-up
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await listener.close()


async def test_port_taken_raises(libsrt: LibSrt) -> None:
    record = Publishers()
    async with SrtListener("127.0.0.1", 0, record.authorize, record.on_publish) as first:
        second = SrtListener(
            "127.0.0.1", first.port, record.authorize, record.on_publish, library=libsrt
        )
        with pytest.raises(OSError, match=r"srt_listen failed: .* already listening"):
            await second.start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        third = SrtListener("127.0.0.1", udp.getsockname()[1], record.authorize, record.on_publish)
        with pytest.raises(SrtError, match="srt_bind"):
            await third.start()


async def test_host_must_be_an_ip_address(libsrt: LibSrt) -> None:
    record = Publishers()
    listener = SrtListener("localhost", 0, record.authorize, record.on_publish, library=libsrt)
    with pytest.raises(SrtError, match="not 'localhost'"):
        await listener.start()


def test_load_names_what_is_missing() -> None:
    with pytest.raises(SrtUnavailable, match="not installed") as info:
        load("/nonexistent/libsrt.so.1")
    assert "No such file" in str(info.value.detail)
