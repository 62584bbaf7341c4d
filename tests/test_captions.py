"""Captions (issue 14): WebVTT and SRT cues uploaded for a stream become segmented WebVTT
subtitle playlists in every language, named by the masters; the viewer's language is the
default."""

from __future__ import annotations

import asyncio
import io
from dataclasses import replace
from pathlib import Path
from typing import Any

import m3u8
import pytest
import webvtt
from aiohttp.test_utils import TestClient

from streamd.config import Config, LanguagesConfig, UploadConfig
from streamd.errors import BadRequest
from streamd.ingest.captions import parse_captions
from streamd.model.captions import Cue
from tests.conftest import (
    FFMPEG,
    AppClient,
    MediaFactory,
    browser,
    cue_seconds,
    fetch,
    ffprobe,
    published,
    run,
    upload,
    wait_for,
)

ENGLISH = """WEBVTT

NOTE made by the test

1
00:00:01.000 --> 00:00:02.500 line:90%
Hello

00:00:03.500 --> 00:00:04.500
Across two
segments

00:00:06.200 --> 00:00:07.000
The end
"""
SPANISH_SRT = """1
00:00:01,000 --> 00:00:02,500
Hola

2
00:00:06,200 --> 00:00:07,000
Fin
"""


def test_webvtt_and_srt_are_read_and_bad_files_name_their_line() -> None:
    cues = parse_captions(ENGLISH)
    assert cues[0] == Cue(1.0, 2.5, "Hello", "line:90%")
    assert cues[1].text == "Across two\nsegments"
    assert [c.text for c in parse_captions(SPANISH_SRT)] == ["Hola", "Fin"]
    # X-TIMESTAMP-MAP: the media's 90 kHz clock, whose stream second 0 is at 10 s.
    mapped = (
        "WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:1080000,LOCAL:00:00:00.000\n\n00:00.500 --> 00:01.000\nx\n"
    )
    assert parse_captions(mapped) == [Cue(2.5, 3.0, "x")]
    with pytest.raises(BadRequest, match="line 6: expected a cue timing"):
        parse_captions("WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nok\n\nnot a cue\n")
    with pytest.raises(BadRequest, match="line 3: the cue ends before it starts"):
        parse_captions("WEBVTT\n\n00:00:05.000 --> 00:00:02.000\nbackwards\n")


async def _stream(client: TestClient, media: MediaFactory, video_id: str, seconds: int) -> None:
    pieces = media.split(media("mp4", duration_s=seconds, gop=30), 2.0)
    for i, piece in enumerate(pieces):
        await upload(client, video_id, piece, number=i)
    await wait_for(client, video_id, published(len(pieces)))


def _vtt(body: bytes) -> list[Any]:
    return list(webvtt.from_buffer(io.StringIO(body.decode())).captions)


async def test_captions_become_subtitle_playlists_in_every_master(
    client: TestClient, media: MediaFactory
) -> None:
    await _stream(client, media, "subs", 8)
    resp = await client.post("/upload/subs/captions?lang=en&name=English", data=ENGLISH)
    assert resp.status == 202, await resp.text()
    assert (await resp.json())["cues"] == 3
    resp = await client.post("/upload/subs/captions?lang=es&name=Español", data=SPANISH_SRT)
    assert resp.status == 202
    bad = await client.post("/upload/subs/captions?lang=fr", data="WEBVTT\n\nnonsense\n")
    assert bad.status == 400
    assert "line 3" in (await bad.json())["message"]
    for packaging in ("fmp4", "ts"):
        master = m3u8.loads((await fetch(client, f"/hls/subs/{packaging}/master.m3u8")).decode())
        subs = [m for m in master.media if m.type == "SUBTITLES"]
        assert [(m.language, m.name, m.default) for m in subs] == [
            ("en", "English", "YES"),
            ("es", "Español", "NO"),
        ]
        assert {p.stream_info.subtitles for p in master.playlists} == {"subs"}
    video = m3u8.loads((await fetch(client, "/hls/subs/ts/240p/index.m3u8")).decode())
    english = m3u8.loads((await fetch(client, "/hls/subs/subs/en/index.m3u8")).decode())
    assert [s.duration for s in english.segments] == [s.duration for s in video.segments]
    assert [s.current_program_date_time for s in english.segments] == [
        s.current_program_date_time for s in video.segments
    ]
    # Every segment is WebVTT, with the cues shown during it (one over two is in both).
    shown: dict[str, list[int]] = {}
    start = 0.0
    for i, seg in enumerate(english.segments):
        body = await fetch(client, f"/hls/subs/subs/en/{seg.uri}")
        assert b"X-TIMESTAMP-MAP=MPEGTS:900000,LOCAL:00:00:00.000" in body
        for cue in _vtt(body):
            assert cue_seconds(cue.start) < start + seg.duration
            assert cue_seconds(cue.end) > start
            shown.setdefault(cue.text, []).append(i)
        start += seg.duration
    assert shown == {"Hello": [0, 1], "Across two\nsegments": [1, 2], "The end": [3]}
    # Late cues for published segments are written into them.
    resp = await client.post(
        "/upload/subs/captions?lang=en", data="WEBVTT\n\n00:00:00.200 --> 00:00:00.900\nLate\n"
    )
    assert resp.status == 202
    first = _vtt(await fetch(client, f"/hls/subs/subs/en/{english.segments[0].uri}"))
    assert [c.text for c in first] == ["Late", "Hello"]


