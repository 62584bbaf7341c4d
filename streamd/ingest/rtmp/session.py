"""A publisher's side of an RTMP conversation, sans-I/O: `for event in session.feed(data)`
with what the socket read, then write `data_to_send()` to the socket.

The session answers what needs no decision (the handshake, createStream, acknowledgements)
itself; the server decides on `Connect` and `Publish` (app, key) with `accept_*` or
`reject_*`. Media and metadata pass only on a stream whose publish was accepted, so a
refused publisher never gets a byte stored. Unknown messages and commands are counted in
`ignored`, never fatal; malformed ones raise `RtmpError`.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TypeAlias
from urllib.parse import parse_qsl

from streamd.ingest.rtmp import RtmpError, amf0
from streamd.ingest.rtmp.chunks import MAX_MESSAGE_BYTES, ChunkDecoder, Message, MessageType
from streamd.ingest.rtmp.chunks import parse_u32 as _u32
from streamd.ingest.rtmp.control import SERVER_CHUNK_SIZE, WINDOW_BYTES, AckWindow, Writer
from streamd.ingest.rtmp.flv import AudioInfo, VideoInfo, parse_audio, parse_video
from streamd.ingest.rtmp.handshake import Handshake

MAX_STREAMS = 16  # createStream calls a connection may make (ffmpeg and OBS make one)


@dataclass(frozen=True)
class Connect:
    """`connect`: the app (the first path part of the URL) and the whole tcUrl."""

    app: str
    tc_url: str
    properties: dict[str, amf0.Value]


@dataclass(frozen=True)
class ReleaseStream:
    name: str


@dataclass(frozen=True)
class FCPublish:
    name: str


@dataclass(frozen=True)
class CreateStream:
    """A message stream was created (and answered) with this id."""

    stream_id: int


@dataclass(frozen=True)
class Publish:
    """`publish`: the stream name with its query split off (`cam?key=abc`: name `cam`,
    key `abc`). Answer with `accept_publish` or `reject_publish`."""

    stream_id: int
    name: str
    key: str | None
    query: dict[str, str]
    publish_type: str  # "live", "record" or "append"


@dataclass(frozen=True)
class Metadata:
    """`@setDataFrame`/`onMetaData`: the values, and the script tag body an FLV file carries
    (`onMetaData` and an ECMA array, without `@setDataFrame`)."""

    stream_id: int
    timestamp_ms: int
    values: dict[str, amf0.Value]
    flv_body: bytes


@dataclass(frozen=True)
class VideoTag:
    stream_id: int
    timestamp_ms: int  # decode time; presentation adds info.composition_time_ms
    body: bytes  # the FLV video tag body, unchanged
    info: VideoInfo


@dataclass(frozen=True)
class AudioTag:
    stream_id: int
    timestamp_ms: int
    body: bytes
    info: AudioInfo


@dataclass(frozen=True)
class FCUnpublish:
    name: str


@dataclass(frozen=True)
class DeleteStream:
    """`deleteStream` (or `closeStream`): the publisher is done with this stream."""

    stream_id: int


Event: TypeAlias = (
    Connect
    | ReleaseStream
    | FCPublish
    | CreateStream
    | Publish
    | Metadata
    | VideoTag
    | AudioTag
    | FCUnpublish
    | DeleteStream
)


def _split_name(raw: str) -> tuple[str, dict[str, str]]:
    name, _, query = raw.partition("?")
    return name, dict(parse_qsl(query, keep_blank_values=True))


def _str_arg(args: list[amf0.Value], index: int, command: str) -> str:
    if len(args) <= index or not isinstance(args[index], str):
        raise RtmpError(f"{command} without a stream name", repr(args)[:200])
    value = args[index]
    assert isinstance(value, str)
    return value


@dataclass
class PublisherSession:
    """One publisher connection, from C0 to deleteStream."""

    max_message_bytes: int = MAX_MESSAGE_BYTES
    handshake: Handshake = field(default_factory=Handshake)
    ignored: Counter[str] = field(default_factory=Counter)
    app: str | None = None
    _decoder: ChunkDecoder = field(init=False)
    _writer: Writer = field(default_factory=Writer)
    _acks: AckWindow = field(default_factory=AckWindow)
    _out: bytearray = field(default_factory=bytearray)
    _connect_txn: float | None = None
    _connected: bool = False
    _deferred: list[tuple[float, int]] = field(default_factory=list)  # createStream answers
    _streams: set[int] = field(default_factory=set)
    _publishing: set[int] = field(default_factory=set)
    _backlog: deque[Message] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self._decoder = ChunkDecoder(max_message_bytes=self.max_message_bytes)

    @property
    def bytes_received(self) -> int:
        return self._acks.total_bytes

    def data_to_send(self) -> bytes:
        """The bytes to write to the publisher now (and forget)."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def feed(self, data: bytes) -> Iterator[Event]:
        """Take bytes from the publisher; iterate the result for the events they completed.

        The bytes are decoded at once (a malformed chunk raises here), but each message is
        handled only when the next event is asked for: a decision taken in the loop on
        `Connect` or `Publish` applies to the messages after it, however TCP split them.
        Messages not iterated yet wait for the next call.
        """
        sequence = self._acks.received(len(data))
        if not self.handshake.done:
            self._out += self.handshake.feed(data)
            data = self.handshake.leftover if self.handshake.done else b""
        self._backlog.extend(self._decoder.feed(data))
        if sequence is not None:
            self._out += self._writer.acknowledgement(sequence)
        return self._events()

    def _events(self) -> Iterator[Event]:
        while self._backlog:
            yield from self._dispatch(self._backlog.popleft())

    def accept_connect(self) -> None:
        """Answer `connect` with success, after the window, bandwidth and chunk size."""
        if self._connect_txn is None:
            raise RuntimeError("no connect to accept")
        w = self._writer
        self._out += w.window_ack_size(WINDOW_BYTES)
        self._out += w.set_peer_bandwidth(WINDOW_BYTES)
        self._out += w.set_chunk_size(SERVER_CHUNK_SIZE)
        properties: amf0.Value = {"fmsVer": "FMS/3,0,1,123", "capabilities": 31}
        info: amf0.Value = {
            "level": "status",
            "code": "NetConnection.Connect.Success",
            "description": "Connection succeeded.",
            "objectEncoding": 0,
        }
        self._out += w.command("_result", self._connect_txn, properties, info)
        self._connected = True
        for txn, stream_id in self._deferred:
            self._out += w.command("_result", txn, None, stream_id)
        self._deferred.clear()

    def reject_connect(self, description: str) -> None:
        """Answer `connect` with `_error` (then close the connection)."""
        info: amf0.Value = {
            "level": "error",
            "code": "NetConnection.Connect.Rejected",
            "description": description,
        }
        self._out += self._writer.command("_error", self._connect_txn or 1, None, info)
        self._deferred.clear()

    def accept_publish(self, stream_id: int) -> None:
        """Start the stream: StreamBegin and NetStream.Publish.Start; media passes from now."""
        self._publishing.add(stream_id)
        self._out += self._writer.stream_begin(stream_id)
        self._out += self._writer.on_status(
            stream_id, "status", "NetStream.Publish.Start", "Start publishing"
        )

    def reject_publish(
        self, stream_id: int, description: str, code: str = "NetStream.Publish.BadName"
    ) -> None:
        """Refuse the stream with an error onStatus (a wrong key: BadName, as others do)."""
        self._out += self._writer.on_status(stream_id, "error", code, description)

    def _dispatch(self, message: Message) -> list[Event]:
        kind = message.type_id
        if kind in (MessageType.AUDIO, MessageType.VIDEO):
            return self._media(message, message.timestamp_ms, message.payload)
        if kind == MessageType.AMF0_COMMAND:
            return self._command(message, amf0.decode_all(message.payload))
        if kind == MessageType.AMF3_COMMAND:  # an AMF3 command starts with a format byte
            return self._command(message, amf0.decode_all(message.payload, 1))
        if kind in (MessageType.AMF0_DATA, MessageType.AMF3_DATA):
            start = 1 if kind == MessageType.AMF3_DATA else 0
            return self._data(message, amf0.decode_all(message.payload, start))
        if kind == MessageType.AGGREGATE:
            return self._aggregate(message)
        if kind == MessageType.WINDOW_ACK_SIZE:
            self._acks.window_bytes = _u32(message, "Window Acknowledgement Size")
        elif kind not in (
            MessageType.SET_CHUNK_SIZE,  # the decoder applied it
            MessageType.ABORT,
            MessageType.ACKNOWLEDGEMENT,
            MessageType.USER_CONTROL,  # SetBufferLength, PingResponse: nothing to do
            MessageType.SET_PEER_BANDWIDTH,
        ):
            self.ignored[f"message type {kind}"] += 1
        return []

    def _media(self, message: Message, timestamp_ms: int, body: bytes) -> list[Event]:
        if message.stream_id not in self._publishing:
            self.ignored["media before publish"] += 1
            return []
        if message.type_id == MessageType.VIDEO:
            return [VideoTag(message.stream_id, timestamp_ms, body, parse_video(body))]
        return [AudioTag(message.stream_id, timestamp_ms, body, parse_audio(body))]

    def _data(self, message: Message, values: list[amf0.Value]) -> list[Event]:
        if values[:1] == ["@setDataFrame"]:
            values = values[1:]
        if values[:1] != ["onMetaData"] or len(values) < 2 or not isinstance(values[1], dict):
            self.ignored["data message"] += 1
            return []
        if message.stream_id not in self._publishing:
            self.ignored["metadata before publish"] += 1
            return []
        data = dict(values[1])
        body = amf0.encode("onMetaData", amf0.EcmaArray(data))
        return [Metadata(message.stream_id, message.timestamp_ms, data, body)]

    def _command(self, message: Message, values: list[amf0.Value]) -> list[Event]:
        if not values or not isinstance(values[0], str):
            raise RtmpError("command without a name", repr(values)[:200])
        name, args = values[0], values[1:]
        txn = args[0] if args and isinstance(args[0], float) else 0.0
        if name == "connect":
            obj: Any = args[1] if len(args) > 1 else None
            if not isinstance(obj, dict):
                raise RtmpError("connect without a command object", repr(args)[:200])
            self._connect_txn = txn
            self.app = str(obj.get("app", "")).strip("/")
            return [Connect(self.app, str(obj.get("tcUrl", "")), obj)]
        if name == "releaseStream":
            return [ReleaseStream(_split_name(_str_arg(args, 2, name))[0])]
        if name == "FCPublish":
            return [FCPublish(_split_name(_str_arg(args, 2, name))[0])]
        if name == "FCUnpublish":
            return [FCUnpublish(_split_name(_str_arg(args, 2, name))[0])]
        if name == "createStream":
            if len(self._streams) >= MAX_STREAMS:
                raise RtmpError("too many streams on one connection", str(MAX_STREAMS))
            stream_id = len(self._streams) + 1
            self._streams.add(stream_id)
            if self._connected:
                self._out += self._writer.command("_result", txn, None, stream_id)
            else:  # a client that did not wait for connect's answer gets this one after it
                self._deferred.append((txn, stream_id))
            return [CreateStream(stream_id)]
        if name == "publish":
            raw = _str_arg(args, 2, name)
            kind = args[3] if len(args) > 3 and isinstance(args[3], str) else "live"
            stream_name, query = _split_name(raw)
            return [Publish(message.stream_id, stream_name, query.get("key"), query, kind)]
        if name in ("deleteStream", "closeStream"):
            target = args[2] if name == "deleteStream" and len(args) > 2 else None
            stream_id = int(target) if isinstance(target, float) else message.stream_id
            self._publishing.discard(stream_id)
            return [DeleteStream(stream_id)]
        self.ignored[f"command {name[:40]}"] += 1
        return []

    def _aggregate(self, message: Message) -> list[Event]:
        """Split an aggregate message into its FLV tags (RTMP spec 7.1.6)."""
        body, pos, events, first_ts = message.payload, 0, list[Event](), None
        while pos < len(body):
            if pos + 11 > len(body):
                raise RtmpError("truncated aggregate message", f"at {pos} of {len(body)}")
            kind, size = body[pos], int.from_bytes(body[pos + 1 : pos + 4], "big")
            ts = int.from_bytes(body[pos + 4 : pos + 7], "big") | body[pos + 7] << 24
            end = pos + 11 + size
            if end + 4 > len(body):
                raise RtmpError("truncated aggregate message", f"tag of {size} bytes at {pos}")
            first_ts = ts if first_ts is None else first_ts
            timestamp_ms = (message.timestamp_ms + ts - first_ts) & 0xFFFFFFFF
            if kind in (MessageType.AUDIO, MessageType.VIDEO):
                sub = Message(message.chunk_stream_id, kind, message.stream_id, timestamp_ms, b"")
                events += self._media(sub, timestamp_ms, body[pos + 11 : end])
            pos = end + 4
        return events
