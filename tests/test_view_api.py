"""Watching: master and media playlists, /viewstream by time, caching, ranges, CORS, API."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import m3u8
import pytest
from aiohttp.test_utils import TestClient

from streamd.appkeys import CACHE, CONFIG, STORE, STREAMS
from streamd.config import Config
from streamd.manifests.hls.tags import round_half_up
from tests.conftest import (
    AppClient,
    MediaFactory,
    fetch,
    ffprobe,
    files_encoded,
    published,
    upload,
    wait_for,
)

MPEGURL = "application/vnd.apple.mpegurl"


@pytest.fixture
async def stream(client: TestClient, media: MediaFactory) -> str:
    """A stream of three 2 s uploads (6 s), still live."""
    parts = media.split(media("mp4", duration_s=6, gop=30), 2.0)
    for i, part in enumerate(parts):
        await upload(client, "show", part, number=i)
    await wait_for(client, "show", published(3))
    return "show"


async def test_master_playlist(client: TestClient, stream: str) -> None:
    resp = await client.get(f"/viewstream/metadata/{stream}")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == MPEGURL
    assert "max-age=1" in resp.headers["Cache-Control"]
    text = await resp.text()
    master = m3u8.loads(text, uri=str(client.make_url(f"/viewstream/metadata/{stream}")))
    assert master.is_variant
    assert "#EXT-X-INDEPENDENT-SEGMENTS" in text
    assert re.search(r"^#EXT-X-VERSION:6$", text, re.M)
    by_res = {p.stream_info.resolution: p for p in master.playlists}
    assert set(by_res) == {(320, 240), (192, 144)}
    for p in master.playlists:
        info = p.stream_info
        assert re.fullmatch(r"avc1\.6400[0-9a-f]{2},mp4a\.40\.2", info.codecs)
        assert info.frame_rate == 30.0
        assert info.bandwidth >= info.average_bandwidth > 50_000
        assert p.absolute_uri.endswith(f"/hls/{stream}/fmp4/{info.resolution[1]}p/index.m3u8")
        assert (await client.get(p.uri)).status == 200
    # Bandwidth is measured from the real segments: the bigger rung needs more.
    assert (
        by_res[(320, 240)].stream_info.average_bandwidth
        > by_res[(192, 144)].stream_info.average_bandwidth
    )


async def test_codecs_match_the_encoded_stream(
    client: TestClient, stream: str, tmp_path: Path
) -> None:
    master = m3u8.loads(await (await client.get(f"/viewstream/metadata/{stream}")).text())
    for p in master.playlists:
        rung = p.uri.split("/")[-2]
        seg = tmp_path / f"{rung}.ts"
        seg.write_bytes(await fetch(client, f"/hls/{stream}/ts/{rung}/seg000000.ts"))
        (video,) = ffprobe(seg, "-show_streams", "-select_streams", "v")["streams"]
        assert video["profile"] == "High"
        assert p.stream_info.codecs == f"avc1.6400{video['level']:02x},mp4a.40.2"


async def test_ts_master_and_media_playlists(client: TestClient, stream: str) -> None:
    text = await (await client.get(f"/viewstream/metadata/{stream}?format=ts")).text()
    master = m3u8.loads(text)
    assert re.search(r"^#EXT-X-VERSION:4$", text, re.M)  # 4: its I-frame playlists
    for p in master.playlists:
        media_text = (await fetch(client, p.uri)).decode()
        playlist = m3u8.loads(media_text)
        assert playlist.playlist_type == "event"
        assert playlist.version == 3
        assert not playlist.is_endlist
        assert playlist.media_sequence == 0
        assert len(playlist.segments) == 3
        assert all(s.init_section is None for s in playlist.segments)
        assert all(s.program_date_time is not None for s in playlist.segments)
        gaps = [
            (b.program_date_time - a.program_date_time).total_seconds()
            for a, b in zip(playlist.segments, playlist.segments[1:], strict=False)
        ]
        assert gaps == pytest.approx([s.duration for s in playlist.segments[:-1]], abs=0.002)
        assert all(round_half_up(s.duration) <= playlist.target_duration for s in playlist.segments)


async def test_i_frame_playlists(client: TestClient, stream: str, tmp_path: Path) -> None:
    """Trick play: per TS rung, each segment's first picture as a byte range, which decodes
    to exactly that picture (after the segment's PAT and PMT, as the draft allows)."""
    master = m3u8.loads(await (await client.get(f"/viewstream/metadata/{stream}?format=ts")).text())
    assert len(master.iframe_playlists) == len(master.playlists) == 2
    for variant in master.iframe_playlists:
        info = variant.iframe_stream_info
        assert re.fullmatch(r"avc1\.6400[0-9a-f]{2}", info.codecs)  # video only
        assert info.bandwidth > 0
        assert info.resolution in {(320, 240), (192, 144)}
        text = (await fetch(client, variant.uri)).decode()
        assert "#EXT-X-VERSION:4\n" in text
        playlist = m3u8.loads(text)
        assert playlist.is_i_frames_only
        assert len(playlist.segments) == 3
        folder = variant.uri.rsplit("/", 1)[0]
        for seg in playlist.segments:
            length, offset = (int(v) for v in seg.byterange.split("@"))
            whole = await fetch(client, f"{folder}/{seg.uri}")
            assert 0 < offset < length + offset <= len(whole)
            picture = tmp_path / "iframe.ts"  # the segment's PAT and PMT, then the range
            picture.write_bytes(whole[:offset] + whole[offset : offset + length])
            probe = ffprobe(picture, "-count_frames", "-show_streams", "-select_streams", "v")
            assert int(probe["streams"][0]["nb_read_frames"]) == 1


async def test_fmp4_media_playlist(client: TestClient, stream: str) -> None:
    text = (await fetch(client, f"/hls/{stream}/fmp4/240p/index.m3u8")).decode()
    playlist = m3u8.loads(text)
    assert playlist.version == 6
    assert playlist.target_duration == 2
    assert "#EXT-X-INDEPENDENT-SEGMENTS" in text
    assert text.count("#EXT-X-MAP") == 1
    init = playlist.segments[0].init_section.uri
    assert re.fullmatch(r"init-[0-9a-f]{12}\.mp4", init)
    data = await fetch(client, f"/hls/{stream}/fmp4/240p/{init}")
    assert data[4:8] == b"ftyp"


async def test_playlists_on_disk_match_what_is_served(client: TestClient, stream: str) -> None:
    root = client.app[CONFIG].data_dir / "hls" / stream
    assert (root / "fmp4" / "master.m3u8").is_file()
    assert (root / "ts" / "master.m3u8").is_file()
    for packaging in ("fmp4", "ts"):
        for rung in ("240p", "144p"):
            served = await fetch(client, f"/hls/{stream}/{packaging}/{rung}/index.m3u8")
            assert (root / packaging / rung / "index.m3u8").read_bytes() == served
    disk_master = m3u8.loads((root / "fmp4" / "master.m3u8").read_text())
    assert sorted(p.uri for p in disk_master.playlists) == ["144p/index.m3u8", "240p/index.m3u8"]
    assert not list(root.rglob(".tmp-*")), "no temp files left behind"


async def test_segment_headers_cache_and_ranges(client: TestClient, stream: str) -> None:
    url = f"/hls/{stream}/ts/240p/seg000001.ts"
    resp = await client.get(url)
    whole = await resp.read()
    assert resp.headers["Content-Type"] == "video/mp2t"
    assert "immutable" in resp.headers["Cache-Control"]
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    resp = await client.get(url, headers={"Range": "bytes=100-299"})
    assert resp.status == 206
    assert resp.headers["Content-Range"] == f"bytes 100-299/{len(whole)}"
    assert await resp.read() == whole[100:300]
    resp = await client.get(url, headers={"Range": "bytes=-188"})
    assert resp.status == 206
    assert await resp.read() == whole[-188:]
    resp = await client.get(url, headers={"Range": f"bytes={len(whole) + 10}-"})
    assert resp.status == 416
    m4s = await client.get(f"/hls/{stream}/fmp4/144p/seg000000.m4s")
    assert m4s.headers["Content-Type"] == "video/iso.segment"
    assert (await client.get(f"/hls/{stream}/ts/240p/seg000099.ts")).status == 404
    assert (await client.get(f"/hls/{stream}/ts/240p/..%2f..%2fmanifest.json")).status == 404
    preflight = await client.options(
        url,
        headers={"Origin": "http://elsewhere.example", "Access-Control-Request-Headers": "range"},
    )
    assert preflight.status == 204
    assert "Range" in preflight.headers["Access-Control-Allow-Headers"]


async def test_recent_segments_come_from_ram_older_from_disk(
    client: TestClient, stream: str
) -> None:
    cache = client.app[CACHE]
    hits = cache.hits
    key = f"hls/{stream}/ts/240p/seg000002.ts"
    await fetch(client, "/" + key)
    assert cache.hits == hits + 1
    cache.discard(key)  # as if evicted: the disk copy serves it, with ranges
    misses = cache.misses
    resp = await client.get("/" + key, headers={"Range": "bytes=0-187"})
    assert resp.status == 206
    assert cache.misses == misses + 1
    assert await resp.read() == client.app[STORE].store.get(key)[:188]


async def test_viewstream_by_timestamp(client: TestClient, stream: str, tmp_path: Path) -> None:
    resp = await client.get(
        f"/viewstream/{stream}",
        params={"timestamp": "3.5", "format": "mp4", "resolution": "240p", "lang": "en"},
    )
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "video/mp4"
    assert resp.headers["X-Segment-Sequence"] == "1"
    assert float(resp.headers["X-Segment-Start"]) == pytest.approx(2.0)
    clip = tmp_path / "t.mp4"
    clip.write_bytes(await resp.read())
    probe = ffprobe(clip, "-show_streams", "-show_format")
    video = next(s for s in probe["streams"] if s["codec_type"] == "video")
    assert (video["width"], video["height"]) == (320, 240)
    # A file of its own: it starts at 0, not on the internal timeline (it once began at
    # 12 s for the segment at 2 s), and lasts the segment.
    assert float(video["start_time"]) == 0
    assert float(video["duration"]) == pytest.approx(2.0, abs=1 / 30)

    resp = await client.get(
        f"/viewstream/{stream}", params={"timestamp": "0", "format": "ts", "resolution": "200p"}
    )
    assert resp.status == 200
    assert resp.headers["X-Resolution"] == "144p"  # the nearest rung below
    clip = tmp_path / "t.ts"
    clip.write_bytes(await resp.read())
    video = ffprobe(clip, "-show_streams", "-select_streams", "v")["streams"][0]
    assert (video["width"], video["height"]) == (192, 144)

    # MPEG-TS keeps its stream time; MOV is the MP4 remuxed.
    for fmt, start, content_type in (("ts", 4.0, "video/mp2t"), ("mov", 0.0, "video/quicktime")):
        resp = await client.get(f"/viewstream/{stream}", params={"timestamp": "4.5", "format": fmt})
        assert (resp.status, resp.headers["Content-Type"]) == (200, content_type)
        clip = tmp_path / f"t4.{fmt}"
        clip.write_bytes(await resp.read())
        probe = ffprobe(clip, "-show_streams", "-show_format")
        assert probe["format"]["format_name"].startswith("mpegts" if fmt == "ts" else "mov")
        video = next(s for s in probe["streams"] if s["codec_type"] == "video")
        assert float(video["start_time"]) == pytest.approx(start, abs=0.001)
        assert {s["codec_type"] for s in probe["streams"]} == {"video", "audio"}


async def test_viewstream_by_wall_clock(client: TestClient, stream: str) -> None:
    """?time= takes the clock the playlists' EXT-X-PROGRAM-DATE-TIME follows."""
    playlist = m3u8.loads((await fetch(client, f"/hls/{stream}/fmp4/240p/index.m3u8")).decode())
    second = playlist.segments[1].current_program_date_time
    assert second is not None
    for when, sequence in ((second, "1"), (second + timedelta(seconds=2.5), "2")):
        resp = await client.get(f"/viewstream/{stream}", params={"time": when.isoformat()})
        assert resp.status == 200, await resp.text()
        assert resp.headers["X-Segment-Sequence"] == sequence
    for bad, status in (
        ("yesterday", 400),
        (second.replace(tzinfo=None).isoformat(), 400),  # no time zone
        ((second - timedelta(hours=1)).isoformat(), 404),  # before the stream began
        ((second + timedelta(hours=1)).isoformat(), 404),  # not published yet
    ):
        resp = await client.get(f"/viewstream/{stream}", params={"time": bad})
        assert resp.status == status, (bad, await resp.text())
        assert (await resp.json())["message"]


@pytest.mark.parametrize(("fmt", "at_stream_time"), [("mp4", False), ("mov", False), ("ts", True)])
async def test_a_clip_is_whole_segments_in_one_file(
    client: TestClient, stream: str, tmp_path: Path, fmt: str, at_stream_time: bool
) -> None:
    """2.5 to 5.5 s: segments 1 and 2 (2 to 6 s) whole, remuxed into one file."""
    params = {"from": "2.5", "to": "5.5", "format": fmt, "resolution": "240p"}
    resp = await client.get(f"/viewstream/{stream}/clip", params=params)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Disposition"].startswith("attachment")
    assert float(resp.headers["X-Clip-Start"]) == pytest.approx(2.0)
    assert float(resp.headers["X-Clip-Duration"]) == pytest.approx(4.0)
    clip = tmp_path / f"clip.{fmt}"
    clip.write_bytes(await resp.read())
    probe = ffprobe(clip, "-show_streams", "-count_frames")
    video = next(s for s in probe["streams"] if s["codec_type"] == "video")
    assert float(video["start_time"]) == pytest.approx(2.0 if at_stream_time else 0, abs=0.001)
    assert float(video["duration"]) == pytest.approx(4.0, abs=1 / 30)  # within a frame
    assert int(video["nb_read_frames"]) == 120
    audio = next(s for s in probe["streams"] if s["codec_type"] == "audio")
    assert float(audio["duration"]) == pytest.approx(4.0, abs=0.05)


async def test_seek_bar_previews(client: TestClient, stream: str, tmp_path: Path) -> None:
    """A WebVTT thumbnails track, named in the API: a cue per segment, in time order, each
    pointing inside a real sprite sheet; and a JPEG per segment."""
    links = (await (await client.get(f"/api/videos/{stream}")).json())["links"]
    track_url = links["thumbnails"]
    assert track_url == f"/hls/{stream}/thumbs.vtt"
    resp = await client.get(track_url)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/vtt")
    assert resp.headers["Cache-Control"] == "no-cache"  # it grows with the stream
    text = await resp.text()
    assert text.startswith("WEBVTT\n\n")
    cues = re.findall(r"^(\S+) --> (\S+)\n(\S+)\n", text, re.M)
    assert len(cues) == 3
    times = [
        sum(float(x) * 60**i for i, x in enumerate(reversed(t.split(":"))))
        for start, end, _ in cues
        for t in (start, end)
    ]
    assert times == pytest.approx([0, 2, 2, 4, 4, 6], abs=0.05)
    folder = track_url.rsplit("/", 1)[0]
    for _, _, target in cues:
        image, _, xywh = target.partition("#xywh=")
        x, y, w, h = (int(v) for v in xywh.split(","))
        sheet = tmp_path / "sheet.jpg"
        sheet.write_bytes(await fetch(client, f"{folder}/{image}"))
        (picture,) = ffprobe(sheet, "-show_streams")["streams"]
        assert (w, h) == (160, 120)  # 4:3 source
        assert 0 <= x
        assert x + w <= picture["width"]
        assert 0 <= y
        assert y + h <= picture["height"]
    for sequence in range(3):
        tile = tmp_path / "tile.jpg"
        tile.write_bytes(await fetch(client, f"{folder}/thumbs/seg{sequence:06d}.jpg"))
        (picture,) = ffprobe(tile, "-show_streams")["streams"]
        assert (picture["width"], picture["height"]) == (160, 120)


async def test_webm_is_encoded_once_then_kept(
    client: TestClient, stream: str, tmp_path: Path
) -> None:
    """VP9 + Opus at the size asked for, made on the first request only (the counter)."""
    params = {"timestamp": "2.5", "format": "webm", "resolution": "144p"}

    assert await files_encoded(client) == 0
    # Three viewers at once (a live stream's newest segment): one encode for them all.
    responses = await asyncio.gather(
        *(client.get(f"/viewstream/{stream}", params=params) for _ in range(3))
    )
    bodies = set()
    for resp in responses:
        assert (resp.status, resp.headers["Content-Type"]) == (200, "video/webm")
        bodies.add(await resp.read())
    (first,) = bodies
    assert await files_encoded(client) == 1
    # Made on the viewers' files process, at low priority, not on the uploads' prober.
    jobs = client.app[STREAMS].jobs
    (files,) = jobs._files.processes()  # type: ignore[attr-defined]
    assert files.pid not in {p.pid for p in jobs._prober.processes()}  # type: ignore[attr-defined]
    stat = Path(f"/proc/{files.pid}/stat").read_text()  # noqa: ASYNC240
    assert int(stat.rsplit(")", 1)[1].split()[16]) == 19  # nice
    (tmp_path / "s.webm").write_bytes(first)
    probe = ffprobe(tmp_path / "s.webm", "-show_streams", "-show_format", "-count_frames")
    assert probe["format"]["format_name"].startswith("matroska,webm")
    video = next(s for s in probe["streams"] if s["codec_type"] == "video")
    audio = next(s for s in probe["streams"] if s["codec_type"] == "audio")
    assert (video["codec_name"], audio["codec_name"]) == ("vp9", "opus")
    assert (video["width"], video["height"]) == (192, 144)
    assert float(video["start_time"]) == 0
    assert int(video["nb_read_frames"]) == 60  # the 2 s segment, every frame
    # Asked again: from the store, not encoded again.
    assert (
        await fetch(
            client, f"/viewstream/{stream}?{'&'.join(f'{k}={v}' for k, v in params.items())}"
        )
        == first
    )
    assert await files_encoded(client) == 1
    # A clip in WebM: its span encoded whole.
    clip = await fetch(client, f"/viewstream/{stream}/clip?from=0&to=4&format=webm&resolution=144p")
    (tmp_path / "c.webm").write_bytes(clip)
    probe = ffprobe(tmp_path / "c.webm", "-show_streams", "-count_frames", "-select_streams", "v")
    assert int(probe["streams"][0]["nb_read_frames"]) == 120
    assert await files_encoded(client) == 2


async def test_webm_made_eagerly_is_there_before_it_is_asked_for(
    make_client: AppClient, config: Config, media: MediaFactory
) -> None:
    """`webm = "eager"`: every rung's WebM of a segment is made as it is published; a viewer
    then gets it from the store (the counter does not move)."""
    client = await make_client(replace(config, transcode=replace(config.transcode, webm="eager")))
    parts = media.split(media("mp4", duration_s=4, gop=30), 2.0)
    for i, part in enumerate(parts):
        await upload(client, "eager", part, number=i)
    await wait_for(client, "eager", published(2))

    deadline = time.monotonic() + 30
    for _ in range(300):  # 2 segments x 2 rungs, made in the background
        if await files_encoded(client) >= 4 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert await files_encoded(client) == 4
    for timestamp in ("0.5", "2.5"):
        for rung in ("240p", "144p"):
            resp = await client.get(
                "/viewstream/eager",
                params={"timestamp": timestamp, "format": "webm", "resolution": rung},
            )
            assert (resp.status, resp.headers["Content-Type"]) == (200, "video/webm")
    assert await files_encoded(client) == 4


async def test_webm_can_be_turned_off(
    make_client: AppClient, config: Config, media: MediaFactory
) -> None:
    client = await make_client(replace(config, transcode=replace(config.transcode, webm="off")))
    await upload(client, "plain", media("ts", duration_s=1.0), number=0)
    await wait_for(client, "plain", published(1))
    resp = await client.get("/viewstream/plain", params={"format": "webm"})
    assert resp.status == 404
    assert "WebM is off" in (await resp.json())["message"]
    assert (await client.get("/viewstream/plain", params={"format": "mp4"})).status == 200


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"from": "3", "to": "2"}, 400),
        ({"from": "3"}, 400),
        ({"from": "x", "to": "2"}, 400),
        ({"from": "0", "to": "601"}, 400),
        ({"from": "0", "to": "121", "format": "webm"}, 400),  # encoded: shorter
        ({"from": "4", "to": "9"}, 404),  # not published yet (the stream is live)
        ({"from": "0", "to": "2", "format": "avi"}, 400),
    ],
)
async def test_clip_errors(
    client: TestClient, stream: str, params: dict[str, str], status: int
) -> None:
    resp = await client.get(f"/viewstream/{stream}/clip", params=params)
    body = await resp.json()
    assert resp.status == status, body
    assert body["message"]


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"timestamp": "abc"}, 400, "bad_request"),
        ({"timestamp": "-1"}, 400, "bad_request"),
        ({"timestamp": "nan"}, 400, "bad_request"),
        ({"timestamp": "60"}, 404, "not_found"),
        ({"timestamp": "1", "format": "avi"}, 400, "bad_request"),
        ({"timestamp": "1", "resolution": "huge"}, 400, "bad_request"),
        ({"timestamp": "1", "resolution": "100p"}, 404, "not_found"),
        ({"timestamp": "1", "lang": "not a language"}, 400, "bad_request"),
    ],
)
async def test_viewstream_errors(
    client: TestClient, stream: str, params: dict[str, str], status: int, code: str
) -> None:
    resp = await client.get(f"/viewstream/{stream}", params=params)
    body = await resp.json()
    assert resp.status == status, body
    assert body["error"] == code
    assert body["message"]


async def test_unknown_stream_and_nothing_published(client: TestClient) -> None:
    for url in (
        "/viewstream/metadata/nope",
        "/viewstream/nope?timestamp=0",
        "/api/videos/nope",
        "/hls/nope/fmp4/240p/index.m3u8",
    ):
        resp = await client.get(url)
        assert resp.status == 404, url
        assert (await resp.json())["error"] == "not_found"
    assert (await client.get("/viewstream/metadata/bad%20id")).status == 400


async def test_api_and_pages(client: TestClient, stream: str) -> None:
    videos = (await (await client.get("/api/videos")).json())["videos"]
    assert [v["videoId"] for v in videos] == [stream]
    v = videos[0]
    assert v["state"] == "live"
    assert v["durationS"] == pytest.approx(6.0, abs=0.01)
    assert v["links"]["player"] == f"/player.html?v={stream}"
    thumb = await client.get(v["links"]["thumbnail"])
    assert thumb.status == 200
    assert (await thumb.read())[:2] == b"\xff\xd8"  # a JPEG
    for page in ("/", "/player.html"):
        resp = await client.get(page)
        assert resp.status == 200
        assert "text/html" in resp.headers["Content-Type"]