async def test_the_viewers_language_is_the_default(
    make_client: AppClient, config: Config, media: MediaFactory
) -> None:
    languages = LanguagesConfig(geo_header="CloudFront-Viewer-Country", region_languages=["MX:es"])
    client = await make_client(replace(config, languages=languages))
    await _stream(client, media, "lang", 2)
    for lang, data in (("en", ENGLISH), ("es", SPANISH_SRT)):
        assert (await client.post(f"/upload/lang/captions?lang={lang}", data=data)).status == 202

    async def default(**headers: str) -> tuple[str, str]:
        resp = await client.get("/viewstream/metadata/lang", headers=headers)
        master = m3u8.loads(await resp.text())
        chosen = [m.language for m in master.media if m.type == "SUBTITLES" and m.default == "YES"]
        return chosen[0], resp.headers["Vary"]

    assert await default() == ("en", "Accept-Language, CloudFront-Viewer-Country")
    assert (await default(**{"Accept-Language": "es-MX,es;q=0.9"}))[0] == "es"
    assert (await default(**{"Accept-Language": "fr, en;q=0.5"}))[0] == "en"
    assert (await default(**{"CloudFront-Viewer-Country": "MX"}))[0] == "es"
    assert (await default(**{"Accept-Language": "de", "CloudFront-Viewer-Country": "US"}))[
        0
    ] == "en"
    resp = await client.get("/viewstream/metadata/lang?lang=es")
    assert 'LANGUAGE="es",DEFAULT=YES' in await resp.text()
    # /viewstream: a language the stream has (es-MX finds es), or a 404 naming them.
    assert (await client.get("/viewstream/lang?timestamp=1&lang=es-MX")).status == 200
    resp = await client.get("/viewstream/lang?timestamp=1&lang=de")
    assert resp.status == 404
    assert (await resp.json())["detail"] == "available: en, es"


async def test_live_captions_show_in_the_next_segment_and_survive_a_restart(
    make_client: AppClient, config: Config, media: MediaFactory
) -> None:
    client = await make_client()
    pieces = media.split(media("mp4", duration_s=6, gop=30), 2.0)
    await upload(client, "live", pieces[0], number=0)
    await wait_for(client, "live", published(1))
    # A captioner sends what is said now: the cue is in the segment that holds its time.
    cue = "WEBVTT\n\n00:00:02.500 --> 00:00:03.500\nLive words\n"
    assert (await client.post("/upload/live/captions?lang=en", data=cue)).status == 202
    playlist = m3u8.loads((await fetch(client, "/hls/live/subs/en/index.m3u8")).decode())
    assert len(playlist.segments) == 1
    assert playlist.playlist_type == "event"
    for i, piece in enumerate(pieces[1:], 1):
        await upload(client, "live", piece, number=i)
    await wait_for(client, "live", published(3))
    playlist = m3u8.loads((await fetch(client, "/hls/live/subs/en/index.m3u8")).decode())
    texts = [
        [c.text for c in _vtt(await fetch(client, f"/hls/live/subs/en/{s.uri}"))]
        for s in playlist.segments
    ]
    assert texts == [[], ["Live words"], []]
    body = await fetch(client, "/hls/live/subs/en/index.m3u8")
    await client.close()
    again = await make_client()
    assert await fetch(again, "/hls/live/subs/en/index.m3u8") == body
    master = m3u8.loads((await fetch(again, "/viewstream/metadata/live")).decode())
    assert [m.language for m in master.media if m.type == "SUBTITLES"] == ["en"]


