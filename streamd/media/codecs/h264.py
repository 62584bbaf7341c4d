"""H.264: a rung's x264 encoder, fed from its own thread so that all rungs encode side by
side, and what playlists say about the stream (level, RFC 6381 codecs).

PyAV releases the GIL inside avcodec_send_frame/receive_packet, so while one x264 instance
pushes back (its frame threads are full) the others keep taking frames, and at the end of an
upload all of them drain at once instead of one after another.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from fractions import Fraction
from typing import Any

import av

from streamd.model.ladder import Geometry, Rung
from streamd.model.pipeline import VIDEO_HZ
from streamd.package import EncodedPacket

QUEUE_FRAMES = 4  # frames waiting per rung: enough to ride out x264's bursts
# H.264 Annex A: level -> (max macroblocks/s, max frame size in MBs, max bitrate kbit/s, High).
_H264_LEVELS = [
    ("3.0", 40_500, 1_620, 12_500),
    ("3.1", 108_000, 3_600, 17_500),
    ("3.2", 216_000, 5_120, 25_000),
    ("4.0", 245_760, 8_192, 25_000),
    ("4.1", 245_760, 8_192, 62_500),
    ("4.2", 522_240, 8_704, 62_500),
    ("5.0", 589_824, 22_080, 168_750),
    ("5.1", 983_040, 36_864, 300_000),
    ("5.2", 2_073_600, 36_864, 300_000),
]


def h264_level(width: int, height: int, fps: float, maxrate_bps: int) -> str:
    """The smallest H.264 level for a rung, fixed per stream so its SPS never changes."""
    mbs = math.ceil(width / 16) * math.ceil(height / 16)
    for name, mbps, fs, kbps in _H264_LEVELS:
        if mbs <= fs and mbs * fps <= mbps and maxrate_bps <= kbps * 1000:
            return name
    return "5.2"


def has_sps(access_unit: bytes) -> bool:
    """Whether an Annex B access unit carries a sequence parameter set."""
    try:
        avc_codecs(access_unit)
    except ValueError:
        return False
    return True


def avc_codecs(idr: bytes) -> str:
    """RFC 6381 `avc1.PPCCLL` read from the SPS inside an Annex B access unit."""
    i = 0
    while True:
        i = idr.find(b"\x00\x00\x01", i)
        if i < 0 or i + 7 > len(idr):
            raise ValueError("no SPS in the access unit")
        if idr[i + 3] & 0x1F == 7:
            return "avc1." + idr[i + 4 : i + 7].hex()
        i += 3


def encoded(p: av.Packet[Any]) -> EncodedPacket:
    """A PyAV packet as a plain value (it crosses threads and processes)."""
    assert p.pts is not None
    assert p.dts is not None
    return EncodedPacket(bytes(p), int(p.pts), int(p.dts), int(p.duration or 0), p.is_keyframe)


# Live: a segment is published once every rung has encoded past its end, so x264's frame
# lookahead is publish delay. 5 frames instead of veryfast's 10, and no sync lookahead,
# took a 720p ladder's delay from ~0.59 s to ~0.33 s after the segment's last frame
# (B-frames kept; 0 lookahead and no B-frames gave ~0.13 s at a visible cost in quality).
# The presets that look no frames ahead (no macroblock tree) are left so.
LIVE_LOOKAHEAD_FRAMES = 5
NO_LOOKAHEAD_PRESETS = frozenset({"ultrafast", "superfast"})


def live_x264_params(preset: str) -> str:
    """x264-params (after a ':') that keep a live encoder's delay short."""
    if preset in NO_LOOKAHEAD_PRESETS:
        return ":sync-lookahead=0"
    return f":rc-lookahead={LIVE_LOOKAHEAD_FRAMES}:sync-lookahead=0"


