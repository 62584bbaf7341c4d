"""AMF0 values both ways, and hostile bytes: nothing but RtmpError escapes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamd.ingest.rtmp import RtmpError, amf0
from streamd.ingest.rtmp.amf0 import UNDEFINED, Date, EcmaArray

SAMPLES: list[amf0.Value] = [
    1.5,
    True,
    False,
    "",
    "héllo",
    "x" * 70_000,  # a long string (marker 0x0C)
    None,
    UNDEFINED,
    Date(1_700_000_000_000.0, 0),
    {"app": "live", "nested": {"n": 2.0, "list": [1.0, "a", None]}},
    EcmaArray({"width": 320.0, "height": 240.0}),
    ["av01", "vp09", "hvc1"],  # Enhanced RTMP's fourCcList: a strict array
    [],
    {},
]


@pytest.mark.parametrize("value", SAMPLES, ids=lambda v: type(v).__name__)
def test_round_trip(value: amf0.Value) -> None:
    decoded = amf0.decode_all(amf0.encode(value))
    assert decoded == [value]
    assert type(decoded[0]) is type(value)  # an ECMA array stays one


def test_known_bytes() -> None:
    data = bytes.fromhex(
        "02000763 6f6e6e65 6374"  # "connect"
        "00 3ff0000000000000"  # 1.0
        "03 0003 617070 02 0004 6c697665"  # {app: "live"
        "000a 666f7572436346697374 0a 00000002 02 0004 68766331 02 0004 61763031"
        "000009"  # fourCcFist: ["hvc1", "av01"]}
        "05 06"  # null, undefined
    )
    assert amf0.decode_all(data) == [
        "connect",
        1.0,
        {"app": "live", "fourCcFist": ["hvc1", "av01"]},
        None,
        UNDEFINED,
    ]


def test_ints_encode_as_numbers() -> None:
    assert amf0.encode(3) == amf0.encode(3.0) == bytes.fromhex("00 4008000000000000")


def test_ecma_array_count_is_advisory() -> None:
    # ffmpeg's count is right; others are not: the end marker decides.
    data = bytes.fromhex("08 00000005 0001 61 0101 000009")
    assert amf0.decode_all(data) == [EcmaArray({"a": True})]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x09", "unsupported AMF0 marker"),  # object end where a value should be
        (b"\x07\x00\x01", "unsupported AMF0 marker"),  # references: not used by encoders
        (b"\x11", "unsupported AMF0 marker"),
        (b"\x0a\xff\xff\xff\xff", "strict array longer"),
        (b"\x02\x00\x05ab", "truncated"),
        (b"\x00\x01", "truncated"),
        (b"\x03\x00\x01a", "truncated"),
        (b"\x0a\x00\x00\x00\x01" * 100 + b"\x05", "too deep"),
    ],
)
def test_malformed(data: bytes, reason: str) -> None:
    with pytest.raises(RtmpError, match=reason):
        amf0.decode_all(data)


def test_every_truncation_is_a_clear_error() -> None:
    data = amf0.encode(*SAMPLES[:5], *SAMPLES[6:])
    for end in range(len(data)):
        try:
            amf0.decode_all(data[:end])
        except RtmpError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_only_rtmp_error(data: bytes) -> None:
    try:
        amf0.decode_all(data)
    except RtmpError:
        pass


@settings(max_examples=100, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=20,
    )
)
def test_round_trip_generated(value: amf0.Value) -> None:
    assert amf0.decode_all(amf0.encode(value)) == [value]
