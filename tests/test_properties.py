"""Property tests (hypothesis) for everything that parses what a client sends: video ids,
segment numbers, Range headers, viewer tokens, and the playlists `ffmpeg -method PUT` pushes.
Whatever the input, the answer is a value or the named error, never anything else."""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamd.access import tokens
from streamd.errors import BadRequest, Expired, Forbidden, InvalidVideoId, Unauthorized
from streamd.ingest.ffmpeg import parse_pushed_playlist
from streamd.ingest.http import segment_number
from streamd.ingest.receive import Received
from streamd.model.layout import check_video_id
from streamd.web.hls import bytes_response

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Header values as a client could send them (no CR/LF: those end a header).
HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=80)


@SETTINGS
@given(st.text(max_size=100))
def test_video_ids(text: str) -> None:
    try:
        assert check_video_id(text) == text
    except InvalidVideoId:
        assert not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", text)
    else:
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", text)


@SETTINGS
@given(HEADER_TEXT | st.integers(0, 10**12).map(str))
def test_segment_numbers(value: str) -> None:
    request = make_mocked_request("POST", "/upload/cam", headers={"X-Segment-Number": value})
    received = Received(Path("/nonexistent"), "", 1, "ts")
    try:
        number = segment_number(request, received)
    except BadRequest:
        assert not re.fullmatch(r"[0-9]{1,9}", value)
    else:
        assert number is None if value == "" else number == int(value)
        assert number is None or 0 <= number < 10**9


@SETTINGS
@given(
    HEADER_TEXT
    | st.builds(
        lambda a, b: f"bytes={a}-{b}",
        st.integers(-5, 3000) | st.just(""),
        st.integers(-5, 3000) | st.just(""),
    ),
    st.binary(min_size=1, max_size=2000),
)
def test_range_headers(header: str, data: bytes) -> None:
    request = make_mocked_request("GET", "/hls/cam/x.ts", headers={"Range": header})
    try:
        response = bytes_response(request, data, "video/mp2t", {})
    except web.HTTPRequestRangeNotSatisfiable:
        return
    assert isinstance(response.body, bytes)
    if response.status == 206:
        first, last = map(int, response.headers["Content-Range"][6:].split("/")[0].split("-"))
        assert response.body == data[first : last + 1]
        assert response.body
    else:
        assert response.status == 200
        assert response.body == data


@SETTINGS
@given(st.text(max_size=120) | st.none(), st.text(min_size=1, max_size=64))
def test_tokens_are_values_or_named_errors(token: str | None, video_id: str) -> None:
    try:
        tokens.verify("secret", video_id, token, 1_800_000_000)
    except (Unauthorized, Forbidden, Expired):
        return
    # Only a token signed with the secret passes.
    assert token == tokens.sign("secret", video_id, int(token.split(".")[0]))  # type: ignore[union-attr]


@SETTINGS
@given(st.text(min_size=1, max_size=64), st.integers(0, 10**11))
def test_signed_tokens_verify_until_they_expire(video_id: str, expires_s: int) -> None:
    token = tokens.sign("secret", video_id, expires_s)
    tokens.verify("secret", video_id, token, expires_s)
    try:
        tokens.verify("secret", video_id, token, expires_s + 1)
    except Expired:
        pass
    else:
        raise AssertionError("an expired token passed")


PLAYLIST_LINE = st.one_of(
    st.text(max_size=40),
    st.builds(lambda n, e: f"index{n}.{e}", st.integers(0, 10**12), st.sampled_from(["ts", "m4s"])),
    st.sampled_from(["#EXTM3U", "#EXT-X-ENDLIST", "#EXTINF:2.0,", "#EXT-X-VERSION:3"]),
)


@SETTINGS
@given(st.lists(PLAYLIST_LINE, max_size=30))
def test_pushed_playlists(lines: list[str]) -> None:
    text = "\n".join(lines)
    numbers, ended = parse_pushed_playlist(text)
    assert ended == ("#EXT-X-ENDLIST" in text)
    assert all(0 <= n < 10**9 for n in numbers)
    named = [
        int(m[1])
        for line in text.splitlines()
        if not line.startswith("#")
        and (m := re.fullmatch(r"index(\d{1,9})\.(ts|m4s)", line.strip()))
    ]
    assert set(named) <= set(numbers)