@pytest.mark.slow
@pytest.mark.parametrize("packaging", ["fmp4", "ts"])
async def test_hls_js_shows_the_chosen_subtitles_at_their_time(
    client: TestClient, media: MediaFactory, packaging: str
) -> None:
    """The player's menu lists both languages; the chosen one's cue is on the video's text
    track while its time plays, in both packagings (X-TIMESTAMP-MAP against TS PTS and the
    fMP4 tfdt alike)."""
    await _stream(client, media, "cc", 8)
    for lang, data in (("en", ENGLISH), ("es", SPANISH_SRT)):
        assert (await client.post(f"/upload/cc/captions?lang={lang}", data=data)).status == 202
    await client.post("/upload/cc/end")
    await wait_for(client, "cc", lambda v: v["state"] == "ended")
    url = str(client.make_url(f"/player.html?v=cc&format={packaging}"))
    result = await browser("play.mjs", "--url", url, "--subtitles", "es", "--min-time", "3")
    assert result["ok"], result
    assert result["subtitleTracks"] == ["en", "es"]
    spanish = next(t for t in result["textTracks"] if t["language"] == "es")  # type: ignore[union-attr]
    assert spanish["mode"] == "showing"
    # Media time 0 is where hls.js puts the first decode time: the first picture (stream
    # second 0) shows a B-frame delay later in fMP4, at once in TS. Cues go with it.
    zero = float(result["bufferedStart"])  # type: ignore[arg-type]
    assert 0 <= zero < 0.1
    hola = next(c for c in spanish["cues"] if c["text"] == "Hola")
    assert hola["start"] - zero == pytest.approx(1.0, abs=0.01)
    assert hola["end"] - zero == pytest.approx(2.5, abs=0.01)
    shown = [s for s in result["activeCues"] if "Hola" in s["texts"]]  # type: ignore[union-attr]
    assert shown, result["activeCues"]
    assert all(0.95 <= s["time"] - zero <= 2.55 for s in shown), shown


@pytest.mark.slow
async def test_dash_js_lists_the_subtitles_and_shows_a_cue_at_its_time(
    client: TestClient, media: MediaFactory
) -> None:
    await _stream(client, media, "dsub", 8)
    for lang, data in (("en", ENGLISH), ("es", SPANISH_SRT)):
        assert (await client.post(f"/upload/dsub/captions?lang={lang}", data=data)).status == 202
    await client.post("/upload/dsub/end")
    await wait_for(client, "dsub", lambda v: v["state"] == "ended")
    mpd = await fetch(client, "/hls/dsub/fmp4/manifest.mpd")
    assert b'mimeType="text/vtt" lang="es"' in mpd
    url = str(client.make_url("/hls/dsub/fmp4/manifest.mpd"))
    result = await browser("dash.mjs", "--mpd", url, "--text", "es", "--min-time", "3")
    assert result["ok"], result
    assert result["textLangs"] == ["en", "es"]
    start_s, shown = _dash_cue(result, "es", "Hola")
    assert start_s == pytest.approx(1.0, abs=0.1), result["textTracks"]
    assert shown, result


@pytest.mark.slow
async def test_dash_js_shows_a_cue_at_its_time_in_a_later_period(
    make_client: AppClient, media: MediaFactory
) -> None:
    """A gap starts a new Period; the WebVTT segments keep the stream's time, which is the
    presentation time in every Period (Period@start and presentationTimeOffset agree), so
    a cue after the gap shows when its picture does."""
    client = await make_client(upload=UploadConfig(max_bytes=20 << 20, gap_timeout_s=0.5))
    parts = media.split(media("mp4", duration_s=8, gop=30), 2.0)
    for i in (0, 2, 3):
        await upload(client, "dgap", parts[i], number=i)
    cues = (
        "WEBVTT\n\n00:00:01.000 --> 00:00:01.800\nEarly\n\n00:00:05.000 --> 00:00:06.000\nLater\n"
    )
    assert (await client.post("/upload/dgap/captions?lang=en", data=cues)).status == 202
    await client.post("/upload/dgap/end")
    await wait_for(client, "dgap", lambda v: v["state"] == "ended")
    mpd = (await fetch(client, "/hls/dgap/fmp4/manifest.mpd")).decode()
    assert mpd.count("<Period ") >= 2, mpd
    url = str(client.make_url("/hls/dgap/fmp4/manifest.mpd"))
    result = await browser("dash.mjs", "--mpd", url, "--text", "en", "--min-time", "6.5")
    assert result["ok"], result
    start_s, shown = _dash_cue(result, "en", "Later")
    assert start_s == pytest.approx(5.0, abs=0.1), result["textTracks"]
    assert shown, result
    assert all(4.9 <= t <= 6.1 for t in shown), shown


def _dash_cue(result: dict[str, Any], lang: str, text: str) -> tuple[float, list[float]]:
    """Where dash.js put a cue of `lang` (its start, from the first buffered media time),
    and the times (from the same) at which the report saw it showing."""
    track = next(t for t in result["textTracks"] if t["language"] == lang)
    cue = next(c for c in track["cues"] if c["text"] == text)
    zero = float(result["bufferedStart"])
    shown = [s["time"] - zero for s in result.get("activeCues") or [] if text in s["texts"]]
    return cue["start"] - zero, shown


