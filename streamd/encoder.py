"""A rung's H.264 encoder, fed from its own thread so that all rungs encode side by side.

PyAV releases the GIL inside avcodec_send_frame/receive_packet, so while one x264 instance
pushes back (its frame threads are full) the others keep taking frames, and at the end of an
upload all of them drain at once instead of one after another.
"""

from __future__ import annotations

import queue
import threading
import time
from fractions import Fraction
from typing import Any

import av

from streamd.ladder import Rung
from streamd.package import VIDEO_HZ, EncodedPacket

QUEUE_FRAMES = 4  # frames waiting per rung: enough to ride out x264's bursts


def encoded(p: av.Packet[Any]) -> EncodedPacket:
    """A PyAV packet as a plain value (it crosses threads and processes)."""
    assert p.pts is not None
    assert p.dts is not None
    return EncodedPacket(bytes(p), int(p.pts), int(p.dts), int(p.duration or 0), p.is_keyframe)


def open_x264(
    rung: Rung, level: str, frame_rate: float, preset: str, threads: int
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
        "x264-params": f"vbv-maxrate={kbps * 6 // 5}:vbv-bufsize={kbps * 2}",
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
