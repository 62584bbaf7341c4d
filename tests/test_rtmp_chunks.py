"""The chunk stream: header types, chunk stream id forms, chunk size changes, extended
timestamps (past 0xFFFFFF, i.e. 4 h 40 min), interleaving, Abort; and hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamd.ingest.rtmp import RtmpError
from streamd.ingest.rtmp.chunks import ChunkDecoder, ChunkEncoder, Message, MessageType
from streamd.ingest.rtmp.control import AckWindow, Writer
from streamd.ingest.rtmp.handshake import PACKET_BYTES, Handshake

VIDEO, AUDIO = MessageType.VIDEO, MessageType.AUDIO


def encode_all(encoder: ChunkEncoder, messages: list[Message]) -> bytes:
    return b"".join(
        encoder.encode(m.chunk_stream_id, m.type_id, m.stream_id, m.timestamp_ms, m.payload)
        for m in messages
    )


def decode_bytewise(data: bytes, decoder: ChunkDecoder | None = None) -> list[Message]:
    decoder = decoder or ChunkDecoder()
    return [m for i in range(len(data)) for m in decoder.feed(data[i : i + 1])]


@pytest.mark.parametrize("csid", [2, 63, 64, 319, 320, 65599])
@pytest.mark.parametrize("compress", [False, True])
def test_round_trip_chunk_stream_id_forms(csid: int, compress: bool) -> None:
    messages = [Message(csid, VIDEO, 1, 40 * i, bytes([i]) * (100 + 50 * i)) for i in range(6)]
    data = encode_all(ChunkEncoder(compress=compress), messages)
    assert ChunkDecoder().feed(data) == messages
    assert decode_bytewise(data) == messages


def test_compressed_headers_use_types_1_to_3() -> None:
    encoder = ChunkEncoder(compress=True)
    sizes = [encoder.encode(4, AUDIO, 1, t, b"x" * 10) for t in (0, 23, 46, 69)]
    assert [s[0] >> 6 for s in sizes] == [0, 2, 3, 3]  # absolute, delta, then "same again"
    other = encoder.encode(4, AUDIO, 1, 80, b"y" * 11)
    assert other[0] >> 6 == 1  # a new length needs a type-1 header


@pytest.mark.parametrize("repeat_extended", [True, False])
@pytest.mark.parametrize("compress", [False, True])
def test_timestamps_past_24_bits(compress: bool, repeat_extended: bool) -> None:
    """4 h 40 min in: the 3-byte field saturates and a 4-byte extended timestamp follows,
    in type-3 chunks too (ffmpeg, OBS) or not (some encoders)."""
    start = 0xFFFFFF - 100
    messages = [
        Message(6, VIDEO, 1, start + 33 * i, bytes([i]) * (300 if i % 2 else 40)) for i in range(10)
    ]
    messages += [Message(6, VIDEO, 1, 0x12345678 + 33 * i, b"k" * 300) for i in range(3)]
    data = encode_all(ChunkEncoder(compress=compress, repeat_extended=repeat_extended), messages)
    assert ChunkDecoder().feed(data) == messages
    assert decode_bytewise(data) == messages


def test_deltas_past_24_bits_and_wraparound() -> None:
    """A delta itself over 0xFFFFFF goes in the extended field of a type-1/2/3 header; and
    the 32-bit timestamp wraps after 49.7 days."""
    big = 0x1000005
    stamps = [0, big, 2 * big, 3 * big, 0xFFFFFFF0]
    messages = [Message(4, AUDIO, 1, t, b"a" * 200) for t in stamps]
    encoder = ChunkEncoder(compress=True)
    data = encode_all(encoder, messages)
    assert ChunkDecoder().feed(data) == messages
    wrapped = encoder.encode(4, AUDIO, 1, 0x1_0000_0010, b"a" * 200)
    assert ChunkDecoder().feed(data + wrapped)[-1].timestamp_ms == 0x10


def test_type3_new_message_after_type0_adds_the_absolute_field() -> None:
    # ffmpeg reads (and writes) it this way: the "delta" of a type 0 is its timestamp.
    first = bytes([0x04]) + (40).to_bytes(3, "big") + (2).to_bytes(3, "big") + b"\x08"
    first += (1).to_bytes(4, "little") + b"ab"
    again = bytes([0xC4]) + b"cd"
    assert [m.timestamp_ms for m in ChunkDecoder().feed(first + again)] == [40, 80]


def test_chunk_size_changes_mid_stream() -> None:
    writer = Writer()
    data = writer.encoder.encode(5, VIDEO, 1, 0, b"a" * 300)  # 128-byte chunks
    data += writer.set_chunk_size(4096)
    data += writer.encoder.encode(5, VIDEO, 1, 33, b"b" * 5000)
    data += writer.set_chunk_size(7)
    data += writer.encoder.encode(5, VIDEO, 1, 66, b"c" * 50)
    for decoded in (ChunkDecoder().feed(data), decode_bytewise(data)):
        media = [m for m in decoded if m.type_id == VIDEO]
        assert [m.payload for m in media] == [b"a" * 300, b"b" * 5000, b"c" * 50]
    decoder = ChunkDecoder()
    decoder.feed(data)
    assert decoder.chunk_size == 7


def _chunks(data: bytes, first_header: int, chunk_size: int = 128) -> list[bytes]:
    """Split one encoded message (one-byte basic headers, no extended timestamp)."""
    out, pos = [data[: first_header + chunk_size]], first_header + chunk_size
    while pos < len(data):
        out.append(data[pos : pos + 1 + chunk_size])
        pos += 1 + chunk_size
    return out


def test_messages_interleaved_across_chunk_streams() -> None:
    a = Message(4, AUDIO, 1, 10, b"A" * 300)
    v = Message(6, VIDEO, 1, 20, b"V" * 400)
    encoder = ChunkEncoder()
    ca, cv = _chunks(encode_all(encoder, [a]), 12), _chunks(encode_all(encoder, [v]), 12)
    data = cv[0] + ca[0] + cv[1] + ca[1] + ca[2] + cv[2] + cv[3]
    assert ChunkDecoder().feed(data) == [a, v]


def test_abort_drops_a_half_message() -> None:
    encoder = ChunkEncoder()
    half = _chunks(encode_all(encoder, [Message(6, VIDEO, 1, 0, b"x" * 300)]), 12)[0]
    abort = encoder.encode(2, MessageType.ABORT, 0, 0, (6).to_bytes(4, "big"))
    after = Message(6, VIDEO, 1, 33, b"y" * 10)
    decoded = ChunkDecoder().feed(half + abort + encode_all(ChunkEncoder(), [after]))
    assert [m.type_id for m in decoded] == [MessageType.ABORT, VIDEO]
    assert decoded[-1] == after


def test_empty_message() -> None:
    data = encode_all(ChunkEncoder(), [Message(3, 20, 0, 0, b"")])
    assert ChunkDecoder().feed(data) == [Message(3, 20, 0, 0, b"")]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x06" + b"\x00\x00\x00" + b"\xff\xff\xff" + b"\x09" + bytes(4), "too large"),
        (b"\xc6abc", "without a type-0 header"),
        (b"\x46" + bytes(7), "without a type-0 header"),
        (b"\x02" + bytes(3) + b"\x00\x00\x04\x01" + bytes(4) + bytes(4), "invalid chunk size"),
        (b"\x02" + bytes(3) + b"\x00\x00\x04\x01" + bytes(4) + b"\x80" + bytes(3), "chunk size"),
        (b"\x02" + bytes(3) + b"\x00\x00\x02\x01" + bytes(4) + b"\x00\x01", "truncated"),
    ],
)
def test_hostile_chunks(data: bytes, reason: str) -> None:
    with pytest.raises(RtmpError, match=reason):
        ChunkDecoder().feed(data)


def test_half_messages_are_capped_in_total() -> None:
    decoder = ChunkDecoder(max_message_bytes=1000, max_buffered_bytes=2000)
    encoder = ChunkEncoder()
    firsts = [  # the first chunk of many messages, never the rest
        _chunks(encode_all(encoder, [Message(csid, 9, 1, 0, bytes(900))]), 12)[0]
        for csid in range(3, 40)
    ]
    with pytest.raises(RtmpError, match="half-received"):
        decoder.feed(b"".join(firsts))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(1, 64))
def test_fuzz_only_rtmp_error(data: bytes, piece: int) -> None:
    decoder = ChunkDecoder(max_message_bytes=4096)
    try:
        for start in range(0, len(data), piece):
            decoder.feed(data[start : start + piece])
    except RtmpError:
        pass


def test_ack_window() -> None:
    assert AckWindow().received(10_000_000) is None  # no window announced: no acks
    window = AckWindow(window_bytes=1000)
    assert window.received(999) is None
    assert window.received(1) == 1000
    assert window.received(500) is None
    assert window.received(600) == 2100
    window.total_bytes = 0xFFFFFFFF
    assert window.received(5000) == 4999  # the sequence number wraps


def test_handshake_echoes_c1_and_hands_over_leftover() -> None:
    handshake = Handshake(uptime_ms=7, random_bytes=(bytes(range(256)) * 6)[:1528])
    c1 = bytes(range(256)) * 6
    assert handshake.feed(b"\x03" + c1[:100]) == b""
    out = handshake.feed(c1[100:])
    assert out[0] == 3
    assert len(out) == 1 + 2 * PACKET_BYTES
    s1, s2 = out[1 : 1 + PACKET_BYTES], out[1 + PACKET_BYTES :]
    assert s1[:8] == bytes([0, 0, 0, 7, 0, 0, 0, 0])
    assert s2 == c1
    assert handshake.feed(s1[:1000]) == b""
    assert not handshake.done
    assert handshake.feed(s1[1000:] + b"\x02chunks") == b""
    assert handshake.done
    assert handshake.leftover == b"\x02chunks"


@pytest.mark.parametrize("version", [0, 6, 0x47])  # RTMPE, or an HTTP request
def test_handshake_refuses_other_versions(version: int) -> None:
    with pytest.raises(RtmpError, match="version"):
        Handshake().feed(bytes([version]))