SRT_IN_MKV = """1
00:00:00,500 --> 00:00:01,500
Hello <i>there</i>

2
00:00:04,500 --> 00:00:05,500
Second {\\\\an8}line
"""


@pytest.mark.parametrize("mode", ["segment", "vod"])
async def test_subtitles_in_an_mkv_upload_become_a_subtitle_track(
    client: TestClient, media: MediaFactory, tmp_path: Path, mode: str
) -> None:
    """Text subtitles inside an upload (here SubRip in Matroska, tagged eng) are read as
    they are transcoded, on the stream's timeline, into a track in their language."""
    srt = tmp_path / "in.srt"
    srt.write_text(SRT_IN_MKV)
    source = media("mp4", duration_s=6, gop=30)
    mkv = tmp_path / "with-subs.mkv"
    run([FFMPEG, "-v", "error", "-i", str(source), "-i", str(srt), "-map", "0", "-map", "1",
         "-c:v", "copy", "-c:a", "copy", "-c:s", "srt", "-metadata:s:s:0", "language=eng",
         str(mkv)])  # fmt: skip
    vid = f"mkv{mode}"
    if mode == "vod":
        resp = await client.post(f"/upload/{vid}?mode=vod", data=mkv.read_bytes())
        assert resp.status == 202, await resp.text()
        await wait_for(client, vid, lambda v: v["state"] == "ended")
    else:
        await upload(client, vid, mkv, number=0)
        await wait_for(client, vid, published(1))
    await _until_subtitles(client, vid)
    master = m3u8.loads((await fetch(client, f"/hls/{vid}/fmp4/master.m3u8")).decode())
    assert [(m.type, m.language) for m in master.media if m.type == "SUBTITLES"] == [
        ("SUBTITLES", "en")
    ]
    playlist = m3u8.loads((await fetch(client, f"/hls/{vid}/subs/en/index.m3u8")).decode())
    cues = {}
    for seg in playlist.segments:
        for cue in _vtt(await fetch(client, f"/hls/{vid}/subs/en/{seg.uri}")):
            cues[cue.text] = (cue_seconds(cue.start), cue_seconds(cue.end))
    assert cues["Hello there"] == pytest.approx((0.5, 1.5), abs=0.05)
    assert cues["Second line"] == pytest.approx((4.5, 5.5), abs=0.05)


async def _until_subtitles(client: TestClient, video_id: str) -> None:
    for _ in range(200):
        if (await client.get(f"/hls/{video_id}/subs/en/index.m3u8")).status == 200:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no subtitle playlist")


async def test_viewstream_mp4_and_mov_carry_the_language_asked_for(
    client: TestClient, media: MediaFactory, tmp_path: Path
) -> None:
    await _stream(client, media, "file", 8)
    assert (await client.post("/upload/file/captions?lang=es", data=SPANISH_SRT)).status == 202
    for fmt in ("mp4", "mov"):
        body = await fetch(client, f"/viewstream/file?timestamp=1&format={fmt}&lang=es")
        path = tmp_path / f"seg.{fmt}"
        path.write_bytes(body)
        probe = ffprobe(path, "-show_streams")
        (text,) = [s for s in probe["streams"] if s["codec_type"] == "subtitle"]
        assert text["codec_name"] == "mov_text"
        assert text["tags"]["language"] == "spa"
        srt = run([FFMPEG, "-v", "error", "-i", str(path), "-map", "0:s", "-f", "srt", "-"])
        # The segment at 0-2 s, its file starting at 0: "Hola" shows from 1 to 2.5 s.
        assert "00:00:01,000 --> 00:00:02,500\nHola" in srt, srt
    # A clip of all four segments has both cues at their times.
    clip = await fetch(client, "/viewstream/file/clip?from=0&to=8&format=mp4&lang=es")
    path = tmp_path / "clip.mp4"
    path.write_bytes(clip)
    srt = run([FFMPEG, "-v", "error", "-i", str(path), "-map", "0:s", "-f", "srt", "-"])
    assert "00:00:06,200 --> 00:00:07,000\nFin" in srt, srt
    # Without ?lang=, no subtitle track.
    plain = await fetch(client, "/viewstream/file?timestamp=1&format=mp4")
    (tmp_path / "plain.mp4").write_bytes(plain)
    kinds = {s["codec_type"] for s in ffprobe(tmp_path / "plain.mp4", "-show_streams")["streams"]}
    assert kinds == {"video", "audio"}