def open_x264(
    rung: Rung, level: str, frame_rate: float, preset: str, threads: int, live: bool = False
) -> av.video.codeccontext.VideoCodecContext:
    """libx264 for one rung: High profile at a fixed level, ABR with a 1.2x VBV peak."""
    cc = av.CodecContext.create("libx264", "w")
    assert isinstance(cc, av.video.codeccontext.VideoCodecContext)
    cc.width, cc.height = rung.width, rung.height
    cc.pix_fmt = "yuv420p"
    cc.time_base = Fraction(1, VIDEO_HZ)
    cc.framerate = Fraction(frame_rate or 30).limit_denominator(1001)
    cc.bit_rate = rung.video_bitrate_bps
    cc.thread_type = "FRAME"
    cc.thread_count = threads
    kbps = rung.video_bitrate_bps // 1000
    cc.options = {
        "preset": preset,
        "profile": "high",
        "level": level,
        "forced-idr": "1",
        "x264-params": f"vbv-maxrate={kbps * 6 // 5}:vbv-bufsize={kbps * 2}"
        + (live_x264_params(preset) if live else ""),
    }
    cc.open()
    return cc


class RungEncoder:
    """Frames in (`put`), packets out (`take`), on a thread of its own."""

    def __init__(self, codec: av.video.codeccontext.VideoCodecContext) -> None:
        self.codec = codec
        self.busy_s = 0.0
        self._inbox: queue.Queue[av.VideoFrame | None] = queue.Queue(maxsize=QUEUE_FRAMES)
        self._out: list[EncodedPacket] = []
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="x264", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            frame = self._inbox.get()
            started = time.perf_counter()
            try:
                packets = [encoded(p) for p in self.codec.encode(frame)]
            except BaseException as exc:  # handed to the pipeline's thread by put/finish
                self._error = exc
                return
            self.busy_s += time.perf_counter() - started
            with self._lock:
                self._out.extend(packets)
            if frame is None:
                return

    def put(self, frame: av.VideoFrame | None) -> None:
        """Queue a frame (None: the end); waits while the encoder is behind."""
        while True:
            if self._error is not None:
                raise self._error
            try:
                self._inbox.put(frame, timeout=0.2)
                return
            except queue.Full:
                continue

    def take(self) -> list[EncodedPacket]:
        """Packets encoded so far, in decode order."""
        with self._lock:
            out, self._out = self._out, []
        return out

    def finish(self) -> list[EncodedPacket]:
        """Wait for the drain started by `put(None)`; the last packets."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.take()


class PassthroughRung:
    """The source's own H.264 as a rung (a live source already at that size and bitrate):
    its packets, in Annex B with SPS/PPS at every IDR, fed as they are demuxed and released
    as the decoded frames reach the same time, so each lands in the segment its time
    belongs to. Quacks like `RungEncoder` (`put`, `take`, `finish`) and costs nothing."""

    busy_s = 0.0

    @staticmethod
    def fits(rung: Rung, geometry: Geometry, source_bps: int) -> bool:
        """Whether a source (H.264: the caller knows) can be `rung` as it came: this very
        size, upright, square pixels, and not above the rung's VBV peak (0: the source did
        not say)."""
        return (
            (rung.width, rung.height) == (geometry.width, geometry.height)
            and geometry.rotation_deg == 0
            and geometry.sample_aspect == 1
            and source_bps <= rung.video_bitrate_bps * 6 // 5
        )

    def __init__(self) -> None:
        self._pending: list[EncodedPacket] = []  # decode order
        self._out: list[EncodedPacket] = []
        self._started = False

    def feed(self, packet: EncodedPacket) -> None:
        if not self._started and not packet.is_keyframe:
            return  # joined mid-GOP: nothing decodes before the first IDR
        self._started = True
        self._pending.append(packet)

    def put(self, frame: av.VideoFrame | None) -> None:
        """A decoded frame reached `frame.pts`: the packets decoded by then are placed, in
        decode order (None: all). An IDR shown later waits for its time, so that it opens
        the segment the other rungs open there; the B-frames' references before it don't."""
        if frame is None or frame.pts is None:
            self._out += self._pending
            self._pending = []
            return
        upto, ready = frame.pts, 0
        for p in self._pending:
            if p.dts > upto or (p.is_keyframe and p.pts > upto):
                break
            ready += 1
        self._out += self._pending[:ready]
        del self._pending[:ready]

    def take(self) -> list[EncodedPacket]:
        out, self._out = self._out, []
        return out

    def finish(self) -> list[EncodedPacket]:
        return self.take()
