"""The server side of RTMP's plain handshake (RTMP spec 5.2), bytes in, bytes out.

C0+C1 are answered with S0+S1+S2 at once, S2 echoing C1: the "simple handshake" that
ffmpeg's native client and OBS (librtmp) accept. Neither checks S2 when publishing, and a
zero version in S1 keeps ffmpeg from looking for a digest. C2's content is not checked
either: encoders fill it differently and nothing depends on it.
"""

from __future__ import annotations

import enum
import os

from streamd.ingest.rtmp import RtmpError

VERSION = 3  # plain RTMP; 6 and 8 are RTMPE, which we do not speak
PACKET_BYTES = 1536


class _State(enum.Enum):
    C0C1 = 1
    C2 = 2
    DONE = 3


class Handshake:
    """Feed what the client sends; send what `feed` returns; `done` once C2 arrived."""

    def __init__(self, *, uptime_ms: int = 0, random_bytes: bytes | None = None) -> None:
        rand = random_bytes if random_bytes is not None else os.urandom(PACKET_BYTES - 8)
        if len(rand) != PACKET_BYTES - 8:
            raise ValueError(f"S1 needs {PACKET_BYTES - 8} random bytes")
        # S1: time, four zero bytes (no server version: no digest scheme), random data.
        self.s1 = (uptime_ms & 0xFFFFFFFF).to_bytes(4, "big") + bytes(4) + rand
        self._state = _State.C0C1
        self._buffer = bytearray()
        self.leftover = b""  # bytes after C2: the start of the chunk stream

    @property
    def done(self) -> bool:
        return self._state is _State.DONE

    def feed(self, data: bytes) -> bytes:
        """Take client bytes; return the bytes to send back (empty until C0+C1 are in)."""
        if self.done:
            raise RuntimeError("handshake already done; feed the chunk stream instead")
        self._buffer += data
        out = b""
        if self._state is _State.C0C1 and len(self._buffer) >= 1 + PACKET_BYTES:
            version = self._buffer[0]
            if version != VERSION:
                raise RtmpError("unsupported RTMP version", f"C0 says {version}, not 3")
            c1 = bytes(self._buffer[1 : 1 + PACKET_BYTES])
            del self._buffer[: 1 + PACKET_BYTES]
            out = bytes([VERSION]) + self.s1 + c1
            self._state = _State.C2
        elif self._state is _State.C0C1 and self._buffer and self._buffer[0] != VERSION:
            raise RtmpError("unsupported RTMP version", f"C0 says {self._buffer[0]}, not 3")
        if self._state is _State.C2 and len(self._buffer) >= PACKET_BYTES:
            self.leftover = bytes(self._buffer[PACKET_BYTES:])
            self._buffer.clear()
            self._state = _State.DONE
        return out
