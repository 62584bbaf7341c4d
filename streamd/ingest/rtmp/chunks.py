"""RTMP's chunk stream (RTMP spec 5.3): the decoder (bytes in, whole messages out) and the
encoder (messages in, chunks out).

Timestamps are the protocol's 32-bit milliseconds. A type-0 header carries the absolute
timestamp, types 1 and 2 a delta, and type 3 (a new message) repeats the last timestamp
field: after a type 0 that field is the absolute value, which is how ffmpeg reads and
writes it (rtmppkt.c). A timestamp field of 0xFFFFFF means a 4-byte extended timestamp
follows; ffmpeg and OBS repeat it in every type-3 chunk of that message, some encoders do
not, so the decoder takes those 4 bytes only when they repeat the value (as SRS does);
it waits for 4 bytes to tell, which only a final message shorter than that could stall.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from streamd.ingest.rtmp import RtmpError

DEFAULT_CHUNK_SIZE = 128
MAX_CHUNK_SIZE = 0x7FFFFFFF  # the top bit of Set Chunk Size must be 0 (5.4.1)
# The 3-byte length field tops out just under 16 MiB; half that still holds a 4K keyframe
# at broadcast bitrates many times over, and bounds what one peer can make us buffer.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
EXTENDED = 0xFFFFFF
_U32 = 0xFFFFFFFF


class MessageType(enum.IntEnum):
    """RTMP message type ids (RTMP spec 5.4, 6.2, 7.1)."""

    SET_CHUNK_SIZE = 1
    ABORT = 2
    ACKNOWLEDGEMENT = 3
    USER_CONTROL = 4
    WINDOW_ACK_SIZE = 5
    SET_PEER_BANDWIDTH = 6
    AUDIO = 8
    VIDEO = 9
    AMF3_DATA = 15
    AMF3_SHARED_OBJECT = 16
    AMF3_COMMAND = 17
    AMF0_DATA = 18
    AMF0_SHARED_OBJECT = 19
    AMF0_COMMAND = 20
    AGGREGATE = 22


@dataclass(frozen=True)
class Message:
    """One whole RTMP message, reassembled from its chunks."""

    chunk_stream_id: int
    type_id: int
    stream_id: int
    timestamp_ms: int  # 32-bit, wraps after 49.7 days
    payload: bytes


@dataclass
class _ChunkStream:
    timestamp_ms: int = 0
    timestamp_field: int = 0  # the last header's delta (or absolute, after type 0)
    length: int = 0
    type_id: int = 0
    stream_id: int = 0
    extended: int | None = None  # the last extended timestamp value, for type-3 repeats
    partial: bytearray | None = None


@dataclass
class ChunkDecoder:
    """Reassembles messages from chunk bytes however TCP split them."""

    max_message_bytes: int = MAX_MESSAGE_BYTES
    max_buffered_bytes: int = 4 * MAX_MESSAGE_BYTES  # over all half-received messages
    chunk_size: int = DEFAULT_CHUNK_SIZE
    bytes_received: int = 0
    _buffer: bytearray = field(default_factory=bytearray)
    _streams: dict[int, _ChunkStream] = field(default_factory=dict)
    _buffered: int = 0

    def feed(self, data: bytes) -> list[Message]:
        """Take bytes; return the messages they completed. Set Chunk Size and Abort take
        effect here, before the next chunk is read, and are returned as well."""
        self.bytes_received += len(data)
        self._buffer += data
        messages: list[Message] = []
        pos = 0
        while True:
            parsed = self._chunk(pos)
            if parsed is None:
                break
            pos, message = parsed
            if message is not None:
                self._control(message)
                messages.append(message)
        del self._buffer[:pos]
        return messages

    def _control(self, message: Message) -> None:
        if message.type_id == MessageType.SET_CHUNK_SIZE:
            self.chunk_size = parse_u32(message, "Set Chunk Size")
            if not 1 <= self.chunk_size <= MAX_CHUNK_SIZE:
                raise RtmpError("invalid chunk size", str(self.chunk_size))
        elif message.type_id == MessageType.ABORT:
            stream = self._streams.get(parse_u32(message, "Abort"))
            if stream is not None and stream.partial is not None:
                self._buffered -= len(stream.partial)
                stream.partial = None

    def _chunk(self, pos: int) -> tuple[int, Message | None] | None:
        """Parse one chunk at `pos` if all of it is buffered: (next pos, finished message)."""
        buf = self._buffer
        if pos >= len(buf):
            return None
        fmt, csid = buf[pos] >> 6, buf[pos] & 0x3F
        pos += 1
        if csid in (0, 1):  # 2- and 3-byte basic headers (5.3.1.1)
            width = 1 if csid == 0 else 2
            if pos + width > len(buf):
                return None
            csid = 64 + int.from_bytes(buf[pos : pos + width], "little")
            pos += width
        header_len = (11, 7, 3, 0)[fmt]
        if pos + header_len > len(buf):
            return None
        stream = self._streams.get(csid)
        if stream is None:
            if fmt != 0:
                raise RtmpError("chunk stream starts without a type-0 header", f"csid {csid}")
            stream = _ChunkStream()
        head = buf[pos : pos + header_len]
        pos += header_len
        ts_field = int.from_bytes(head[0:3], "big") if fmt < 3 else stream.timestamp_field
        extended: int | None = None
        if fmt < 3 and ts_field == EXTENDED:
            if pos + 4 > len(buf):
                return None
            extended = int.from_bytes(buf[pos : pos + 4], "big")
            pos += 4
        elif fmt == 3 and stream.extended is not None:
            if pos + 4 > len(buf):
                return None  # wait for enough bytes to tell a repeat from payload
            if int.from_bytes(buf[pos : pos + 4], "big") == stream.extended:
                pos += 4
            extended = stream.extended

        starts = stream.partial is None
        if fmt < 3 or starts:
            length = int.from_bytes(head[3:6], "big") if fmt < 2 else stream.length
            if length > self.max_message_bytes:
                raise RtmpError(
                    "RTMP message too large", f"{length} bytes > {self.max_message_bytes}"
                )
            piece = min(length, self.chunk_size)
        else:
            length = stream.length
            assert stream.partial is not None
            piece = min(length - len(stream.partial), self.chunk_size)
        if pos + piece > len(buf):
            return None

        # The whole chunk is here: only now change state, so a short read changes nothing.
        self._streams[csid] = stream
        if fmt < 3 or starts:
            if stream.partial is not None:  # a new header mid-message: drop the old one
                self._buffered -= len(stream.partial)
            delta = extended if extended is not None else ts_field
            if fmt == 0:
                stream.timestamp_ms = delta
            else:
                stream.timestamp_ms = (stream.timestamp_ms + delta) & _U32
            if fmt < 3:
                stream.timestamp_field = ts_field
                stream.extended = extended
            if fmt < 2:
                stream.length = length
                stream.type_id = head[6]
            if fmt == 0:
                stream.stream_id = int.from_bytes(head[7:11], "little")
            stream.partial = bytearray()
        assert stream.partial is not None
        self._buffered += piece
        if self._buffered > self.max_buffered_bytes:
            raise RtmpError("too many half-received RTMP messages", f"{self._buffered} bytes")
        stream.partial += buf[pos : pos + piece]
        pos += piece
        if len(stream.partial) < stream.length:
            return pos, None
        payload = bytes(stream.partial)
        self._buffered -= len(payload)
        stream.partial = None
        message = Message(csid, stream.type_id, stream.stream_id, stream.timestamp_ms, payload)
        return pos, message


def parse_u32(message: Message, what: str) -> int:
    """The 4-byte big-endian value a control message carries."""
    if len(message.payload) < 4:
        raise RtmpError(f"truncated {what} message", f"{len(message.payload)} bytes")
    return int.from_bytes(message.payload[:4], "big")


def _basic_header(fmt: int, csid: int) -> bytes:
    if 2 <= csid <= 63:
        return bytes([fmt << 6 | csid])
    if 64 <= csid <= 319:
        return bytes([fmt << 6, csid - 64])
    if 320 <= csid <= 65599:
        return bytes([fmt << 6 | 1]) + (csid - 64).to_bytes(2, "little")
    raise ValueError(f"chunk stream id out of range: {csid}")


@dataclass
class _Sent:
    type_id: int
    stream_id: int
    length: int
    timestamp_ms: int
    timestamp_field: int


@dataclass
class ChunkEncoder:
    """Splits messages into chunks. With `compress` it picks header types 1-3 as ffmpeg
    does (same stream: delta; same length and type: type 2; same delta: type 3); without,
    every message starts with a type-0 header."""

    chunk_size: int = DEFAULT_CHUNK_SIZE
    compress: bool = False
    repeat_extended: bool = True  # the extended timestamp in type-3 chunks too
    _sent: dict[int, _Sent] = field(default_factory=dict)

    def encode(
        self, csid: int, type_id: int, stream_id: int, timestamp_ms: int, payload: bytes
    ) -> bytes:
        """The chunks of one message."""
        timestamp_ms &= _U32
        prev = self._sent.get(csid)
        fmt, ts_value = 0, timestamp_ms
        if self.compress and prev is not None and prev.stream_id == stream_id:
            delta = (timestamp_ms - prev.timestamp_ms) & _U32
            if delta < 0x80000000:  # forward in time; else restart with an absolute header
                fmt, ts_value = 1, delta
                if prev.type_id == type_id and prev.length == len(payload):
                    fmt = 3 if delta == prev.timestamp_field else 2
        ts_field = min(ts_value, EXTENDED)
        ext = ts_value.to_bytes(4, "big") if ts_field == EXTENDED else b""
        out = bytearray(_basic_header(fmt, csid))
        if fmt < 3:
            out += ts_field.to_bytes(3, "big")
        if fmt < 2:
            out += len(payload).to_bytes(3, "big") + bytes([type_id])
        if fmt == 0:
            out += stream_id.to_bytes(4, "little")
        if fmt < 3 or self.repeat_extended:
            out += ext
        out += payload[: self.chunk_size]
        for start in range(self.chunk_size, len(payload), self.chunk_size):
            out += _basic_header(3, csid)
            if self.repeat_extended:
                out += ext
            out += payload[start : start + self.chunk_size]
        field_kept = ts_value if fmt < 3 else (prev.timestamp_field if prev else ts_value)
        self._sent[csid] = _Sent(type_id, stream_id, len(payload), timestamp_ms, field_kept)
        return bytes(out)
