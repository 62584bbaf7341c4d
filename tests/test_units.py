"""Pure pieces: the ladder plan, playlist rules, codec strings."""

from __future__ import annotations

from fractions import Fraction

import m3u8
import pytest

from streamd.errors import ConfigError
from streamd.manifests.hls.tags import MasterPlaylist, MediaPlaylist, MediaSegment, Variant
from streamd.media.codecs.h264 import avc_codecs, h264_level
from streamd.model.ladder import Geometry, parse_ladder, plan_ladder

LADDER = parse_ladder(["1080p:5000k", "720p:2800k", "480p:1400k", "360p:800k"])


def _sizes(g: Geometry) -> list[tuple[str, int, int]]:
    return [(r.name, r.width, r.height) for r in plan_ladder(LADDER, g, 128_000)]


def test_ladder_never_upscales_and_keeps_aspect() -> None:
    assert _sizes(Geometry(1920, 1080)) == [
        ("1080p", 1920, 1080),
        ("720p", 1280, 720),
        ("480p", 854, 480),
        ("360p", 640, 360),
    ]
    assert _sizes(Geometry(854, 480)) == [("480p", 854, 480), ("360p", 640, 360)]
    assert _sizes(Geometry(1080, 1920)) == [
        ("1080p", 1080, 1920),
        ("720p", 720, 1280),
        ("480p", 480, 854),
        ("360p", 360, 640),
    ]
    assert _sizes(Geometry(1920, 1080, rotation_deg=90))[0] == ("1080p", 1080, 1920)
    assert _sizes(Geometry(1440, 1080, Fraction(4, 3)))[0] == ("1080p", 1920, 1080)
    assert _sizes(Geometry(2048, 858))[0] == ("720p", 1718, 720)  # 2.39:1, even width
    assert _sizes(Geometry(320, 240)) == [("240p", 320, 240)]  # below every rung: as it is


def test_bad_ladders() -> None:
    for bad in (["720:2800k"], ["720p"], ["721p:100k"], [], ["720p:1k", "720p:2k"]):
        with pytest.raises(ConfigError):
            parse_ladder(bad)


def test_h264_level() -> None:
    assert h264_level(1920, 1080, 30, 6_000_000) == "4.0"
    assert h264_level(1920, 1080, 60, 6_000_000) == "4.2"
    assert h264_level(640, 360, 30, 1_000_000) == "3.0"
    assert h264_level(1280, 720, 30, 3_360_000) == "3.1"


def test_avc_codecs_from_sps() -> None:
    au = b"\x00\x00\x00\x01\x09\xf0\x00\x00\x00\x01\x67\x64\x00\x1f\xac" + b"\x00" * 8
    assert avc_codecs(au) == "avc1.64001f"
    with pytest.raises(ValueError, match="SPS"):
        avc_codecs(b"\x00\x00\x01\x65\x88")


def test_media_playlist_rules() -> None:
    segs = (
        MediaSegment("a.m4s", 2.0, 1_700_000_000.0, "init-1.mp4"),
        MediaSegment("b.m4s", 2.4, 1_700_000_002.0, "init-1.mp4"),
        MediaSegment("c.m4s", 1.5, 1_700_000_004.4, "init-2.mp4"),
    )
    text = MediaPlaylist(segs, 2).render()
    parsed = m3u8.loads(text)
    assert parsed.version == 6
    assert parsed.target_duration == 2
    assert parsed.playlist_type == "event"
    assert text.count("#EXT-X-MAP") == 2  # a new map only where it changes
    assert parsed.segments[2].init_section.uri == "init-2.mp4"
    assert not parsed.is_endlist
    longer = MediaPlaylist((MediaSegment("x.ts", 2.6),), 2)
    assert longer.version == 3
    assert longer.target_duration == 3  # never below a rounded EXTINF (RFC 8216 4.3.3.1)
    assert m3u8.loads(MediaPlaylist(segs, 2, ended=True).render()).is_endlist


def test_master_playlist_render() -> None:
    v = Variant("720p/index.m3u8", 3_000_000, 2_600_000, 1280, 720, 29.97, "avc1.64001f,mp4a.40.2")
    parsed = m3u8.loads(MasterPlaylist((v,), 6).render())
    info = parsed.playlists[0].stream_info
    assert (info.bandwidth, info.average_bandwidth) == (3_000_000, 2_600_000)
    assert info.resolution == (1280, 720)
    assert info.frame_rate == 29.97
    assert info.codecs == "avc1.64001f,mp4a.40.2"
