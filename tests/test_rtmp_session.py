"""The publisher session driven by hand-made client bytes, and FLV tag headers (legacy and
Enhanced RTMP)."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamd.ingest.rtmp import RtmpError, amf0, flv
from streamd.ingest.rtmp.chunks import ChunkDecoder, ChunkEncoder, Message, MessageType
from streamd.ingest.rtmp.handshake import PACKET_BYTES
from streamd.ingest.rtmp.session import (
    AudioTag,
    Connect,
    CreateStream,
    DeleteStream,
    Event,
    FCPublish,
    FCUnpublish,
    Metadata,
    Publish,
    PublisherSession,
    ReleaseStream,
    VideoTag,
)

HANDSHAKE = b"\x03" + bytes(PACKET_BYTES) + bytes(PACKET_BYTES)  # C0, C1, C2
AVC_SEQUENCE_HEADER = bytes.fromhex("1700000000") + b"avcC"
AVC_KEYFRAME = bytes.fromhex("1701000021") + b"nal"  # composition time 33 ms
AAC_SEQUENCE_HEADER = bytes.fromhex("af001210")


class Client:
    """What a publisher sends, built with our own encoder."""

    def __init__(self) -> None:
        self.encoder = ChunkEncoder(compress=True)

    def command(self, name: str, txn: float, *args: amf0.Value, stream_id: int = 0) -> bytes:
        payload = amf0.encode(name, txn, *args)
        return self.encoder.encode(3, MessageType.AMF0_COMMAND, stream_id, 0, payload)

    def message(self, type_id: int, timestamp_ms: int, payload: bytes, csid: int = 6) -> bytes:
        return self.encoder.encode(csid, type_id, 1, timestamp_ms, payload)

    def start(self, name: str = "cam?key=abc") -> bytes:
        return (
            self.command("connect", 1, {"app": "live", "tcUrl": "rtmp://h/live"})
            + self.command("releaseStream", 2, None, name)
            + self.command("FCPublish", 3, None, name)
            + self.command("createStream", 4, None)
            + self.command("publish", 5, None, name, "live", stream_id=1)
        )


def replies(session: PublisherSession) -> list[Message]:
    """What the server said, read back with our own decoder (S0/S1/S2 skipped)."""
    data = session.data_to_send()
    decoder = ChunkDecoder()
    return decoder.feed(data[1 + 2 * PACKET_BYTES :])


def accepted(session: PublisherSession, events: Iterable[Event]) -> list[Event]:
    """The events, accepting connect and publish as a server would, in the loop."""
    seen = []
    for event in events:
        seen.append(event)
        if isinstance(event, Connect):
            session.accept_connect()
        if isinstance(event, Publish):
            session.accept_publish(event.stream_id)
    return seen


def test_publish_conversation() -> None:
    client, session = Client(), PublisherSession()
    events = accepted(session, session.feed(HANDSHAKE + client.start()))
    assert events == [
        Connect("live", "rtmp://h/live", {"app": "live", "tcUrl": "rtmp://h/live"}),
        ReleaseStream("cam"),
        FCPublish("cam"),
        CreateStream(1),
        Publish(1, "cam", "abc", {"key": "abc"}, "live"),
    ]
    sent = replies(session)
    kinds = [m.type_id for m in sent]
    assert kinds[:3] == [
        MessageType.WINDOW_ACK_SIZE,
        MessageType.SET_PEER_BANDWIDTH,
        MessageType.SET_CHUNK_SIZE,
    ]
    commands = [amf0.decode_all(m.payload) for m in sent if m.type_id == 20]
    assert commands[0][:2] == ["_result", 1.0]
    assert commands[0][3]["code"] == "NetConnection.Connect.Success"  # type: ignore[index]
    assert commands[1] == ["_result", 4.0, None, 1.0]  # createStream: stream 1
    assert commands[2][0] == "onStatus"
    assert commands[2][3]["code"] == "NetStream.Publish.Start"  # type: ignore[index]
    assert [m.stream_id for m in sent if m.type_id == 20] == [0, 0, 1]

    metadata = amf0.EcmaArray({"width": 320.0, "height": 240.0})
    media = (
        client.message(18, 0, amf0.encode("@setDataFrame", "onMetaData", metadata), csid=4)
        + client.message(9, 0, AVC_SEQUENCE_HEADER)
        + client.message(8, 0, AAC_SEQUENCE_HEADER, csid=4)
        + client.message(9, 33, AVC_KEYFRAME)
        + client.command("FCUnpublish", 6, None, "cam?key=abc")
        + client.command("deleteStream", 7, None, 1)
    )
    events = list(session.feed(media))
    assert events[0] == Metadata(1, 0, dict(metadata), amf0.encode("onMetaData", metadata))
    video = [e for e in events if isinstance(e, VideoTag)]
    assert [(v.timestamp_ms, v.info.is_sequence_header, v.info.is_keyframe) for v in video] == [
        (0, True, False),
        (33, False, True),
    ]
    assert video[1].info.composition_time_ms == 33
    assert video[1].body == AVC_KEYFRAME
    audio = [e for e in events if isinstance(e, AudioTag)]
    assert audio[0].info.codec == "aac"
    assert audio[0].info.is_sequence_header
    assert events[-2:] == [FCUnpublish("cam"), DeleteStream(1)]
    assert not session.ignored


def test_refused_publish_stores_nothing() -> None:
    client, session = Client(), PublisherSession()
    for event in session.feed(HANDSHAKE + client.start("cam?key=wrong")):
        if isinstance(event, Connect):
            session.accept_connect()
        if isinstance(event, Publish):
            session.reject_publish(event.stream_id, "bad key")
    status = [amf0.decode_all(m.payload) for m in replies(session) if m.type_id == 20][-1]
    assert status[0] == "onStatus"
    assert status[3] == {  # type: ignore[comparison-overlap]
        "level": "error",
        "code": "NetStream.Publish.BadName",
        "description": "bad key",
    }
    assert list(session.feed(client.message(9, 0, AVC_KEYFRAME))) == []
    assert session.ignored["media before publish"] == 1


def test_unknown_messages_are_counted_not_fatal() -> None:
    client, session = Client(), PublisherSession()
    accepted(session, session.feed(HANDSHAKE + client.start()))
    events = list(
        session.feed(
            client.message(7, 0, b"\x01\x02")  # reserved type
            + client.message(99, 0, b"")
            + client.message(MessageType.AMF0_SHARED_OBJECT, 0, b"so")
            + client.command("getStreamLength", 8, None, "cam")
            + client.message(18, 0, amf0.encode("onTextData", {"text": "hi"}), csid=4)
            + client.message(8, 23, b"\xaf\x01aac")
        )
    )
    assert [type(e) for e in events] == [AudioTag]
    assert session.ignored == {
        "message type 7": 1,
        "message type 99": 1,
        "message type 19": 1,
        "command getStreamLength": 1,
        "data message": 1,
    }


def test_acknowledgements_follow_the_peers_window() -> None:
    client, session = Client(), PublisherSession()
    accepted(session, session.feed(HANDSHAKE + client.start()))
    session.data_to_send()
    window = client.encoder.encode(2, MessageType.WINDOW_ACK_SIZE, 0, 0, (5000).to_bytes(4, "big"))
    list(session.feed(window))
    assert session.data_to_send() == b""
    list(session.feed(client.message(9, 0, b"\x27\x01" + bytes(6000))))
    acks = [m for m in ChunkDecoder().feed(session.data_to_send()) if m.type_id == 3]
    assert len(acks) == 1
    assert int.from_bytes(acks[0].payload, "big") == session.bytes_received


def test_aggregate_message_is_split_into_tags() -> None:
    client, session = Client(), PublisherSession()
    accepted(session, session.feed(HANDSHAKE + client.start()))
    body = flv.tag(9, 1000, AVC_KEYFRAME)[:-4] + bytes(4) + flv.tag(8, 1023, b"\xaf\x01x")
    events = list(session.feed(client.message(MessageType.AGGREGATE, 5000, body)))
    assert [(type(e), e.timestamp_ms) for e in events] == [(VideoTag, 5000), (AudioTag, 5023)]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (amf0.encode(1.0), "command without a name"),
        (amf0.encode("connect", 1.0, "not an object"), "connect without a command object"),
        (amf0.encode("publish", 5.0, None), "publish without a stream name"),
        (b"\x02\x00\x09conn", "truncated AMF0"),
    ],
)
def test_malformed_commands(payload: bytes, reason: str) -> None:
    session = PublisherSession()
    data = HANDSHAKE + ChunkEncoder().encode(3, 20, 0, 0, payload)
    with pytest.raises(RtmpError, match=reason):
        list(session.feed(data))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_after_handshake_only_rtmp_error(data: bytes) -> None:
    session = PublisherSession(max_message_bytes=4096)
    try:
        accepted(session, session.feed(HANDSHAKE + Client().start() + data))
    except RtmpError:
        pass


@pytest.mark.parametrize(
    ("body", "codec", "packet", "frame_type", "composition_ms"),
    [
        (bytes.fromhex("1700000000"), "avc1", "sequence_start", 1, 0),
        (bytes.fromhex("2701ffffde"), "avc1", "coded_frames", 2, -34),
        (bytes.fromhex("1702000000"), "avc1", "sequence_end", 1, 0),
        (b"\x90hvc1conf", "hvc1", "sequence_start", 1, 0),
        (b"\x91hvc1\x00\x00\x21nal", "hvc1", "coded_frames", 1, 33),
        (b"\xa3hvc1nal", "hvc1", "coded_frames", 2, 0),  # CodedFramesX: no composition
        (b"\x90av01conf", "av01", "sequence_start", 1, 0),
        (b"\x91av01obu", "av01", "coded_frames", 1, 0),
        (b"\xa1vp09frm", "vp09", "coded_frames", 2, 0),
        (b"\x92vp09", "vp09", "sequence_end", 1, 0),
        (b"\x84hvc1\x02\x00\x09colorInfo", "hvc1", "metadata", 0, 0),
        (b"\x97\x02abc\x01hvc1\x00\x00\x00x", "hvc1", "coded_frames", 1, 0),  # ModEx first
        (b"\x24vp6", "vp6", "coded_frames", 2, 0),
        (b"", "unknown", "unknown", 0, 0),
        (b"\x17\x01", "unknown", "unknown", 1, 0),
        (b"\x91hv", "unknown", "unknown", 1, 0),
    ],
)
def test_video_headers(
    body: bytes, codec: str, packet: str, frame_type: int, composition_ms: int
) -> None:
    info = flv.parse_video(body)
    assert (info.codec, info.packet, info.frame_type) == (codec, packet, frame_type)
    assert info.composition_time_ms == composition_ms


@pytest.mark.parametrize(
    ("body", "codec", "packet"),
    [
        (bytes.fromhex("af001210"), "aac", "sequence_start"),
        (bytes.fromhex("af01aa"), "aac", "coded_frames"),
        (bytes.fromhex("2f00"), "mp3", "coded_frames"),
        (b"\x90Opus\x01", "opus", "sequence_start"),
        (b"\x91mp4aaa", "aac", "coded_frames"),
        (b"", "unknown", "unknown"),
        (b"\xaf", "aac", "unknown"),
    ],
)
def test_audio_headers(body: bytes, codec: str, packet: str) -> None:
    info = flv.parse_audio(body)
    assert (info.codec, info.packet) == (codec, packet)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_tag_headers_never_raise(body: bytes) -> None:
    flv.parse_video(body)
    flv.parse_audio(body)


def test_flv_tag_keeps_32_bit_timestamps() -> None:
    tag = flv.tag(9, 0x12345678, b"body")
    assert tag[4:8] == bytes([0x34, 0x56, 0x78, 0x12])  # 24 low bits, then the high 8
    assert int.from_bytes(tag[-4:], "big") == 11 + 4
    assert flv.file_header(has_audio=True, has_video=True)[:5] == b"FLV\x01\x05"
