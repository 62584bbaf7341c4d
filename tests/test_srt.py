"""SRT ingest: the stream id parser (pure), then the listener over Debian's libsrt with
Debian's ffmpeg as the real publisher."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamd.ingest.srt import StreamIdError, UnsupportedMode
from streamd.ingest.srt.streamid import StreamId, parse_stream_id

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
