"""What the server sends: protocol control (RTMP spec 5.4), user control (7.1.7) and AMF0
command messages, chunked by one `ChunkEncoder`; and when to acknowledge (5.4.3)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from streamd.ingest.rtmp import amf0
from streamd.ingest.rtmp.chunks import ChunkEncoder, MessageType

CSID_CONTROL = 2  # protocol control messages go on chunk stream 2, stream 0 (5.4)
CSID_COMMAND = 3
CSID_STATUS = 5  # onStatus on the media stream, as nginx-rtmp and MediaMTX send it
SERVER_CHUNK_SIZE = 4096
WINDOW_BYTES = 2_500_000  # what ffmpeg announces and expects


class UserControlEvent(enum.IntEnum):
    """User control event types (RTMP spec 7.1.7)."""

    STREAM_BEGIN = 0
    STREAM_EOF = 1
    STREAM_DRY = 2
    SET_BUFFER_LENGTH = 3
    STREAM_IS_RECORDED = 4
    PING_REQUEST = 6
    PING_RESPONSE = 7


class PeerBandwidthLimit(enum.IntEnum):
    HARD = 0
    SOFT = 1
    DYNAMIC = 2


def _u32(value: int) -> bytes:
    return (value & 0xFFFFFFFF).to_bytes(4, "big")


@dataclass
class Writer:
    """Builds the bytes of each message the server sends, on one outgoing chunk stream."""

    encoder: ChunkEncoder = field(default_factory=ChunkEncoder)

    def _control(self, type_id: MessageType, payload: bytes) -> bytes:
        return self.encoder.encode(CSID_CONTROL, type_id, 0, 0, payload)

    def set_chunk_size(self, size: int) -> bytes:
        """Announce `size`; every later message is cut at it."""
        out = self._control(MessageType.SET_CHUNK_SIZE, _u32(size))
        self.encoder.chunk_size = size
        return out

    def window_ack_size(self, size_bytes: int) -> bytes:
        return self._control(MessageType.WINDOW_ACK_SIZE, _u32(size_bytes))

    def set_peer_bandwidth(
        self, size_bytes: int, limit: PeerBandwidthLimit = PeerBandwidthLimit.DYNAMIC
    ) -> bytes:
        return self._control(MessageType.SET_PEER_BANDWIDTH, _u32(size_bytes) + bytes([limit]))

    def acknowledgement(self, sequence_number: int) -> bytes:
        return self._control(MessageType.ACKNOWLEDGEMENT, _u32(sequence_number))

    def user_control(self, event: UserControlEvent, data: bytes) -> bytes:
        return self._control(MessageType.USER_CONTROL, event.to_bytes(2, "big") + data)

    def stream_begin(self, stream_id: int) -> bytes:
        return self.user_control(UserControlEvent.STREAM_BEGIN, _u32(stream_id))

    def command(
        self,
        name: str,
        transaction_id: float,
        *args: amf0.Value,
        stream_id: int = 0,
        csid: int = CSID_COMMAND,
    ) -> bytes:
        """An AMF0 command message: name, transaction id, then the arguments."""
        payload = amf0.encode(name, transaction_id, *args)
        return self.encoder.encode(csid, MessageType.AMF0_COMMAND, stream_id, 0, payload)

    def on_status(self, stream_id: int, level: str, code: str, description: str) -> bytes:
        """`onStatus` on a media stream (NetStream.Publish.Start, .BadName, ...)."""
        info: amf0.Value = {"level": level, "code": code, "description": description}
        return self.command("onStatus", 0, None, info, stream_id=stream_id, csid=CSID_STATUS)


@dataclass
class AckWindow:
    """Counts received bytes against the window the peer asked for (Window Acknowledgement
    Size): `received` says when an Acknowledgement is due and with which sequence number."""

    window_bytes: int | None = None  # None until the peer announces one: then no acks
    total_bytes: int = 0
    _last_ack_bytes: int = 0

    def received(self, size_bytes: int) -> int | None:
        """Count `size_bytes` more; the sequence number to acknowledge, if one is due."""
        self.total_bytes += size_bytes
        if not self.window_bytes or self.total_bytes - self._last_ack_bytes < self.window_bytes:
            return None
        self._last_ack_bytes = self.total_bytes
        return self.total_bytes & 0xFFFFFFFF  # the sequence number wraps (5.4.3)
